"""The dyno manager's reconcile loop: it keeps the engine converged on the store's intent.

State (intent and timers) lives in the store; the labels on containers are the runtime truth, and ``tick``
reconciles the two. The runtime builds its parts and passes each what it uses (``Context``: store, engine,
log sink, lab clock, lock; and narrow callables for what they need of each other):

- ``dynos.py``: one dyno's lifecycle (start, boot check, exit and crash, restart/stop plans, retire, relocation);
- ``instances.py``: placement, sandboxes, instance teardown;
- ``routing.py``: the routing set, the router container and its log;
- ``rollout.py``: preboot and rolling deploys; ``watchdog.py``: cycling, memory;
- ``engine_sync.py``: labels against the store, engine loss and recovery.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from labctl.controller.context import Context
from labctl.controller.dynos import Dynos, StartedHook
from labctl.controller.engine_sync import FULL_SYNC_EVERY, EngineSync
from labctl.controller.instances import Instances, SandboxHook, is_pool
from labctl.controller.logsink import LogSink
from labctl.controller.metrics import RuntimeMetrics
from labctl.controller.rollout import Rollouts, RolloutState
from labctl.controller.routing import Routing
from labctl.controller.watchdog import Watchdog
from labctl.domain.actions import Placement
from labctl.domain.budget import Budget
from labctl.domain.formation import Process, desired_dyno_names
from labctl.domain.placement import SPREAD
from labctl.engine.docker import Engine
from labctl.errors import EngineError
from labctl.records import AppRow, InstanceRow
from labctl.store import Store

log = logging.getLogger("labctl.runtime")


class Runtime:
    """Builds the dyno manager's parts and runs the reconcile loop over them."""

    def __init__(
        self,
        store: Store,
        engine: Engine,
        sink: LogSink,
        *,
        timescale: float,
        http_port: int,
        pool_size: int,
        provision_time: float = 0.0,
        cycle_period: float | None = None,
        https_port: int | None = None,
        tls: Callable[[list[str]], dict[str, str]] | None = None,
        debug_headers: bool = False,
        placement: str = SPREAD,
    ):
        self.ctx = ctx = Context(store, engine, sink, timescale)
        if cycle_period is not None:
            ctx.cycle_period = cycle_period
        self.store, self.engine, self.sink = store, engine, sink
        self.scale = ctx.scale  # the lab clock: ``set_timescale`` changes it for every part at once
        self.lock = ctx.lock
        self.stopping = False
        # Extension points (faults): called under the lock.
        self.on_sandbox_created: list[SandboxHook] = []
        self.on_dyno_started: list[StartedHook] = []
        self.routing = Routing(
            ctx, RolloutState(store), http_port=http_port, https_port=https_port, tls=tls, debug_headers=debug_headers
        )
        self.instances = Instances(ctx, pool_size, self.on_sandbox_created, provision_time, placement)
        self.dynos = Dynos(ctx, self.instances, self.routing.sync, self.on_dyno_started)
        self.rollouts = Rollouts(ctx, self.dynos)
        self.watchdog = Watchdog(ctx, self.rollouts.restart, self.instances.memory_quota_mb)
        self.metrics = RuntimeMetrics(ctx, lambda: self.stopping)  # log-runtime-metrics, in a thread of its own
        self.engine_sync = EngineSync(
            ctx, self.dynos, sweep_instances=self.instances.sweep_dedicated, recover_router=self._recover_router
        )

    def _recover_router(self) -> None:
        self.routing.recover()
        self.instances.isolate_all()  # the isolation rules admit the router by its address

    # -- boot ---------------------------------------------------------------------------------------
    def start(self) -> None:
        """Bring networks, router and pool up, adopt what runs, then reconcile forever in a thread."""
        with self.lock:
            self.routing.start()
            self.instances.ensure_pool()
            self.engine_sync.adopt()
        self.engine.watch_events(
            self._on_event, on_lost=self.engine_sync.on_lost, on_reconnect=self.engine_sync.on_events_reconnected
        )
        self.routing.follow_log()
        self.metrics.start()
        threading.Thread(target=self._loop, daemon=True, name="reconcile").start()

    def stop(self) -> None:
        """The reconcile loop ends after its current wait (the containers keep running)."""
        self.stopping = True

    @property
    def http_port(self) -> int:
        """The router's HTTP port on 127.0.0.1 (the engine's choice when the lab asked for port 0)."""
        return self.routing.http_port

    @property
    def https_port(self) -> int | None:
        return self.routing.https_port

    @property
    def engine_lost(self) -> bool:
        """The engine stopped answering; the first good tick after it recovers the lab."""
        return self.engine_sync.lost

    def _on_event(self, ev: dict[str, Any]) -> None:
        if ev.get("Action") in ("die", "destroy", "oom"):
            self.ctx.tracked.exited.add(ev.get("id", ""))
            self.wake()

    # -- the loop ----------------------------------------------------------------------------------
    def _loop(self) -> None:
        wakeup = self.ctx.wakeup
        while not self.stopping:
            delay = 1.0
            try:
                with self.lock:
                    delay = self.tick()
            except EngineError as err:
                log.warning("engine error during reconcile: %s", err)
                if not self.engine.answers():
                    self.engine_sync.on_lost()
                delay = 1.0
            except Exception:  # noqa: BLE001 - the loop must survive anything; the log says what
                log.exception("reconcile failed")
                delay = 1.0
            wakeup.wait(timeout=delay)
            wakeup.clear()

    def wake(self) -> None:
        self.ctx.wake()

    def tick(self) -> float:
        """One reconciliation pass; returns how long the loop may sleep."""
        if self.engine_lost:
            self.engine.ping()  # still away: the loop retries in a second
            self.engine_sync.recover()
        now = time.time()
        if self.engine_sync.due(now):
            self.engine_sync.full_sync()
        for app_row in self.store.apps():
            self._converge_formation(app_row)
        due = [r for r in self.store.dynos() if r["container"] is None and r["next_start"] and r["next_start"] <= now]
        self.dynos.start_dynos([(row, Placement.ANY) for row in due])  # at once, bounded (issue 18)
        booting = self.dynos.check_booting()
        self.watchdog.tick(now)
        self.rollouts.tick(now)
        self.routing.follow_log()  # a router restarted (docker restart, its restart policy) ends its log stream
        self.sync_router()
        return self._next_delay(booting)

    def _next_delay(self, booting: bool) -> float:
        if booting:
            return 0.05
        pending = [r["next_start"] for r in self.store.dynos() if r["container"] is None and r["next_start"]]
        soonest = min(pending + [self.watchdog.next_due()], default=time.time() + FULL_SYNC_EVERY) - time.time()
        return max(0.05, min(FULL_SYNC_EVERY, soonest))

    # -- formation -------------------------------------------------------------------------------
    def _converge_formation(self, app_row: AppRow) -> None:
        app = app_row["name"]
        rel = self.store.current_release(app)
        formation = {k: Process(**v) for k, v in app_row["formation"].items()} if rel else {}
        desired = desired_dyno_names(formation)
        rows = {r["name"]: r for r in self.store.dynos(app) if not r["one_off"]}
        for dyno, row in rows.items():
            if dyno not in desired:
                self.dynos.remove_dyno(row)
        if rel is None:
            return  # nothing deployed: no dyno is due
        for dyno, proc in desired.items():
            if dyno not in rows:
                self.dynos.new_dyno_row(app, dyno, proc, rel["version"])

    # -- lab-wide changes ----------------------------------------------------------------------------
    def set_timescale(self, factor: float) -> None:
        """Change the lab clock: what is left of every running timer changes with it; so do the router's."""
        ratio = factor / self.scale.factor
        self.scale.set_factor(factor)
        now = time.time()
        for row in self.store.dynos():
            timers = {
                "cycle_at": row["cycle_at"],
                "next_start": row["next_start"],
                "boot_deadline": row["boot_deadline"],
            }
            changes = {k: now + (at - now) * ratio for k, at in timers.items() if at is not None and at > now}
            if changes:
                self.store.update_dyno(row["app"], row["name"], **changes)
        self.instances.rescale(ratio, now)
        self.wake()
        self.routing.invalidate()  # the router's timeouts scale too
        self.sync_router()

    @property
    def budgets_enforced(self) -> bool:
        """The instances' budgets are parent cgroups on this host (cgroup v1, writable)."""
        return self.instances.cgroups.enabled

    def instance_budget(self, inst: InstanceRow) -> Budget:
        return self.instances.budget(inst)

    def apply_budget(self, iid: str, faults: list[dict[str, Any]]) -> bool:
        """The instance's parent cgroup carries its budget under ``faults``; False: budgets not enforced here."""
        return self.instances.apply_budget(iid, faults)

    def fail_instance(self, iid: str) -> list[str]:
        """``host-failure``: the instance dies at once; its dynos are relocated (``Dynos.fail_instance``)."""
        return self.dynos.fail_instance(iid)

    def destroy_app(self, app_row: AppRow) -> None:
        """``apps:destroy``: the app's dynos and sandboxes go at once (no grace), its dedicated instances too."""
        app = app_row["name"]
        rows = self.store.dynos(app)
        doomed = [r["container"] for r in rows if r["container"]]
        doomed += [cid for cid, t in self.ctx.tracked.terminating.items() if t.app == app]
        sandboxes = [sb for sb in self.store.sandboxes() if sb["app"] == app]
        self.engine.remove_many(doomed)
        self.engine.remove_many([sb["container"] for sb in sandboxes])
        for sb in sandboxes:
            inst = self.store.instance(sb["instance"])
            if inst and not is_pool(inst):
                self.store.delete_instance(sb["instance"])
                self.instances.drop_budget(sb["instance"])
            else:
                self.store.delete_sandbox(sb["instance"], app)
        for r in rows:
            inst = self.store.instance(r["instance"]) if r["instance"] else None
            if inst is not None and not is_pool(inst):
                self.store.delete_instance(inst["id"])
                self.instances.drop_budget(inst["id"])
        self.store.delete_app(app)
        self.sync_router()

    def sync_router(self, also_up: set[tuple[str, str]] | None = None) -> None:
        """Reload the router when the routing set changed; returns once the new set is in force."""
        self.routing.sync(also_up)
