"""The cost of the instances' budget accounting (issue 16, docs/instances.md): what the controller does for it on
every dyno start (set the instance's parent cgroup again: a few small writes under /sys/fs/cgroup) and on every
``labctl instances`` (read its CPU time and memory), timed here on a scratch parent of the bench's lab with the
controller's own code. Single-sided: there is no twin (plain Docker keeps no budget)."""

from __future__ import annotations

import statistics
import time

from labctl.domain.budget import PARENT_SHARES, POOL
from labctl.engine.cgroups import InstanceCgroups

SCRATCH = "i-benchbudget"


def accounting_us(lab: str, runs: int, calls: int = 200) -> tuple[list[float], list[float]] | None:
    """Per run, the median µs of one start's accounting and of one instance's reading; None: not enforced here."""
    cg = InstanceCgroups(lab)
    if not cg.enabled:
        return None
    starts: list[float] = []
    reads: list[float] = []
    try:
        cg.ensure(SCRATCH, POOL.cpus, POOL.memory_mb, PARENT_SHARES)
        for _ in range(runs):
            one: list[float] = []
            for _ in range(calls):
                t0 = time.perf_counter()
                cg.ensure(SCRATCH, POOL.cpus, POOL.memory_mb, PARENT_SHARES)
                one.append((time.perf_counter() - t0) * 1e6)
            starts.append(statistics.median(one))
            one = []
            for _ in range(calls):
                t0 = time.perf_counter()
                cg.usage(SCRATCH)
                one.append((time.perf_counter() - t0) * 1e6)
            reads.append(statistics.median(one))
    finally:
        cg.remove(SCRATCH)
    return starts, reads
