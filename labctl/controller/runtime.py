"""The dyno manager's mechanics: instances, sandboxes, starting, stopping and watching dyno containers.

It owns every Docker change the lab makes while it runs. State (intent and timers) lives in the store;
the labels on containers are the runtime truth, and ``tick`` reconciles the two.

Collaborators, each holding a reference to the runtime and called under its lock: ``instances.py``
(placement, sandboxes, instance failure and teardown), ``engine_sync.py`` (labels against the store, engine
loss and recovery), ``routing.py`` (the routing set, the router container and its log), ``watchdog.py``
(cycling, memory) and ``rollout.py`` (preboot, rolling deploys).
"""

from __future__ import annotations

import logging
import random
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from labctl import const
from labctl.controller.engine_sync import EngineSync
from labctl.controller.instances import Instances
from labctl.controller.logsink import LogSink
from labctl.controller.routing import MIN_BOOT, Routing
from labctl.controller.watchdog import cycle_deadline, r15_lines
from labctl.domain import clock
from labctl.domain.actions import DynoPlan, Placement
from labctl.domain.formation import Process, desired_dyno_names
from labctl.domain.sizes import get_size
from labctl.engine.docker import ENGINE_ERRORS, DynoSpec, Engine
from labctl.store import Store

log = logging.getLogger("labctl.runtime")
DRAIN_DELAY = 0.15  # seconds between removing a dyno from the router and sending it SIGTERM
FULL_SYNC_EVERY = 5.0


