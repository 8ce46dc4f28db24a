"""A dyno container's CPU demand and memory, read from its cgroups and its tasks' scheduler statistics.

cgroup v1 (this lab's engines: the cgroupfs driver, ``/sys/fs/cgroup/<controller>/…/<container id>``); the
container's cgroup is looked for under ``docker/`` first, then up to three levels deep (an instance's parent
cgroup). Every read answers None when the file is not there (a remote engine, cgroup v2, a container gone):
the caller then has no sample for that dyno, it never fails.

CPU demand is what a load average counts: time the dyno's tasks ran *or waited to run* (``busy_delta``). The
time run is the cgroup's ``cpuacct.usage`` (it keeps the time of threads that have ended, e.g. a request's); the
time waited is the larger of the cgroup's CFS ``throttled_time`` and the sum of its live tasks' run-queue waits
(``/proc/<tid>/schedstat``), which also count a wait caused by the instance (its parent cgroup's quota, or a
neighbour holding the CPU).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from labctl.domain.runtime_metrics import MemorySample

ROOT = Path("/sys/fs/cgroup")


class Cgroups:
    """Reads containers' cgroups; remembers where each container's cgroup is."""

    def __init__(self, root: Path = ROOT):
        self.root = root
        self._paths: dict[tuple[str, str], Path] = {}

    def path(self, controller: str, container_id: str) -> Path | None:
        """The container's cgroup directory for ``controller`` (``memory``, ``cpu``, ``cpuacct``), if any."""
        key = (controller, container_id)
        known = self._paths.get(key)
        if known is not None and known.is_dir():
            return known
        base = self.root / controller
        direct = base / "docker" / container_id
        found = direct if direct.is_dir() else None
        for pattern in ("*/", "*/*/", "*/*/*/"):  # under an instance's parent cgroup (found once, then remembered)
            found = found or next(iter(base.glob(pattern + container_id)), None)
        if found is not None:
            self._paths[key] = found
        return found

    def forget(self, keep: set[str]) -> None:
        """Drop what is remembered of containers not in ``keep``."""
        self._paths = {k: v for k, v in self._paths.items() if k[1] in keep}

    def memory(self, container_id: str) -> MemorySample | None:
        """The container's memory from ``memory.stat`` (hierarchical ``total_*`` counters)."""
        d = self.path("memory", container_id)
        stat = _keyed(d / "memory.stat") if d else None
        if not stat:
            return None
        return MemorySample(
            rss=stat.get("total_rss", 0),
            cache=stat.get("total_cache", 0),
            swap=stat.get("total_swap", 0),
            pgpgin=stat.get("total_pgpgin", 0),
            pgpgout=stat.get("total_pgpgout", 0),
        )

    def cpu(self, container_id: str) -> CpuReading | None:
        """The container's CPU counters now: its cgroup's usage and throttled time, its tasks' waits."""
        d = self.path("cpu", container_id)
        acct = self.path("cpuacct", container_id)
        usage = _read(acct / "cpuacct.usage") if acct else None
        stat = _keyed(d / "cpu.stat") if d else None
        if d is None or usage is None or stat is None:
            return None
        waits: dict[str, int] = {}
        for tid in (_read(d / "tasks") or "").split():
            fields = (_read(Path(f"/proc/{tid}/schedstat")) or "").split()
            if len(fields) >= 2:
                waits[tid] = int(fields[1])
        parent_usage, parent_throttled = self._instance_parent(d, acct)
        return CpuReading(int(usage), stat.get("throttled_time", 0), waits, parent_usage, parent_throttled)

    def _instance_parent(self, cpu_dir: Path, acct_dir: Path | None) -> tuple[int, int]:
        """Usage and throttled time of the instance's parent cgroup; (0, 0) under Docker's own ``docker/``."""
        parent = cpu_dir.parent
        if acct_dir is None or parent.name == "docker" or parent == self.root / "cpu":
            return 0, 0
        usage = _read(acct_dir.parent / "cpuacct.usage")
        stat = _keyed(parent / "cpu.stat") or {}
        return (int(usage) if usage else 0), stat.get("throttled_time", 0)


@dataclass(frozen=True)
class CpuReading:
    """``usage_ns``: CPU time of every task the cgroup ever had (``cpuacct.usage``); ``throttled_ns``: wall time
    its CFS quota held it (``cpu.stat``); ``waits``: per live task, nanoseconds spent runnable on a run queue
    (``/proc/<tid>/schedstat``, second field: includes throttled and lost-to-a-neighbour time);
    ``parent_usage_ns``, ``parent_throttled_ns``: the same two counters of the instance's parent cgroup, if the
    dyno has one (0 otherwise)."""

    usage_ns: int
    throttled_ns: int
    waits: dict[str, int]
    parent_usage_ns: int = 0
    parent_throttled_ns: int = 0


def busy_delta(before: CpuReading, after: CpuReading) -> int:
    """Nanoseconds of runnable demand between two readings: CPU time used, plus time spent waiting for a CPU.

    The wait is the largest of: the cgroup's throttled time (it counts while at least one task waits, even a
    thread that has ended since); the live tasks' run-queue waits (which also see a crowded or throttled
    instance; a task new since ``before`` counts all of its wait, a task gone counts nothing more); and the
    instance parent's throttled time times this dyno's share of the instance's CPU use over the interval (the
    wait of its ended threads while the whole instance was held back)."""
    waited = sum(v - before.waits.get(k, 0) for k, v in after.waits.items() if v >= before.waits.get(k, 0))
    used = max(0, after.usage_ns - before.usage_ns)
    own_throttle = max(0, after.throttled_ns - before.throttled_ns)
    parent_used = after.parent_usage_ns - before.parent_usage_ns
    parent_throttle = max(0, after.parent_throttled_ns - before.parent_throttled_ns)
    share = min(1.0, used / parent_used) if parent_used > 0 else 0.0
    return used + max(waited, own_throttle, int(parent_throttle * share))


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except (OSError, ValueError):
        return None


def _keyed(path: Path) -> dict[str, int] | None:
    text = _read(path)
    if text is None:
        return None
    out: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            out[parts[0]] = int(parts[1])
    return out
