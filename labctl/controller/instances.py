"""Runtime instances and their sandboxes: the Common Runtime's pool, Private Space dedicated instances,
where a dyno's next container runs, and an instance's teardown (retired, or failed under its dynos).

An instance owns a *sandbox* container per app it hosts: the network namespace that app's dynos there join.
Which instance a dyno lands on is decided in ``labctl.domain.placement`` (lab-spec §2 Placement).

A new instance *provisions* before a dyno can start on it (``ready_at``: the lab's provision time, scaled; a
lab choice, README "Choices where Heroku is silent"): the pool made at ``up`` is ready at once, while a Private
Space's new dedicated instance and a pool instance replacing a failed one provision first. Provisioning is only
a time in the store, so a controller killed meanwhile leaves nothing half-made: the restarted one waits out the
rest of it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from labctl import const
from labctl.controller.context import Context
from labctl.domain.actions import Placement
from labctl.domain.placement import InstanceLoad, choose_pool_instance, is_provisioning, new_instance_id
from labctl.records import AppRow, DynoRow, InstanceRow, SandboxRow

SandboxHook = Callable[[str, SandboxRow], None]  # (instance id, its new sandbox)


class Instances:
    """Creates, chooses and tears down the runtime's instances and sandboxes."""

    def __init__(
        self, ctx: Context, pool_size: int, on_sandbox_created: list[SandboxHook], provision_time: float = 0.0
    ):
        self.ctx = ctx
        self.store = ctx.store
        self.pool_size = pool_size
        self.provision_time = provision_time  # seconds before the time scale
        self.on_sandbox_created = on_sandbox_created  # e.g. the instance's faults apply to its new namespace
        self._sandbox_locks: dict[tuple[str, str], threading.Lock] = {}  # dynos starting at once: one sandbox
        self._locks_guard = threading.Lock()

    def ensure_pool(self, provision: bool = False) -> None:
        """The Common Runtime's shared instances (default 3): ready at ``up``; a replacement provisions first."""
        pool = [i for i in self.store.instances() if i["runtime"] == "common"]
        for _ in range(self.pool_size - len(pool)):
            self.store.add_instance(new_instance_id(self.ctx.rng), "common", self._ready_at() if provision else None)

    def _ready_at(self) -> float | None:
        """When an instance created now can start dynos (None: at once)."""
        wait = self.ctx.scale(self.provision_time)
        return time.time() + wait if wait > 0 else None

    def provisioning_until(self, iid: str) -> float | None:
        """The time the instance is ready, while it is still provisioning (else None)."""
        inst = self.store.instance(iid)
        if inst is None or not is_provisioning(inst["ready_at"], time.time()):
            return None
        return inst["ready_at"]

    def rescale(self, ratio: float, now: float) -> None:
        """The time scale changed: what is left of each provisioning stretches or shrinks with it."""
        for inst in self.store.instances():
            ready_at = inst["ready_at"]
            if ready_at is not None and ready_at > now:
                self.store.update_instance(inst["id"], ready_at=now + (ready_at - now) * ratio)

    # -- placement -------------------------------------------------------------------------------
    def place(self, row: DynoRow, app_row: AppRow, placement: Placement) -> str:
        """Choose (and record) the instance the dyno's next container runs on.

        In a Private Space the dyno keeps its dedicated instance while it has one; a plan that replaces
        the instance (``Placement.NEW``) cleared the row's instance when it was announced (``Dynos``).
        """
        store, rng = self.store, self.ctx.rng
        space = app_row["space"]
        if space:
            if row["instance"] and store.instance(row["instance"]):
                return row["instance"]
            iid = new_instance_id(rng)
            # Lab choice (README): a one-off's instance is ready at once, so `run` attaches at once.
            store.add_instance(iid, space, None if row["one_off"] else self._ready_at())
            return iid
        chosen = choose_pool_instance(self._pool_loads(), placement, row["instance"], rng)
        if chosen is None:
            self.ensure_pool(provision=True)
            # no ready pool instance (e.g. a one-instance pool after a host failure): wait for a provisioning one
            chosen = choose_pool_instance(self._pool_loads(ready=False), Placement.ANY, None, rng)
        assert chosen is not None
        return chosen

    def _pool_loads(self, ready: bool = True) -> list[InstanceLoad]:
        """The pool's instances with how many dynos each runs; ``ready``: only those done provisioning."""
        rows, now = self.store.dynos(), time.time()
        placing = list(self.ctx.tracked.placing.values())
        return [
            InstanceLoad(
                i["id"],
                sum(1 for r in rows if r["instance"] == i["id"] and r["container"])
                + sum(1 for iid, _ in placing if iid == i["id"]),  # starts under way count (Dynos.start_dynos)
            )
            for i in self.store.instances()
            if i["runtime"] == "common" and i["state"] == "running" and is_provisioning(i["ready_at"], now) != ready
        ]

    def ensure_sandbox(self, instance: str, app_row: AppRow) -> SandboxRow:
        """The app's sandbox on the instance, created (or replaced when it stopped) as needed.

        Dynos that start at once (``Dynos.start_dynos``) and share the sandbox wait for one another here.
        """
        with self._locks_guard:
            lock = self._sandbox_locks.setdefault((instance, app_row["name"]), threading.Lock())
        with lock:
            return self._ensure_sandbox(instance, app_row)

    def _ensure_sandbox(self, instance: str, app_row: AppRow) -> SandboxRow:
        store, engine = self.store, self.ctx.engine
        app = app_row["name"]
        sb = store.sandbox(instance, app)
        if sb:
            info = engine.try_info(sb["container"])
            if info is not None and info.status == "running":
                return sb
            engine.remove(sb["container"])  # stopped (e.g. by an engine restart): a dyno cannot join it
            store.delete_sandbox(instance, app)
        network = engine.ensure_network(app_row["space"])
        cid, ip = engine.create_sandbox(const.STACK_IMAGE, instance, app, network, app_row["space"])
        store.add_sandbox(instance, app, cid, ip)
        created = store.sandbox(instance, app)
        assert created is not None
        for hook in self.on_sandbox_created:
            hook(instance, created)
        return created

    # -- failure and teardown ------------------------------------------------------------------------
    def fail(self, inst: InstanceRow, hosted: list[DynoRow]) -> None:
        """``host-failure``: the instance and every container on it go at once (no SIGTERM).

        A Common Runtime pool instance is replaced by a fresh one; moving the dynos is ``Dynos.fail_instance``.
        """
        iid = inst["id"]
        self.store.update_instance(iid, state="failed")
        self.ctx.engine.remove_many(
            [r["container"] for r in hosted if r["container"]] + [sb["container"] for sb in self.store.sandboxes(iid)]
        )
        self.store.delete_instance(iid)
        if inst["runtime"] == "common":
            self.ensure_pool(provision=True)  # a new host replaces the failed one: it provisions first

    def retire_instance(self, iid: str) -> None:
        """Tear a dedicated instance down (its sandbox containers go with it)."""
        if any(r["instance"] == iid and r["container"] for r in self.store.dynos()):
            return  # still hosts a dyno (e.g. a restart raced in): keep it
        for sb in self.store.sandboxes(iid):
            self.ctx.engine.remove(sb["container"])
        self.store.delete_instance(iid)

    def sweep_dedicated(self) -> None:
        """A Private Space instance no dyno uses any more (e.g. after a crash mid ps:stop) is torn down."""
        store = self.store
        used = {r["instance"] for r in store.dynos()} | {o["instance"] for o in store.old_dynos()}
        busy = {t.instance for t in self.ctx.tracked.terminating.values()}
        for inst in store.instances():
            if inst["runtime"] != "common" and inst["id"] not in used and inst["id"] not in busy:
                self.retire_instance(inst["id"])