class Runtime:
    """Applies plans to containers and keeps the engine converged on the store's intent."""

    def __init__(self, store: Store, engine: Engine, sink: LogSink, *, timescale: float, http_port: int,
                 pool_size: int, https_port: int | None = None,
                 tls: Callable[[list[str]], dict[str, str]] | None = None):
        self.store = store
        self.engine = engine
        self.sink = sink
        self.scale = clock.TimeScale(timescale)
        self.http_port = http_port
        self.https_port = https_port
        self.pool_size = pool_size
        self.lock = threading.RLock()
        self.wakeup = threading.Event()
        self.terminating: dict[str, dict[str, Any]] = {}
        self.attached: set[str] = set()
        self.followed: set[str] = set()
        self.exited: set[str] = set()
        self.last_full_sync = 0.0
        self.rng = random.Random()
        self.stopping = False
        # Extension points (faults): called under the lock.
        self.on_sandbox_created: list[Callable[[str, dict[str, Any]], None]] = []
        self.on_dyno_started: list[Callable[[str, str], None]] = []
        self.instances = Instances(self)
        self.engine_sync = EngineSync(self)
        self.routing = Routing(self, tls)
        from labctl.controller.watchdog import Watchdog

        self.watchdog = Watchdog(self)
        from labctl.controller.rollout import Rollouts

        self.rollouts = Rollouts(self)

    # -- boot ---------------------------------------------------------------------------------------
    def start(self) -> None:
        """Bring networks, router and pool up, adopt what runs, then reconcile forever in a thread."""
        with self.lock:
            self.routing.start()
            self.instances.ensure_pool()
            self.engine_sync.adopt()
        self.engine.watch_events(self._on_event, on_lost=self.engine_sync.on_lost)
        self.routing.follow_log()
        threading.Thread(target=self._loop, daemon=True, name="reconcile").start()

    @property
    def engine_lost(self) -> bool:
        """The engine stopped answering; the first good tick after it recovers the lab."""
        return self.engine_sync.lost

    def _on_event(self, ev: dict[str, Any]) -> None:
        if ev.get("Action") in ("die", "destroy", "oom"):
            self.exited.add(ev.get("id", ""))
            self.wakeup.set()

    # -- the loop ----------------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self.stopping:
            delay = 1.0
            try:
                with self.lock:
                    delay = self.tick()
            except ENGINE_ERRORS as err:
                log.warning("engine error during reconcile: %s", err)
                if not self.engine.answers():
                    self.engine_sync.on_lost()
                delay = 1.0
            except Exception:  # noqa: BLE001 - the loop must survive anything; the log says what
                log.exception("reconcile failed")
                delay = 1.0
            self.wakeup.wait(timeout=delay)
            self.wakeup.clear()

    def wake(self) -> None:
        self.wakeup.set()

    def tick(self) -> float:
        """One reconciliation pass; returns how long the loop may sleep."""
        if self.engine_lost:
            self.engine.ping()  # still away: the loop retries in a second
            self.engine_sync.recover()
        now = time.time()
        if now - self.last_full_sync >= FULL_SYNC_EVERY or self.exited:
            self.engine_sync.full_sync()
        for app in self.store.apps():
            self._converge_formation(app)
        for row in self.store.dynos():
            if row["container"] is None and row["next_start"] is not None and row["next_start"] <= now:
                self.start_dyno(row)
        booting = self._check_booting()
        self.watchdog.tick(now)
        self.rollouts.tick(now)
        self.sync_router()
        return self._next_delay(booting)

    def _next_delay(self, booting: bool) -> float:
        if booting:
            return 0.05
        pending = [r["next_start"] for r in self.store.dynos() if r["container"] is None and r["next_start"]]
        soonest = min(pending + [self.watchdog.next_due()], default=time.time() + FULL_SYNC_EVERY) - time.time()
        return max(0.05, min(FULL_SYNC_EVERY, soonest))

    # -- formation -------------------------------------------------------------------------------
    def _converge_formation(self, app: dict[str, Any]) -> None:
        rel = self.store.current_release(app["name"])
        formation = {k: Process(**v) for k, v in app["formation"].items()} if rel else {}
        desired = desired_dyno_names(formation)
        rows = {r["name"]: r for r in self.store.dynos(app["name"]) if not r["one_off"]}
        for name, row in rows.items():
            if name not in desired:
                self.remove_dyno(row)
        for name, proc in desired.items():
            if name not in rows:
                self._new_dyno_row(app, name, proc, rel["version"])  # type: ignore[index]

    def _new_dyno_row(self, app: dict[str, Any], name: str, proc: Process, release: int,
                      one_off: bool = False, attach: bool = False) -> dict[str, Any]:
        row = {"app": app["name"], "name": name, "type": proc.type, "size": proc.size, "command": proc.command,
               "release": release, "instance": None, "state": "starting", "updated_at": time.time(),
               "container": None, "port": None, "crashes": 0, "next_start": time.time(), "boot_deadline": None,
               "up_since": None, "cycle_at": None, "one_off": int(one_off), "attach": int(attach)}
        self.store.add_dyno(row)
        return row

    def remove_dyno(self, row: dict[str, Any]) -> None:
        """Scale-down or app removal: the dyno leaves the router, then stops; a dedicated instance goes too."""
        self.store.delete_dyno(row["app"], row["name"])
        app = self.store.app(row["app"])
        in_space = bool(app and app["space"])
        if row["container"]:
            self.sync_router()
            self.sink.heroku(row["app"], row["name"], "Stopping all processes with SIGTERM")
            self.sink.state(row["app"], row["name"], row["state"], "down")
            self.retire_container(row["container"], row["app"], row["name"],
                                  retire_instance=row["instance"] if in_space else None)
        elif in_space and row["instance"]:
            self.instances.retire_instance(row["instance"])

    # -- starting ---------------------------------------------------------------------------------
    def _free_port(self, instance: str, app: str) -> int:
        used = {r["port"] for r in self.store.dynos(app) if r["instance"] == instance and r["port"]}
        used |= {t.get("port") for t in self.terminating.values()}
        used |= {o["port"] for o in self.store.old_dynos(app) if o["instance"] == instance}
        while True:
            port = self.rng.randint(10000, 60000)
            if port not in used:
                return port

    def start_dyno(self, row: dict[str, Any], placement: Placement = Placement.ANY) -> None:
        """Start a new container for the dyno on its (possibly new) instance. Failures become crashes."""
        app = self.store.app(row["app"])
        rel = self.store.release(row["app"], row["release"])
        if app is None or rel is None:
            return
        instance = self.instances.place(row, placement)
        sb = self.instances.ensure_sandbox(instance, app)
        port = self._free_port(instance, app["name"])
        size = get_size(row["size"])
        is_web = row["type"] == "web"
        env = {**rel["config"], "DYNO": row["name"], const.ENV_INSTANCE: instance, "LABCTL_APP": app["name"],
               "HEROKU_APP_NAME": app["name"], "HEROKU_RELEASE_VERSION": f"v{rel['version']}"}
        if is_web:
            env["PORT"] = str(port)
        spec = DynoSpec(app["name"], row["name"], rel["version"], instance, rel["image"], row["command"], env,
                        sb["container"], size.r15_mb, size.cpu_shares)
        self.sink.state(app["name"], row["name"], row["state"], "starting")
        self.sink.heroku(app["name"], row["name"], f"Starting process with command `{row['command']}`")
        now = time.time()
        try:
            info = self.engine.start_dyno(spec, secrets.token_hex(3))
        except ENGINE_ERRORS as err:
            self.sink.heroku(app["name"], row["name"], f"Error starting process: {str(err)[:200]}")
            self._crashed(row, app, now)
            return
        # R10 counts from the process launch, not from the container's creation (heroku-reference §2.2).
        # Lab floor: a scaled boot timeout never drops below MIN_BOOT seconds, what a container needs here.
        deadline = time.time() + max(MIN_BOOT, self.scale(clock.BOOT_TIMEOUT)) if is_web else None
        self.store.update_dyno(app["name"], row["name"], instance=instance, container=info.id,
                               port=port if is_web else None, state="starting", updated_at=now,
                               next_start=None, boot_deadline=deadline, up_since=None,
                               cycle_at=cycle_deadline(self, now))
        if row["attach"]:
            self.attached.add(info.id)
        else:
            self._follow(app["name"], row["name"], info.id)
        for hook in self.on_dyno_started:  # e.g. a cpu fault of the instance applies to the new dyno
            hook(instance, info.id)
        if not is_web:
            self._mark_up(app["name"], row["name"], "starting")

    def _follow(self, app: str, dyno: str, cid: str, since: float | None = None) -> None:
        if cid in self.followed:
            return
        self.followed.add(cid)
        self.engine.follow_logs(cid, lambda ts, line: self.sink.app(app, dyno, line, ts), since=since)

    def _mark_up(self, app: str, dyno: str, old: str) -> None:
        self.sink.state(app, dyno, old, "up")
        now = time.time()
        self.store.update_dyno(app, dyno, state="up", updated_at=now, up_since=now, boot_deadline=None)

    def _check_booting(self) -> bool:
        """Web dynos are ``up`` once they listen on $PORT; past the boot timeout: R10 (heroku-reference §2.2)."""
        booting = False
        bound: list[dict[str, Any]] = []
        for row in self.store.dynos():
            if row["state"] != "starting" or not row["container"] or row["type"] != "web":
                continue
            info = self.engine.try_info(row["container"])
            if info is None or info.status != "running":
                continue
            if row["port"] in self.engine.listening_ports(info):
                bound.append(row)
            elif row["boot_deadline"] and time.time() > row["boot_deadline"]:
                self.sink.heroku(row["app"], row["name"], "Error R10 (Boot timeout) -> Web process failed to bind "
                                 "to $PORT within 60 seconds of launch")
                self.sink.heroku(row["app"], row["name"], "Stopping process with SIGKILL")
                self.engine.kill(row["container"])
                self.exited.add(row["container"])
            else:
                booting = True
        if bound:
            # Route to the newly bound dynos first; only then does anyone see them `up` (lab-spec §5).
            self.sync_router(also_up={(r["app"], r["name"]) for r in bound})
            for r in bound:
                self._mark_up(r["app"], r["name"], "starting")
        return booting

    # -- exits and crashes ------------------------------------------------------------------------
    def _on_exit(self, row: dict[str, Any]) -> None:
        info = self.engine.try_info(row["container"])
        status = info.exit_code if info else None
        if info is not None and info.oom_killed:
            for line in r15_lines(row, get_size(row["size"]).r15_mb):
                self.sink.heroku(row["app"], row["name"], line)
        self.sink.heroku(row["app"], row["name"], f"Process exited with status {status}" if status is not None
                         else "Process exited")
        if row["container"]:
            self.engine.remove(row["container"])
            self.followed.discard(row["container"])
        app = self.store.app(row["app"])
        if row["one_off"] or app is None:
            self.sink.state(row["app"], row["name"], row["state"], "complete")
            self.store.delete_dyno(row["app"], row["name"])
            if app and app["space"] and row["instance"]:
                self.instances.retire_instance(row["instance"])
            return
        self._crashed(row, app, time.time())

    def _crashed(self, row: dict[str, Any], app: dict[str, Any], now: float) -> None:
        """Crash policy (heroku-reference §2.4): PS restarts at once; CR cools off after the first restart.

        Lab choice: a dyno that stayed up for at least the boot timeout had "a good start", which
        resets its crash count.
        """
        crashes = row["crashes"]
        if row["up_since"] and now - row["up_since"] >= self.scale(clock.BOOT_TIMEOUT):
            crashes = 0
        crashes += 1
        delay = self.scale(clock.crash_delay(crashes, bool(app["space"])))
        self.sink.state(row["app"], row["name"], row["state"], "crashed")
        self.store.update_dyno(row["app"], row["name"], state="crashed", updated_at=now, container=None,
                               crashes=crashes, next_start=now + delay, up_since=None, boot_deadline=None)

    # -- stopping -------------------------------------------------------------------------------------
    def apply_plan(self, row: dict[str, Any], plan: DynoPlan, release: int | None = None,
                   event: str | None = None) -> None:
        """Carry out a restart/stop plan for one dyno (``apply_plans``)."""
        self.apply_plans([(row, plan)], release, event)

    def apply_plans(self, items: list[tuple[dict[str, Any], DynoPlan]], release: int | None = None,
                    event: str | None = None) -> None:
        """Carry out restart/stop plans for dynos that go together (a release, ``ps:restart web``).

        As on Heroku, they go at once: one router reload takes every old address out before any old dyno
        is signalled (lab-spec §5), and a replacement starts as soon as SIGTERM is sent (§2.3) — so without
        preboot a deploy leaves a gap while the new dynos boot (heroku-reference §4.2, §4.3). That reload and the
        new containers' start (~0.25 s each here) do not depend on each other: the starts run beside the
        reload, in a thread this call joins. Nothing else runs meanwhile (the caller holds the runtime's
        lock), and no new dyno is routed before it is ``up``.
        """
        stopping: list[tuple[dict[str, Any], str | None]] = []
        starts: list[tuple[str, str, Placement]] = []
        for row, plan in items:
            retire = row["instance"] if plan.retire_instance else None
            self._announce(row, plan, release, event, retire)
            stopping.append((row, retire))
            if plan.start_again:
                starts.append((row["app"], row["name"], plan.placement))
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="start-replacements") as beside:
            starting = beside.submit(self._start_all, starts)  # the block's end waits for it
            try:
                self.sync_router()  # the old addresses leave the routing set before the dynos are signalled
            except BaseException:
                for row, _ in stopping:  # not signalled: the next full sync retires them as unknown containers
                    self.terminating.pop(row["container"] or "", None)
                raise
        for row, retire in stopping:
            if row["container"]:
                self.retire_container(row["container"], row["app"], row["name"], retire_instance=retire,
                                      port=row["port"])
            elif retire:
                self.instances.retire_instance(retire)
        starting.result()  # raises what the start raised
        self.wake()

    def _announce(self, row: dict[str, Any], plan: DynoPlan, release: int | None, event: str | None,
                  retire: str | None) -> None:
        """Log the action, record the dyno's new intent; a running container becomes ``terminating``."""
        app_name, name = row["app"], row["name"]
        self.sink.heroku(app_name, name, event or plan.event)
        if not plan.start_again:
            self.store.delete_dyno(app_name, name)
        else:
            # next_start = now: should the controller die before the new container exists, the loop starts it.
            self.store.update_dyno(app_name, name, container=None, port=None, crashes=0, state="starting",
                                   updated_at=time.time(), release=release or row["release"], next_start=time.time(),
                                   instance=None if plan.placement is Placement.NEW else row["instance"])
        if row["container"]:
            self.sink.heroku(app_name, name, "Stopping all processes with SIGTERM")
            self.sink.state(app_name, name, row["state"], "starting" if plan.start_again else "down")
            # terminating from now on: its port stays taken for a new container on the same instance
            self.terminating[row["container"]] = {"app": app_name, "dyno": name, "port": row["port"],
                                                  "instance": retire}

    def _start_all(self, starts: list[tuple[str, str, Placement]]) -> None:
        """Start the replacements one after another (ports on a shared instance are chosen one at a time)."""
        for app_name, name, placement in starts:
            fresh = self.store.dyno(app_name, name)
            if fresh is None:
                continue
            if placement is Placement.NEW:
                fresh["instance"] = None
            self.start_dyno(fresh, placement)

    def retire_container(self, cid: str, app: str, dyno: str, retire_instance: str | None = None,
                         quiet: bool = False, port: int | None = None) -> None:
        """SIGTERM → grace → SIGKILL (R12) in a thread, then remove; optionally tear the instance down."""
        info = {"app": app, "dyno": dyno, "port": port, "instance": retire_instance}
        self.terminating[cid] = info
        grace = self.scale(clock.SHUTDOWN_GRACE)

        def run() -> None:
            time.sleep(DRAIN_DELAY)
            status, killed = self.engine.terminate(cid, grace)
            if not quiet:
                if killed:
                    self.sink.heroku(app, dyno, "Error R12 (Exit timeout) -> At least one process failed to exit "
                                     "within 30 seconds of SIGTERM")
                    self.sink.heroku(app, dyno, "Stopping remaining processes with SIGKILL")
                if status is not None:
                    self.sink.heroku(app, dyno, f"Process exited with status {status}")
            try:
                self.engine.remove(cid)
            except ENGINE_ERRORS:
                log.warning("could not remove %s", cid)
            with self.lock:
                self.terminating.pop(cid, None)
                self.followed.discard(cid)
                if retire_instance:
                    self.instances.retire_instance(retire_instance)
            self.wake()

        threading.Thread(target=run, daemon=True, name=f"stop-{cid[:12]}").start()

    def fail_instance(self, iid: str) -> list[str]:
        """``host-failure``: the instance dies at once; its dynos are relocated (``Instances.fail_instance``)."""
        return self.instances.fail_instance(iid)

    def destroy_app(self, app: dict[str, Any]) -> None:
        """``apps:destroy``: the app's dynos and sandboxes go at once (no grace), its dedicated instances too."""
        rows = self.store.dynos(app["name"])
        doomed = [r["container"] for r in rows if r["container"]]
        doomed += [cid for cid, t in self.terminating.items() if t["app"] == app["name"]]
        sandboxes = [sb for sb in self.store.sandboxes() if sb["app"] == app["name"]]
        self.engine.remove_many(doomed)
        self.engine.remove_many([sb["container"] for sb in sandboxes])
        for sb in sandboxes:
            inst = self.store.instance(sb["instance"])
            if inst and inst["runtime"] != "common":
                self.store.delete_instance(sb["instance"])
            else:
                self.store.delete_sandbox(sb["instance"], app["name"])
        for r in rows:
            if app["space"] and r["instance"] and self.store.instance(r["instance"]):
                self.store.delete_instance(r["instance"])
        self.store.delete_app(app["name"])
        self.sync_router()

    # -- router -----------------------------------------------------------------------------------
    def sync_router(self, also_up: set[tuple[str, str]] | None = None) -> None:
        """Reload the router when the routing set changed; returns once the new set is in force."""
        self.routing.sync(also_up)

