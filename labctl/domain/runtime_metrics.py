"""``log-runtime-metrics``: the dyno manager's load and memory samples, as Heroku writes them (heroku-reference §11;
Dev Center "Heroku Labs: log-runtime-metrics").

Pure: the load average's arithmetic, the dyno's ``heroku.<app id>.<uuid>`` name and the two log lines. The
engine reads the numbers (``labctl.engine.cgroups``); the controller (``controller/metrics.py``) times them.

The load average copies the kernel's: every sample interval the dyno's *runnable demand* ``n`` (how many of its
tasks ran or waited to run, on average over the interval) is folded into three exponentially-damped averages,
``load = load * e + n * (1 - e)`` with ``e = exp(-interval / window)`` for windows of 1, 5 and 15 minutes, all of
them scaled by the lab's time scale.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

FEATURE = "log-runtime-metrics"
DESCRIPTION = "Emit dyno resource usage information into app logs"
EMIT_EVERY = 20.0  # seconds between two samples of a dyno (Dev Center: "approximately once every 20 seconds")
SAMPLE_EVERY = 5.0  # seconds between two readings of the demand (the kernel's LOAD_FREQ)
WINDOWS = (60.0, 300.0, 900.0)  # load_avg_1m, load_avg_5m, load_avg_15m
MIB = 1024 * 1024


@dataclass
class LoadAverage:
    """A dyno's three load averages, starting at 0 like a fresh host's."""

    one: float = 0.0
    five: float = 0.0
    fifteen: float = 0.0

    def add(self, demand: float, interval: float, timescale: float) -> None:
        """Fold ``demand`` (runnable tasks over the last ``interval`` seconds) into the three averages."""
        one, five, fifteen = (math.exp(-interval / (w * timescale)) for w in WINDOWS)
        self.one = self.one * one + demand * (1 - one)
        self.five = self.five * five + demand * (1 - five)
        self.fifteen = self.fifteen * fifteen + demand * (1 - fifteen)


def demand(busy_ns: int, interval: float) -> float:
    """Runnable demand: nanoseconds the dyno's tasks spent running or waiting to run, per second of the interval."""
    return max(0.0, busy_ns / 1e9 / interval) if interval > 0 else 0.0


def app_id(app: str, created_at: float) -> int:
    """The app's number in ``dyno=heroku.<app id>.<uuid>`` (Heroku's is the app's legacy numeric id; the lab
    derives a stable 7-8 digit one from the app's name and creation time)."""
    return 1_000_000 + zlib.crc32(f"{app}:{created_at!r}".encode()) % 99_000_000


def dyno_id(app_number: int, container_id: str) -> str:
    """``heroku.<app id>.<uuid>``: the uuid is the container's, so it changes with every new container."""
    h = (container_id + "0" * 32)[:32]
    return f"heroku.{app_number}.{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def load_line(source: str, dyno: str, load: LoadAverage) -> str:
    return (
        f"source={source} dyno={dyno} sample#load_avg_1m={load.one:.2f} "
        f"sample#load_avg_5m={load.five:.2f} sample#load_avg_15m={load.fifteen:.2f}"
    )


@dataclass(frozen=True)
class MemorySample:
    """From the dyno's memory cgroup (``memory.stat``, the hierarchical ``total_*`` counters)."""

    rss: int  # bytes
    cache: int  # bytes
    swap: int  # bytes
    pgpgin: int  # pages
    pgpgout: int  # pages

    @property
    def total(self) -> int:
        """Dev Center: the total memory in use, the sum of resident, cache and swap memory."""
        return self.rss + self.cache + self.swap


def memory_line(source: str, dyno: str, mem: MemorySample, quota_mb: int) -> str:
    return (
        f"source={source} dyno={dyno} sample#memory_total={mem.total / MIB:.2f}MB "
        f"sample#memory_rss={mem.rss / MIB:.2f}MB sample#memory_cache={mem.cache / MIB:.2f}MB "
        f"sample#memory_swap={mem.swap / MIB:.2f}MB sample#memory_pgpgin={mem.pgpgin}pages "
        f"sample#memory_pgpgout={mem.pgpgout}pages sample#memory_quota={quota_mb:.2f}MB"
    )
