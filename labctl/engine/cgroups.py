"""A dyno container's CPU demand and memory, read from its cgroups and its tasks' scheduler statistics.

cgroup v1 (this lab's engines: the cgroupfs driver, ``/sys/fs/cgroup/<controller>/…/<container id>``); the
container's cgroup is looked for under ``docker/`` first, then one or two levels deeper (an instance's parent
cgroup). Every read answers None when the file is not there (a remote engine, cgroup v2, a container gone):
the caller then has no sample for that dyno, it never fails.

CPU demand is what a load average counts: time the dyno's tasks ran *or waited to run*. Each task's
``/proc/<tid>/schedstat`` gives both (time on a CPU, time waiting on a run queue — which includes the time its
cgroup, or the instance's parent cgroup, was throttled by a CFS quota, and the time it lost to a neighbour).
Where ``schedstat`` cannot be read the cgroup's own counters stand in: ``cpuacct.usage`` plus ``throttled_time``
of ``cpu.stat``.
"""

from __future__ import annotations

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
        found = (
            direct
            if direct.is_dir()
            else next(iter([*base.glob(f"*/{container_id}"), *base.glob(f"*/*/{container_id}")]), None)
        )
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

    def busy_ns(self, container_id: str) -> dict[str, int] | None:
        """Per task (thread id): nanoseconds it has run plus waited to run. One key ``cgroup`` when only the
        cgroup's counters could be read."""
        d = self.path("cpu", container_id)
        if d is None:
            return None
        tasks = _read(d / "tasks")
        out: dict[str, int] = {}
        for tid in (tasks or "").split():
            fields = (_read(Path(f"/proc/{tid}/schedstat")) or "").split()
            if len(fields) >= 2:
                out[tid] = int(fields[0]) + int(fields[1])
        if out:
            return out
        return self._cgroup_busy_ns(container_id, d)

    def _cgroup_busy_ns(self, container_id: str, cpu_dir: Path) -> dict[str, int] | None:
        acct = self.path("cpuacct", container_id)
        usage = _read(acct / "cpuacct.usage") if acct else None
        stat = _keyed(cpu_dir / "cpu.stat")
        if usage is None or stat is None:
            return None
        return {"cgroup": int(usage) + stat.get("throttled_time", 0)}


def busy_delta(before: dict[str, int], after: dict[str, int]) -> int:
    """Nanoseconds of demand between two readings: tasks seen twice count their growth, new tasks all of theirs
    (they started within the interval), tasks gone count nothing more."""
    return sum(v - before.get(k, 0) for k, v in after.items() if v >= before.get(k, 0))


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
