"""Platform durations and the lab-wide time scale (lab-spec §4 "Time scale")."""

from __future__ import annotations

from dataclasses import dataclass

# Heroku's real figures, seconds (heroku-reference §10).
BOOT_TIMEOUT = 60.0
SHUTDOWN_GRACE = 30.0
ROUTER_CONNECT = 5.0
ROUTER_FIRST_BYTE = 30.0
ROUTER_IDLE = 55.0
ROUTER_BOOT_HOLD = 75.0
# Lab choice: a new runtime instance provisions this long before a dyno can start on it (Heroku gives no figure;
# a new EC2 host plus the dyno manager's set-up takes about a minute).
PROVISION_TIME = 60.0
CYCLE_BASE = 24 * 3600.0
CYCLE_JITTER = 216 * 60.0
# `labctl up --cycle-period S` shortens the 24 h (a lab choice, for lessons): the jitter keeps its share of it.
CYCLE_JITTER_SHARE = CYCLE_JITTER / CYCLE_BASE
# Common Runtime crash cool-offs after the first immediate restart (heroku-reference §2.4).
COOL_OFFS = (20 * 60.0, 40 * 60.0, 60 * 60.0, 180 * 60.0, 320 * 60.0)


@dataclass(frozen=True)
class TimeScale:
    """Multiplies every platform duration; 1.0 is Heroku's real time, 0.02 makes 3 min take 3.6 s."""

    factor: float = 1.0

    def __call__(self, seconds: float) -> float:
        return seconds * self.factor


def crash_delay(crashes: int, in_space: bool) -> float:
    """Unscaled delay before restarting a dyno after its ``crashes``-th consecutive crash (1-based).

    Private Spaces restart continuously; the Common Runtime restarts at once the first time, then
    cools off 20, 40, 60, 180, 320 min, then every 320 min (heroku-reference §2.4).
    """
    if in_space or crashes <= 1:
        return 0.0
    return COOL_OFFS[min(crashes - 2, len(COOL_OFFS) - 1)]
