"""A runtime instance's CPU and memory budget, shared by every dyno placed on it (issue 16; docs/instances.md).

Heroku: Eco/Basic/Standard dynos share an underlying compute instance with other dynos, Performance dynos get a
dedicated instance, Private/Shield dynos run on dedicated compute (heroku-reference §5). Heroku does not publish an
instance's size: the figures below are lab choices, scaled to a laptop (docs/instances.md says why):

* a Common Runtime pool instance: ``POOL`` (half a CPU, 2 GB): "several dynos" worth of Standard-1X memory, and
  little enough CPU that one busy dyno fills it (the noisy neighbour) without filling the machine;
* a dedicated instance (Performance-M/L in the Common Runtime, Private/Shield-S/M/L in a space): ``DEDICATED``,
  sized for its one dyno, memory at the dyno's R15 limit so the dyno's own limits decide as before.

Pure: the budget of an instance and what its faults leave of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from labctl.domain.sizes import get_size

MIB = 1024 * 1024


@dataclass(frozen=True)
class Budget:
    cpus: float  # CPUs the instance's dynos share (a CFS quota on its parent cgroup)
    memory_mb: int  # memory they share (the parent cgroup's memory limit)

    def as_dict(self) -> dict[str, float | int]:
        return {"cpus": self.cpus, "memory_mb": self.memory_mb}


POOL = Budget(0.5, 2048)
# CPUs of a dedicated instance by size key; memory is the size's R15 limit (domain/sizes.py).
DEDICATED_CPUS = {
    "performance-m": 1.0,
    "performance-l": 2.0,
    "private-s": 0.5,
    "private-m": 1.0,
    "private-l": 2.0,
    "shield-s": 0.5,
    "shield-m": 1.0,
    "shield-l": 2.0,
}
PARENT_SHARES = 8192  # the parents' cpu.shares: the lab's dynos before other host processes (docs/instances.md)


def is_dedicated_size(size: str) -> bool:
    """A dyno of this size gets an instance of its own (Performance in the Common Runtime, every space size)."""
    return size.lower() in DEDICATED_CPUS


def budget_for(size: str | None) -> Budget:
    """The budget of an instance dedicated to a dyno of ``size``; ``None``: a Common Runtime pool instance."""
    if not size:
        return POOL
    s = get_size(size)  # InvalidInput for a size that does not exist
    cpus = DEDICATED_CPUS.get(s.key)
    if cpus is None:
        return POOL
    return Budget(cpus, s.r15_mb)


def effective(budget: Budget, cpu_fault: float | None, memory_fault_mb: int | None) -> Budget:
    """What the instance's dynos share once its faults act: ``cpu --cpus F`` caps the CPUs at F (it never raises
    them), ``memory --mb N`` takes N MB away."""
    cpus = budget.cpus if cpu_fault is None else min(budget.cpus, cpu_fault)
    mem = budget.memory_mb - (memory_fault_mb or 0)
    return Budget(cpus, max(1, mem))


def cpu_fault(faults: list[dict[str, Any]]) -> float | None:
    """The ``cpu`` fault's CPUs among an instance's faults, if it has one."""
    return next((float(f["cpus"]) for f in faults if f.get("kind") == "cpu"), None)


def memory_fault(faults: list[dict[str, Any]]) -> int | None:
    """The MB a ``memory`` fault takes away, if the instance has one."""
    return next((int(f["mb"]) for f in faults if f.get("kind") == "memory"), None)
