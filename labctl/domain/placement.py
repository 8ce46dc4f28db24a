"""Which runtime instance a dyno lands on (lab-spec §2 Placement)."""

from __future__ import annotations

import random
from dataclasses import dataclass

from labctl.domain.actions import Placement

# How the Common Runtime's pool takes new dynos (a lab setting, `labctl up --placement`; Heroku does not say how
# its dyno manager picks a host, heroku-reference §1.2, so both are lab choices, docs/instances.md):
SPREAD = "spread"  # the least-loaded instance, ties at random (the default: dynos of one app spread out)
PACKED = "packed"  # fill one instance before the next, in the order they were made (a bin-packer: neighbours)
POLICIES = (SPREAD, PACKED)
PACKED_SLOTS = 4  # dynos a pool instance takes under PACKED: its 2 GB budget holds four Standard-1X dynos


@dataclass(frozen=True)
class InstanceLoad:
    id: str
    dynos: int


def choose_pool_instance(
    pool: list[InstanceLoad],
    placement: Placement,
    current: str | None,
    rng: random.Random | None = None,
    policy: str = SPREAD,
) -> str | None:
    """Common Runtime: a shared instance for the dyno; OTHER excludes the current one.

    SPREAD takes the least-loaded instance (ties at random); PACKED the fullest one that still has a free slot,
    the first of ``pool`` (the order the instances were made) when tied, and the least-loaded when all are full.
    Returns None when no instance qualifies (the caller reports it).
    """
    rng = rng or random.Random()
    candidates = list(pool)
    if placement is Placement.OTHER and current is not None and len(candidates) > 1:
        candidates = [i for i in candidates if i.id != current]
    if placement is Placement.SAME and current is not None and any(i.id == current for i in pool):
        return current
    if not candidates:
        return None
    if policy == PACKED:
        room = [i for i in candidates if i.dynos < PACKED_SLOTS]
        if room:
            return max(room, key=lambda i: i.dynos).id  # max keeps the first of equals: the oldest instance
        return min(candidates, key=lambda i: i.dynos).id
    low = min(i.dynos for i in candidates)
    return rng.choice(sorted(i.id for i in candidates if i.dynos == low))


def needs_new_dedicated_instance(placement: Placement, current: str | None) -> bool:
    """Private Space: a dyno keeps its dedicated instance unless the plan replaces it."""
    return current is None or placement is Placement.NEW


def is_provisioning(ready_at: float | None, now: float) -> bool:
    """A new instance provisions until ``ready_at``; no dyno starts on it before (a lab choice, see README)."""
    return ready_at is not None and ready_at > now


def instance_state(state: str, ready_at: float | None, now: float) -> str:
    """What ``instances`` shows: ``provisioning`` until the instance is ready, then its stored state."""
    return "provisioning" if state == "running" and is_provisioning(ready_at, now) else state


def new_instance_id(rng: random.Random | None = None) -> str:
    """``i-`` + 17 hex digits, like an EC2 instance id."""
    rng = rng or random.Random()
    return "i-" + "".join(rng.choice("0123456789abcdef") for _ in range(17))
