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


# -- instance parents (issue 16): one cgroup per runtime instance, the dynos' cgroups under it -----------------
PARENT_PREFIX = "labctl."
CPU_PERIOD_US = 100_000
BUDGET_CONTROLLERS = ("cpu", "memory")  # where the parent carries limits; Docker makes it in every other one


def parent_name(lab: str, iid: str) -> str:
    """The instance's parent cgroup, as Docker's ``cgroup_parent`` takes it (cgroupfs driver: a path)."""
    return f"/{PARENT_PREFIX}{lab}.{iid}"


@dataclass(frozen=True)
class Usage:
    cpu_ns: int  # cpuacct.usage of the whole instance
    memory_bytes: int  # memory.usage_in_bytes of the whole instance
    at: float  # time.monotonic() of the reading


class InstanceCgroups:
    """Creates, limits, reads and removes instances' parent cgroups (cgroup v1, the host's ``/sys/fs/cgroup``).

    ``enabled`` is False when the hierarchy cannot be written (cgroup v2, a controller in a container without
    the host's cgroups, not root): dynos then start under Docker's own parent and the budget is not enforced.
    """

    def __init__(self, lab: str, root: Path = ROOT):
        self.lab = lab
        self.root = root
        self.enabled = self._writable()

    def _writable(self) -> bool:
        import os

        return all(
            (self.root / c / "cgroup.procs").exists() and os.access(self.root / c, os.W_OK)
            for c in (*BUDGET_CONTROLLERS, "cpuacct")
        )

    def _dir(self, controller: str, iid: str) -> Path:
        return self.root / controller / parent_name(self.lab, iid).lstrip("/")

    def ensure(self, iid: str, cpus: float, memory_mb: int, shares: int) -> None:
        """Make the instance's parent (cpu, cpuacct, memory) and set its limits (idempotent)."""
        if not self.enabled:
            return
        for c in (*BUDGET_CONTROLLERS, "cpuacct"):
            self._dir(c, iid).mkdir(exist_ok=True)
        _write(self._dir("cpu", iid) / "cpu.shares", str(shares))
        self.set_limits(iid, cpus, memory_mb)

    def set_limits(self, iid: str, cpus: float, memory_mb: int) -> None:
        """The CFS quota (``cpus`` CPUs every 100 ms) and the memory limit (swap included) of the instance.

        A memory limit below what the dynos use now makes the kernel reclaim, then refuse (EBUSY): an OSError."""
        if not self.enabled:
            return
        cpu = self._dir("cpu", iid)
        _write(cpu / "cpu.cfs_period_us", str(CPU_PERIOD_US))
        _write(cpu / "cpu.cfs_quota_us", str(max(1000, int(round(cpus * CPU_PERIOD_US)))))
        mem = self._dir("memory", iid)
        limit = str(memory_mb * 1024 * 1024)
        memsw = mem / "memory.memsw.limit_in_bytes"
        current = _read(mem / "memory.limit_in_bytes")
        lowering = current is not None and current.strip().isdigit() and int(current) > int(limit)
        # memsw must stay >= the memory limit: lower the memory limit first, raise memsw first
        steps = [("memory.limit_in_bytes", limit), ("memory.memsw.limit_in_bytes", limit)]
        for name, value in steps if lowering else reversed(steps):
            if name.startswith("memory.memsw") and not memsw.exists():
                continue
            _write(mem / name, value)

    def limits(self, iid: str) -> tuple[float, int] | None:
        """The (CPUs, memory MB) in force on the instance's parent, or None when it has none."""
        quota = _read(self._dir("cpu", iid) / "cpu.cfs_quota_us")
        period = _read(self._dir("cpu", iid) / "cpu.cfs_period_us")
        mem = _read(self._dir("memory", iid) / "memory.limit_in_bytes")
        if quota is None or period is None or mem is None:
            return None
        q = int(quota)
        return (q / int(period) if q > 0 else 0.0), int(mem) // (1024 * 1024)

    def usage(self, iid: str) -> Usage | None:
        """The instance's CPU time so far and its memory now (every dyno on it, counted once)."""
        import time

        cpu = _read(self._dir("cpuacct", iid) / "cpuacct.usage")
        mem = _read(self._dir("memory", iid) / "memory.usage_in_bytes")
        if cpu is None or mem is None:
            return None
        return Usage(int(cpu), int(mem), time.monotonic())

    def remove(self, iid: str) -> bool:
        """Remove the instance's parent in every hierarchy (with empty cgroups left under it); True when none is
        left. A cgroup that still has tasks stays (a container not gone yet): ``sweep`` takes it later."""
        left = False
        for d in self.root.glob(f"*/{parent_name(self.lab, iid).lstrip('/')}"):
            left |= not _rmdir_tree(d)
        return not left

    def sweep(self, keep: set[str]) -> list[str]:
        """Remove this lab's parents whose instance is not in ``keep`` (after a crash, at ``down``); returns the
        instance ids whose parent could not go yet."""
        prefix = f"{PARENT_PREFIX}{self.lab}."
        stale = {d.name[len(prefix) :] for d in self.root.glob(f"*/{prefix}*") if d.is_dir()}
        return sorted(iid for iid in stale - keep if not self.remove(iid))

    def leftovers(self) -> list[Path]:
        return sorted(self.root.glob(f"*/{PARENT_PREFIX}{self.lab}.*"))


def cpu_use(before: Usage, after: Usage) -> float:
    """CPUs used on average between two readings (1.0 = one CPU busy all the time)."""
    wall = after.at - before.at
    return max(0.0, (after.cpu_ns - before.cpu_ns) / 1e9 / wall) if wall > 0 else 0.0


def _write(path: Path, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _rmdir_tree(d: Path) -> bool:
    """rmdir ``d`` and the empty cgroups under it, deepest first; False when something stays."""
    ok = True
    try:
        children = [c for c in d.iterdir() if c.is_dir()]
    except OSError:
        return not d.exists()
    for c in children:
        ok &= _rmdir_tree(c)
    try:
        d.rmdir()
    except FileNotFoundError:
        pass
    except OSError:
        return False
    return ok
