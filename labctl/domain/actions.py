"""What ``ps:restart`` and ``ps:stop`` mean, as plans (lab-spec §3, heroku-reference §1.2, seed 000).

The heart of the lab in one table:

=====================  ===============================  ==========================================
action                 Common Runtime                   Private Space
=====================  ===============================  ==========================================
restart web.1          stop, start on ANOTHER instance  stop, start on the SAME instance
stop web.1 (formation) stop, started again (anywhere)   stop, instance REPLACED, started on new one
stop run.N             stops for good                   stops for good
=====================  ===============================  ==========================================
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Placement(Enum):
    SAME = "same"  # keep the dyno's instance (Private Space restart)
    OTHER = "other"  # any instance but the current one (Common Runtime restart: host replaced)
    ANY = "any"  # the dyno manager picks (Common Runtime stop of a formation dyno)
    NEW = "new"  # provision a new dedicated instance (Private Space stop)


@dataclass(frozen=True)
class DynoPlan:
    """What the dyno manager does to one dyno."""

    dyno: str
    start_again: bool
    placement: Placement
    retire_instance: bool  # the old instance is torn down once the dyno has left it
    event: str  # the dyno manager's log line, e.g. "Restarting"


def plan_restart(dyno: str, in_space: bool, one_off: bool) -> DynoPlan:
    """``ps:restart``: CR replaces the host; PS keeps the dedicated instance (seed 000)."""
    if one_off:
        return DynoPlan(dyno, False, Placement.SAME, False, "Restarting")
    if in_space:
        return DynoPlan(dyno, True, Placement.SAME, False, "Restarting")
    return DynoPlan(dyno, True, Placement.OTHER, False, "Restarting")


def plan_stop(dyno: str, in_space: bool, one_off: bool) -> DynoPlan:
    """``ps:stop``/``ps:kill``: formation dynos come back; in a space on a brand-new instance (§1.2)."""
    if one_off:
        return DynoPlan(dyno, False, Placement.SAME, in_space, "Stopping")
    if in_space:
        return DynoPlan(dyno, True, Placement.NEW, True, "Stopping")
    return DynoPlan(dyno, True, Placement.ANY, False, "Stopping")
