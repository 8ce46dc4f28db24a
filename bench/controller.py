"""The controller's own costs: CLI latency, and idle CPU and memory with dynos running."""

from __future__ import annotations

import os
import subprocess
import time

from bench.harness import BenchError, BenchLab


def command_latency(argv: list[str], runs: int) -> list[float]:
    """Wall time of a command as a subprocess, ``runs`` times."""
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        out = subprocess.run(argv, capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
        samples.append(time.perf_counter() - t0)
        if out.returncode != 0:
            raise BenchError(f"{' '.join(argv[:3])}… failed: {out.stderr.decode(errors='replace').strip()}")
    return samples


def cli_latency(lab: BenchLab, app: str, runs: int) -> list[float]:
    return command_latency(lab.argv("ps", "-a", app), runs)


def docker_ps_latency(lab: BenchLab, app: str, runs: int) -> list[float]:
    """The Docker CLI's equivalent listing, for comparison (no target)."""
    return command_latency(
        ["docker", "ps", "-a", "--filter", f"label=io.labctl.app={app}", "--filter", f"label=io.labctl.lab={lab.name}"],
        runs,
    )


def _cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise BenchError(f"no VmRSS for pid {pid}")


def _cpu_ns(pid: int) -> int:
    """CPU time of all the process's threads in ns (schedstat: finer than stat's 10 ms ticks)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # a thread that ended meanwhile
    return total


def idle(pid: int, seconds: float, windows: int) -> tuple[list[float], list[float], float]:
    """CPU (% of one core) per window and RSS (MB) at the end of each window, over ``seconds`` in all.

    Windows use the threads' schedstat (ns); the third value is the whole span from /proc/<pid>/stat
    (utime+stime ticks), a cross-check with 10 ms resolution.
    """
    hz = os.sysconf("SC_CLK_TCK")
    span = seconds / windows
    cpu, rss = [], []
    start, ticks0 = time.perf_counter(), _cpu_ticks(pid)
    for _ in range(windows):
        t0, c0 = time.perf_counter(), _cpu_ns(pid)
        time.sleep(span)
        t1, c1 = time.perf_counter(), _cpu_ns(pid)
        cpu.append(100.0 * (c1 - c0) / 1e9 / (t1 - t0))
        rss.append(_rss_mb(pid))
    whole = 100.0 * (_cpu_ticks(pid) - ticks0) / hz / (time.perf_counter() - start)
    return cpu, rss, whole
