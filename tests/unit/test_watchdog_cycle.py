"""Daily cycling's deadline (heroku-reference §2.5) and the lab's shorter day (`labctl up --cycle-period`)."""

from __future__ import annotations

import random

import pytest

from labctl.controller.context import LabClock
from labctl.controller.watchdog import cycle_deadline
from labctl.domain import clock
from labctl.errors import LabError
from labctl.settings import Settings, check_settings


def test_a_dyno_cycles_after_a_day_plus_its_own_share_of_216_minutes():
    scale, rng = LabClock(1.0), random.Random(7)
    due = [cycle_deadline(scale, rng, 100.0) - 100.0 for _ in range(200)]
    assert all(clock.CYCLE_BASE <= d <= clock.CYCLE_BASE + clock.CYCLE_JITTER for d in due)
    assert max(due) - min(due) > clock.CYCLE_JITTER / 2  # spread: the dynos of an app do not cycle at once


def test_a_shorter_day_keeps_the_jitter_share_and_is_scaled():
    scale, rng = LabClock(0.05), random.Random(7)
    due = [cycle_deadline(scale, rng, 0.0, 300.0) for _ in range(200)]
    assert all(15.0 <= d <= 15.0 * 1.15 for d in due)


@pytest.mark.parametrize("period", [0, 9.9, 86401])
def test_a_cycle_period_out_of_range_is_refused(period: float):
    with pytest.raises(LabError, match="Invalid cycle period"):
        check_settings(Settings(lab="x", cycle_period=period))
