"""One dyno's lifecycle: its row, starting a container, the boot check, exits and crashes, restart/stop
plans, retiring a container, and relocation when its instance fails.

State (intent and timers) is in the store; each call here is made under the runtime's lock. Where a dyno
runs is ``Instances``' decision; when the routing set changes, ``sync_router`` (the ``Routing``'s) reloads
the router before any old dyno is signalled.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from labctl import const
from labctl.controller.context import Context, Terminating
from labctl.controller.instances import Instances
from labctl.controller.routing import MIN_BOOT
from labctl.controller.watchdog import cycle_deadline, r15_lines
from labctl.domain import clock
from labctl.domain.actions import DynoPlan, Placement
from labctl.domain.formation import Process
from labctl.domain.placement import needs_new_dedicated_instance
from labctl.domain.sizes import get_size
from labctl.engine.docker import ContainerInfo, DynoSpec
from labctl.errors import EngineError, NotFound
from labctl.records import AppRow, DynoRow, ReleaseRow

log = logging.getLogger("labctl.runtime")
DRAIN_DELAY = 0.15  # seconds between removing a dyno from the router and sending it SIGTERM
START_POOL = 20  # due dynos started at once at most (``start_dynos``): the engine's create/start calls overlap
BOOT_POLL = 0.01  # seconds between looks at a booting web dyno's sockets (``_watch_boot``)
BOOT_WATCH_MAX = 10.0  # the watcher's longest look at one dyno; the loop's own check goes on after it

SyncRouter = Callable[[set[tuple[str, str]] | None], None]
StartedHook = Callable[[str, str], None]


class Dynos:
    """Starts, watches, stops and moves dyno containers."""

    def __init__(self, ctx: Context, instances: Instances, sync_router: SyncRouter, on_dyno_started: list[StartedHook]):
        self.ctx = ctx
        self.store = ctx.store
        self.engine = ctx.engine
        self.sink = ctx.sink
        self.tracked = ctx.tracked
        self.instances = instances
        self._sync_router = sync_router
        self.on_dyno_started = on_dyno_started  # e.g. a cpu fault of the instance applies to the new dyno
        self._placing = threading.Lock()  # one placement (instance, port) at a time among concurrent starts
        self._started_info: dict[str, ContainerInfo] = {}  # booting web dynos as started: no inspect per tick
        self._watched: dict[str, tuple[ContainerInfo, int, float]] = {}  # cid -> (info, port, until)
        self._watch_lock = threading.Lock()
        self._watcher: threading.Thread | None = None

    def sync_router(self, also_up: set[tuple[str, str]] | None = None) -> None:
        """Reload the router when the routing set changed; returns once the new set is in force."""
        self._sync_router(also_up)

    # -- rows ---------------------------------------------------------------------------------------
    def new_dyno_row(
        self, app: str, dyno: str, proc: Process, release: int, one_off: bool = False, attach: bool = False
    ) -> DynoRow:
        """Record a dyno that is due to start now (the loop starts it; a one-off caller may start it at once)."""
        row: DynoRow = {
            "app": app,
            "name": dyno,
            "type": proc.type,
            "size": proc.size,
            "command": proc.command,
            "release": release,
            "instance": None,
            "state": "starting",
            "updated_at": time.time(),
            "container": None,
            "port": None,
            "crashes": 0,
            "next_start": time.time(),
            "boot_deadline": None,
            "up_since": None,
            "cycle_at": None,
            "one_off": int(one_off),
            "attach": int(attach),
        }
        self.store.add_dyno(row)
        return row

    def remove_dyno(self, row: DynoRow) -> None:
        """Scale-down or app removal: the dyno leaves the router, then stops; a dedicated instance goes too."""
        self.store.delete_dyno(row["app"], row["name"])
        app_row = self.store.app(row["app"])
        dedicated = bool(app_row and app_row["space"]) or self.instances.is_common_dedicated(row["instance"])
        if row["container"]:
            self.sync_router()
            self.sink.heroku(row["app"], row["name"], "Stopping all processes with SIGTERM")
            self.sink.state(row["app"], row["name"], row["state"], "down")
            self.retire_container(
                row["container"], row["app"], row["name"], retire_instance=row["instance"] if dedicated else None
            )
        elif dedicated and row["instance"]:
            self.instances.retire_instance(row["instance"])

    # -- starting ---------------------------------------------------------------------------------
    def _free_port(self, instance: str, app: str) -> int:
        used: set[int | None] = {r["port"] for r in self.store.dynos(app) if r["instance"] == instance and r["port"]}
        used |= {t.port for t in self.tracked.terminating.values() if t.port}
        used |= {o["port"] for o in self.store.old_dynos(app) if o["instance"] == instance}
        used |= {p for i, p in self.tracked.placing.values() if i == instance}  # chosen by a start under way
        while True:
            port = self.ctx.rng.randint(10000, 60000)
            if port not in used:
                return port

    def start_dynos(self, starts: list[tuple[DynoRow, Placement]]) -> None:
        """Start several due dynos at once, at most ``START_POOL`` at a time (a scale 0 → N, a release).

        Each ``start_dyno`` chooses its instance and port under ``_placing`` (what it chose is visible to
        the others in ``tracked.placing`` until the row records it), its sandbox is made once
        (``Instances.ensure_sandbox``), and the engine calls, most of a start's time, overlap. The caller
        holds the runtime's lock, so nothing else changes the store meanwhile; this returns when all are done
        and raises the first error a start raised (failures to start are crashes, as one at a time).
        """
        if len(starts) <= 1:
            for row, placement in starts:
                self.start_dyno(row, placement)
            return
        with ThreadPoolExecutor(max_workers=min(START_POOL, len(starts)), thread_name_prefix="start-dyno") as pool:
            futures = [pool.submit(self.start_dyno, row, placement) for row, placement in starts]
        for f in futures:
            f.result()

    def start_dyno(self, row: DynoRow, placement: Placement = Placement.ANY) -> None:
        """Start a new container for the dyno on its (possibly new) instance. Failures become crashes."""
        try:
            self._start_dyno(row, placement)
        finally:
            self.tracked.placing.pop((row["app"], row["name"]), None)

    def _start_dyno(self, row: DynoRow, placement: Placement) -> None:
        app, dyno = row["app"], row["name"]
        app_row = self.store.app(app)
        rel = self.store.release(app, row["release"])
        if app_row is None or rel is None or rel["image"] is None:
            return  # the app is gone; a release without an image is a build in progress, which no dyno runs
        image = rel["image"]
        with self._placing:
            instance = self.instances.place(row, app_row, placement)
            if self._wait_for_instance(row, instance):
                return
            port = self._free_port(instance, app)
            self.tracked.placing[(app, dyno)] = (instance, port)
        is_web = row["type"] == "web"
        spec = self._spec(app_row, rel, image, row, instance, port if is_web else None)
        self.sink.state(app, dyno, row["state"], "starting")
        self.sink.heroku(app, dyno, f"Starting process with command `{row['command']}`")
        now = time.time()
        try:
            info = self.engine.start_dyno(spec, secrets.token_hex(3))
        except EngineError as err:
            self.sink.heroku(app, dyno, f"Error starting process: {str(err)[:200]}")
            self._crashed(row, app_row, now)
            return
        # R10 counts from the process launch, not from the container's creation (heroku-reference §2.2).
        # Lab floor: a scaled boot timeout never drops below MIN_BOOT seconds, what a container needs here.
        deadline = time.time() + max(MIN_BOOT, self.ctx.scale(clock.BOOT_TIMEOUT)) if is_web else None
        self.store.update_dyno(
            app,
            dyno,
            instance=instance,
            container=info.id,
            port=port if is_web else None,
            state="starting",
            updated_at=now,
            next_start=None,
            boot_deadline=deadline,
            up_since=None,
            cycle_at=cycle_deadline(self.ctx.scale, self.ctx.rng, now, self.ctx.cycle_period),
        )
        if is_web and info.pid:
            self._started_info[info.id] = info
            self._watch_boot(info, port)
        self._started(app, row, instance, info.id)

    def _wait_for_instance(self, row: DynoRow, instance: str) -> bool:
        """A dyno placed on a provisioning instance stays ``starting`` and is due again once it is ready."""
        ready_at = self.instances.provisioning_until(instance)
        if ready_at is None:
            return False
        self.store.update_dyno(row["app"], row["name"], instance=instance, state="starting", next_start=ready_at)
        self.sink.state(row["app"], row["name"], row["state"], "starting")
        self.ctx.wake()
        return True

    def _spec(
        self, app_row: AppRow, rel: ReleaseRow, image: str, row: DynoRow, instance: str, port: int | None
    ) -> DynoSpec:
        """The container of the dyno's next process: the release's image and config, in its sandbox."""
        app = app_row["name"]
        sb = self.instances.ensure_sandbox(instance, app_row)
        size = get_size(row["size"])
        env = {
            **rel["config"],
            "DYNO": row["name"],
            const.ENV_INSTANCE: instance,
            "LABCTL_APP": app,
            "HEROKU_APP_NAME": app,
            "HEROKU_RELEASE_VERSION": f"v{rel['version']}",
        }
        if port is not None:
            env["PORT"] = str(port)
        return DynoSpec(
            app,
            row["name"],
            rel["version"],
            instance,
            image,
            row["command"],
            env,
            sb["container"],
            size.r15_mb,
            size.cpu_shares,
            self.instances.cgroup_parent(instance),
        )

    def _started(self, app: str, row: DynoRow, instance: str, cid: str) -> None:
        if row["attach"]:
            self.tracked.attached.add(cid)
        else:
            self.follow(app, row["name"], cid)
        for hook in self.on_dyno_started:
            hook(instance, cid)
        if row["type"] != "web":
            self._mark_up(app, row["name"], "starting")

    def _watch_boot(self, info: ContainerInfo, port: int) -> None:
        """Wake the loop as soon as the new web dyno binds its port (the loop's own pass looks every 50 ms).

        One thread looks at every booting dyno's sockets every ``BOOT_POLL`` s, without the lock, and only
        wakes the loop: marking the dyno up and routing to it stay ``check_booting``'s (issue 18: a restart's
        new dyno is routed as soon as it listens).
        """
        with self._watch_lock:
            self._watched[info.id] = (info, port, time.time() + BOOT_WATCH_MAX)
            if self._watcher is None or not self._watcher.is_alive():
                self._watcher = threading.Thread(target=self._boot_watch, daemon=True, name="boot-watch")
                self._watcher.start()

    def _boot_watch(self) -> None:
        while True:
            with self._watch_lock:
                watched = list(self._watched.items())
                if not watched:
                    self._watcher = None
                    return
            for cid, (info, port, until) in watched:
                ports = self.engine.listening_ports(info, local_only=True)
                if ports is None or port in ports or time.time() > until:
                    with self._watch_lock:
                        self._watched.pop(cid, None)
                    if ports and port in ports:
                        self.ctx.wake()
            time.sleep(BOOT_POLL)

    def follow(self, app: str, dyno: str, cid: str, since: float | None = None) -> None:
        """Copy the container's output into the app's log (once per container)."""
        if cid in self.tracked.followed:
            return
        self.tracked.followed.add(cid)
        self.engine.follow_logs(cid, lambda ts, line: self.sink.app(app, dyno, line, ts), since=since)

    def _mark_up(self, app: str, dyno: str, old: str) -> None:
        self.sink.state(app, dyno, old, "up")
        now = time.time()
        self.store.update_dyno(app, dyno, state="up", updated_at=now, up_since=now, boot_deadline=None)

    def check_booting(self) -> bool:
        """Web dynos are ``up`` once they listen on $PORT; past the boot timeout: R10 (heroku-reference §2.2).

        Returns whether a web dyno is still booting (the loop then looks again soon).
        """
        booting = False
        bound: list[DynoRow] = []
        rows = [r for r in self.store.dynos() if r["state"] == "starting" and r["container"] and r["type"] == "web"]
        known = {r["container"] for r in rows}
        for gone in [c for c in self._started_info if c not in known]:
            self._started_info.pop(gone, None)
        for row in rows:
            cid = row["container"] or ""
            # The pid the start reported (its /proc shows the namespace's sockets); an exit comes as an event.
            info = self._started_info.get(cid) or self.engine.try_info(cid)
            if info is None or info.status != "running":
                continue
            if row["port"] in (self.engine.listening_ports(info) or set()):
                bound.append(row)
            elif row["boot_deadline"] and time.time() > row["boot_deadline"]:
                fresh = self.engine.try_info(cid) if cid in self._started_info else info
                if fresh is not None and fresh.status == "running":  # an exit meanwhile is a crash, not R10
                    self._boot_timeout(row, cid)
            else:
                booting = True
        if bound:
            # Route to the newly bound dynos first; only then does anyone see them `up` (lab-spec §5).
            self.sync_router({(r["app"], r["name"]) for r in bound})
            for r in bound:
                self._mark_up(r["app"], r["name"], "starting")
        return booting

    def _boot_timeout(self, row: DynoRow, cid: str) -> None:
        self.sink.heroku(
            row["app"],
            row["name"],
            "Error R10 (Boot timeout) -> Web process failed to bind to $PORT within 60 seconds of launch",
        )
        self.sink.heroku(row["app"], row["name"], "Stopping process with SIGKILL")
        self.engine.kill(cid)
        self.tracked.exited.add(cid)

    # -- exits and crashes ------------------------------------------------------------------------
    def on_exit(self, row: DynoRow) -> None:
        """The dyno's container exited: a one-off completes; a formation dyno has crashed."""
        info = self.engine.try_info(row["container"])
        status = info.exit_code if info else None
        if info is not None and info.oom_killed:
            quota = self.instances.memory_quota_mb(row)  # a memory fault lowered the instance's limit
            for line in r15_lines(row, min(get_size(row["size"]).r15_mb, quota or 10**9)):
                self.sink.heroku(row["app"], row["name"], line)
        self.sink.heroku(
            row["app"], row["name"], f"Process exited with status {status}" if status is not None else "Process exited"
        )
        if row["container"]:
            self.engine.remove(row["container"])
            self.tracked.followed.discard(row["container"])
        app_row = self.store.app(row["app"])
        if row["one_off"] or app_row is None:
            self.sink.state(row["app"], row["name"], row["state"], "complete")
            self.store.delete_dyno(row["app"], row["name"])
            if app_row and app_row["space"] and row["instance"]:
                self.instances.retire_instance(row["instance"])
            return
        self._crashed(row, app_row, time.time())

    def finish_attached(self, app: str, dyno: str, container: str) -> None:
        """The client of an attached one-off is done with it: its exit is handled now."""
        self.tracked.attached.discard(container)
        row = self.store.dyno(app, dyno)
        if row and row["container"] == container:
            self.on_exit(row)

    def _crashed(self, row: DynoRow, app_row: AppRow, now: float) -> None:
        """Crash policy (heroku-reference §2.4): PS restarts at once; CR cools off after the first restart.

        Lab choice: a dyno that stayed up for at least the boot timeout had "a good start", which
        resets its crash count.
        """
        crashes = row["crashes"]
        if row["up_since"] and now - row["up_since"] >= self.ctx.scale(clock.BOOT_TIMEOUT):
            crashes = 0
        crashes += 1
        delay = self.ctx.scale(clock.crash_delay(crashes, bool(app_row["space"])))
        self.sink.state(row["app"], row["name"], row["state"], "crashed")
        self.store.update_dyno(
            row["app"],
            row["name"],
            state="crashed",
            updated_at=now,
            container=None,
            crashes=crashes,
            next_start=now + delay,
            up_since=None,
            boot_deadline=None,
        )

    # -- plans: restart and stop ----------------------------------------------------------------------
    def apply_plan(self, row: DynoRow, plan: DynoPlan, release: int | None = None, event: str | None = None) -> None:
        """Carry out a restart/stop plan for one dyno (``apply_plans``)."""
        self.apply_plans([(row, plan)], release, event)

    def apply_plans(
        self, items: list[tuple[DynoRow, DynoPlan]], release: int | None = None, event: str | None = None
    ) -> None:
        """Carry out restart/stop plans for dynos that go together (a release, ``ps:restart web``).

        As on Heroku, they go at once: one router reload takes every old address out before any old dyno
        is signalled (lab-spec §5), and a replacement starts as soon as SIGTERM is sent (§2.3) — so without
        preboot a deploy leaves a gap while the new dynos boot (heroku-reference §4.2, §4.3). That reload and the
        new containers' start (~0.25 s each here) do not depend on each other: the starts run beside the
        reload, in a thread this call joins. Nothing else runs meanwhile (the caller holds the runtime's
        lock), and no new dyno is routed before it is ``up``.
        """
        stopping: list[tuple[DynoRow, str | None]] = []
        starts: list[tuple[str, str, Placement]] = []
        for row, plan in items:
            # a Common Runtime restart moves a Performance dyno off its dedicated instance: it goes once left
            leaves = plan.placement is Placement.OTHER and self.instances.is_common_dedicated(row["instance"])
            retire = row["instance"] if plan.retire_instance or leaves else None
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
                    self.tracked.terminating.pop(row["container"] or "", None)
                raise
        for row, retire in stopping:
            if row["container"]:
                self.retire_container(
                    row["container"], row["app"], row["name"], retire_instance=retire, port=row["port"]
                )
            elif retire:
                self.instances.retire_instance(retire)
        starting.result()  # raises what the start raised
        self.ctx.wake()

    def _announce(
        self, row: DynoRow, plan: DynoPlan, release: int | None, event: str | None, retire: str | None
    ) -> None:
        """Log the action, record the dyno's new intent; a running container becomes ``terminating``.

        The one place a plan's placement changes the row: a plan that replaces the dedicated instance
        (``Placement.NEW``) forgets the current one, so the next start, here or after a controller restart,
        provisions a new instance.
        """
        app, dyno = row["app"], row["name"]
        self.sink.heroku(app, dyno, event or plan.event)
        if not plan.start_again:
            self.store.delete_dyno(app, dyno)
        else:
            # next_start = now: should the controller die before the new container exists, the loop starts it.
            instance = None if needs_new_dedicated_instance(plan.placement, row["instance"]) else row["instance"]
            self.store.update_dyno(
                app,
                dyno,
                container=None,
                port=None,
                crashes=0,
                state="starting",
                updated_at=time.time(),
                release=release or row["release"],
                next_start=time.time(),
                instance=instance,
            )
        if row["container"]:
            self.sink.heroku(app, dyno, "Stopping all processes with SIGTERM")
            self.sink.state(app, dyno, row["state"], "starting" if plan.start_again else "down")
            # terminating from now on: its port stays taken for a new container on the same instance
            self.tracked.terminating[row["container"]] = Terminating(app, dyno, row["port"], retire)

    def _start_all(self, starts: list[tuple[str, str, Placement]]) -> None:
        """Start the replacements, several at once (``start_dynos``)."""
        fresh = [(self.store.dyno(app, dyno), placement) for app, dyno, placement in starts]
        self.start_dynos([(row, placement) for row, placement in fresh if row is not None])  # as announced

    def retire_container(
        self,
        cid: str,
        app: str,
        dyno: str,
        retire_instance: str | None = None,
        quiet: bool = False,
        port: int | None = None,
    ) -> None:
        """SIGTERM → grace → SIGKILL (R12) in a thread, then remove; optionally tear the instance down."""
        self.tracked.terminating[cid] = Terminating(app, dyno, port, retire_instance)
        grace = self.ctx.scale(clock.SHUTDOWN_GRACE)

        def run() -> None:
            time.sleep(DRAIN_DELAY)
            status, killed = self.engine.terminate(cid, grace)
            if not quiet:
                self._log_termination(app, dyno, status, killed)
            try:
                self.engine.remove(cid)
            except EngineError:
                log.warning("could not remove %s", cid)
            with self.ctx.lock:
                self.tracked.terminating.pop(cid, None)
                self.tracked.followed.discard(cid)
                if retire_instance:
                    self.instances.retire_instance(retire_instance)
            self.ctx.wake()

        threading.Thread(target=run, daemon=True, name=f"stop-{cid[:12]}").start()

    def _log_termination(self, app: str, dyno: str, status: int | None, killed: bool) -> None:
        if killed:
            self.sink.heroku(
                app,
                dyno,
                "Error R12 (Exit timeout) -> At least one process failed to exit within 30 seconds of SIGTERM",
            )
            self.sink.heroku(app, dyno, "Stopping remaining processes with SIGKILL")
        if status is not None:
            self.sink.heroku(app, dyno, f"Process exited with status {status}")

    # -- relocation ---------------------------------------------------------------------------------
    def fail_instance(self, iid: str) -> list[str]:
        """``host-failure``: the instance dies at once; its dynos are relocated without SIGTERM.

        heroku-reference §1.2 (help.heroku.com KR6BGO6A): "Relocating dyno to a new server"; evacuated
        dynos may not receive SIGTERM. Returns the names of the formation dynos that moved.
        """
        inst = self.store.instance(iid)
        if inst is None:
            raise NotFound(f"No such instance {iid}")
        rows = [r for r in self.store.dynos() if r["instance"] == iid]
        self.instances.fail(inst, rows)
        moved = [r["name"] for r in rows if self._evacuate(r)]
        self.sync_router()
        fresh = [self.store.dyno(r["app"], r["name"]) for r in rows]
        self.start_dynos([(f, Placement.ANY) for f in fresh if f is not None and not f["container"]])
        self.ctx.wake()
        return moved

    def _evacuate(self, r: DynoRow) -> bool:
        """The dyno's container is gone with its instance: a one-off ends, a formation dyno is due elsewhere."""
        if r["container"]:
            self.tracked.followed.discard(r["container"])
        self.sink.heroku(r["app"], r["name"], "Relocating dyno to a new server")
        if r["one_off"]:
            self.sink.state(r["app"], r["name"], r["state"], "down")
            self.store.delete_dyno(r["app"], r["name"])
            return False
        self.sink.state(r["app"], r["name"], r["state"], "starting")
        self.store.update_dyno(
            r["app"],
            r["name"],
            container=None,
            port=None,
            instance=None,
            state="starting",
            updated_at=time.time(),
            next_start=None,
        )
        return True
