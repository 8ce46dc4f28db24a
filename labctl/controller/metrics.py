"""``log-runtime-metrics``: for each running dyno of an app with the feature on, the dyno manager logs a load and a
memory sample about every 20 s (scaled), as ``heroku[web.1]: source=web.1 dyno=heroku.<app id>.<uuid> …``.

A thread of its own reads the dynos' cgroups every 5 s (scaled; the kernel's load sampling period) to keep each
container's load average, and writes the two lines when a dyno's 20 s are up. It takes no runtime lock: it only
reads rows and writes log lines, and a container that goes meanwhile reads as "no sample".
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from labctl.controller.context import Context
from labctl.domain import runtime_metrics as rm
from labctl.domain.sizes import get_size
from labctl.engine.cgroups import Cgroups, CpuReading, busy_delta
from labctl.records import AppRow, DynoRow

log = logging.getLogger("labctl.metrics")
MIN_SAMPLE, MIN_EMIT = 0.1, 0.5  # lab floors of the scaled periods, in seconds
IDLE_LOOK = 1.0  # seconds between looks for an app with the feature while none has it (issue 18: idle CPU)


@dataclass
class _Watched:
    """One container's readings: the last CPU reading, its time, the load average, the next emission."""

    cpu: CpuReading
    at: float
    next_emit: float
    load: rm.LoadAverage = field(default_factory=rm.LoadAverage)


class RuntimeMetrics:
    """Samples and logs the dynos of the apps that enabled ``log-runtime-metrics``."""

    def __init__(self, ctx: Context, stopping: Callable[[], bool], cgroups: Cgroups | None = None):
        self.ctx = ctx
        self.stopping = stopping
        self.cgroups = cgroups or Cgroups()
        self.watched: dict[str, _Watched] = {}

    def start(self) -> None:
        threading.Thread(target=self._loop, daemon=True, name="runtime-metrics").start()

    def _loop(self) -> None:
        while not self.stopping():
            sampling = True
            try:
                sampling = self.tick(time.time())
            except Exception:  # noqa: BLE001 - a failed sample must not end the sampling; the log says what
                log.exception("runtime metrics failed")
            period = self.ctx.scale(rm.SAMPLE_EVERY)
            time.sleep(max(MIN_SAMPLE, period) if sampling else max(IDLE_LOOK, period))

    def tick(self, now: float) -> bool:
        """Read every watched dyno once; log the samples that are due. False: no app has the feature on."""
        store = self.ctx.store
        apps = {a["name"]: a for a in store.apps() if a["features"].get(rm.FEATURE)}
        rows = [r for r in store.dynos() if r["app"] in apps and r["container"]] if apps else []
        live = {r["container"] for r in rows if r["container"]}
        self.watched = {cid: w for cid, w in self.watched.items() if cid in live}
        self.cgroups.forget(live)
        for row in rows:
            self._sample(row, apps[row["app"]], now)
        return bool(apps)

    def _sample(self, row: DynoRow, app_row: AppRow, now: float) -> None:
        cid = row["container"]
        assert cid is not None
        cpu = self.cgroups.cpu(cid)
        if cpu is None:
            return
        w = self.watched.get(cid)
        if w is None:  # the first reading is the baseline; the first sample follows a period later
            self.watched[cid] = _Watched(cpu, now, now + self._emit_period())
            return
        interval = now - w.at
        w.load.add(rm.demand(busy_delta(w.cpu, cpu), interval), interval, self.ctx.scale.factor)
        w.cpu, w.at = cpu, now
        if now >= w.next_emit:
            w.next_emit = now + self._emit_period()
            self._emit(row, app_row, cid, w.load)

    def _emit(self, row: DynoRow, app_row: AppRow, cid: str, load: rm.LoadAverage) -> None:
        mem = self.cgroups.memory(cid)
        if mem is None:
            return
        source = row["name"]
        dyno = rm.dyno_id(rm.app_id(app_row["name"], app_row["created_at"]), cid)
        sink = self.ctx.sink
        sink.heroku(row["app"], source, rm.load_line(source, dyno, load))
        sink.heroku(row["app"], source, rm.memory_line(source, dyno, mem, get_size(row["size"]).memory_mb))

    def _emit_period(self) -> float:
        return max(MIN_EMIT, self.ctx.scale(rm.EMIT_EVERY))
