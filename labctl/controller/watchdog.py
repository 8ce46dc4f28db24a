"""Timers the dyno manager runs on running dynos: daily cycling and memory quotas.

- Cycling (heroku-reference §2.5): every dyno, one-offs included, is restarted after 24 h plus its own
  random 0-216 min; a restart or a release resets the clock. The log says ``Cycling``.
- Memory (heroku-reference §6.2): above 100 % of the size's quota the dyno logs R14 (and keeps running);
  at the size's R15 limit the kernel kills it (the container's memory limit) and the exit is logged as R15.
  A ``memory`` fault on the instance (issue 16) lowers both: the kernel kills at the instance's lowered limit
  (R15), and the quota shrinks in the same proportion (half of it for a Standard dyno; docs/instances.md).
"""

from __future__ import annotations

import random
from collections.abc import Callable

from labctl.controller.context import Context, LabClock
from labctl.domain import clock
from labctl.domain.sizes import get_size
from labctl.records import AppRow, DynoRow

MEMORY_EVERY = 20.0  # Heroku repeats R14 about every 20 s while the dyno stays over quota
PRUNE_EVERY = 30.0  # real seconds between trims of the log store to Logplex's last 1500 lines per app

# restart(app_row, rows, event): what ``ps:restart`` does to those dynos (preboot or not), logged as ``event``
Restart = Callable[[AppRow, list[DynoRow], str | None], None]


def cycle_deadline(scale: LabClock, rng: random.Random, now: float, period: float = clock.CYCLE_BASE) -> float:
    """When a dyno started at ``now`` is cycled: ``period`` (24 h unless the lab was started with
    ``--cycle-period``) plus its own random share of up to 216 min in 24 h, scaled."""
    return now + scale(period + rng.uniform(0, period * clock.CYCLE_JITTER_SHARE))


class Watchdog:
    def __init__(self, ctx: Context, restart: Restart, instance_quota: Callable[[DynoRow], int | None] | None = None):
        self.ctx = ctx
        self.instance_quota = instance_quota or (lambda row: None)  # MB a memory fault left of the instance
        self.store = ctx.store
        self.restart = restart
        self.next_memory_check = 0.0
        self.next_prune = 0.0

    def tick(self, now: float) -> None:
        self._cycle(now)
        if now >= self.next_memory_check:
            self.next_memory_check = now + max(0.5, self.ctx.scale(MEMORY_EVERY))
            self._memory()
        if now >= self.next_prune:  # logs keep the last 1500 lines per app (heroku-reference §8)
            self.next_prune = now + PRUNE_EVERY
            self.store.prune_logs()

    def next_due(self) -> float:
        due = [r["cycle_at"] for r in self.store.dynos() if r["cycle_at"] and r["state"] == "up"]
        return min(due + [self.next_memory_check])

    def _cycle(self, now: float) -> None:
        for row in self.store.dynos():
            if row["state"] == "up" and row["cycle_at"] and row["cycle_at"] <= now and row["container"]:
                app_row = self.store.app(row["app"])
                if app_row is not None:
                    self.restart(app_row, [row], "Cycling")

    def _memory(self) -> None:
        left: dict[str | None, int | None] = {}  # per instance, looked up once a pass (most dynos share one)
        for row in self.store.dynos():
            if row["state"] != "up" or not row["container"]:
                continue
            used = self.ctx.engine.memory_bytes(row["container"])
            if used is None:
                continue
            if row["instance"] not in left:
                left[row["instance"]] = self.instance_quota(row)
            self._report(row, used, left[row["instance"]])

    def _report(self, row: DynoRow, used: int, left: int | None) -> None:
        size = get_size(row["size"])
        mb = used / (1024 * 1024)
        # what a memory fault left of the instance is the dyno's R15 limit now; its quota shrinks in proportion
        quota = size.memory_mb if left is None else min(size.memory_mb, left * size.memory_mb / size.r15_mb)
        if mb > quota:
            pct = 100.0 * mb / quota
            self.ctx.sink.heroku(row["app"], row["name"], f"Process running mem={mb:.0f}MB({pct:.1f}%)")
            self.ctx.sink.heroku(row["app"], row["name"], "Error R14 (Memory quota exceeded)")


def r15_lines(row: DynoRow, limit_mb: int) -> list[str]:
    """What the dyno manager logs when the kernel killed the dyno at its R15 limit."""
    size = get_size(row["size"])
    pct = 100.0 * limit_mb / size.memory_mb
    return [
        f"Process running mem={limit_mb}MB({pct:.1f}%)",
        "Error R15 (Memory quota vastly exceeded)",
        "Stopping process with SIGKILL",
    ]
