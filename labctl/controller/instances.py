"""Runtime instances and their sandboxes: the Common Runtime's pool, Private Space dedicated instances,
where a dyno's next container runs, and an instance's teardown (retired, or failed under its dynos).

An instance owns a *sandbox* container per app it hosts: the network namespace that app's dynos there join.
Which instance a dyno lands on is decided in ``labctl.domain.placement`` (lab-spec §2 Placement).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from labctl import const
from labctl.controller.context import Context
from labctl.domain.actions import Placement
from labctl.domain.placement import InstanceLoad, choose_pool_instance, new_instance_id
from labctl.records import AppRow, DynoRow, InstanceRow, SandboxRow

SandboxHook = Callable[[str, SandboxRow], None]  # (instance id, its new sandbox)


class Instances:
    """Creates, chooses and tears down the runtime's instances and sandboxes."""

    def __init__(self, ctx: Context, pool_size: int, on_sandbox_created: list[SandboxHook]):
        self.ctx = ctx
        self.store = ctx.store
        self.pool_size = pool_size
        self.on_sandbox_created = on_sandbox_created  # e.g. the instance's faults apply to its new namespace
        self._sandbox_locks: dict[tuple[str, str], threading.Lock] = {}  # dynos starting at once: one sandbox
        self._locks_guard = threading.Lock()

    def ensure_pool(self) -> None:
        """The Common Runtime's shared instances (default 3)."""
        pool = [i for i in self.store.instances() if i["runtime"] == "common"]
        for _ in range(self.pool_size - len(pool)):
            self.store.add_instance(new_instance_id(self.ctx.rng), "common")

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
            store.add_instance(iid, space)
            return iid
        chosen = choose_pool_instance(self._pool_loads(), placement, row["instance"], rng)
        if chosen is None:
            self.ensure_pool()
            chosen = choose_pool_instance(self._pool_loads(), Placement.ANY, None, rng)
        assert chosen is not None
        return chosen

    def _pool_loads(self) -> list[InstanceLoad]:
        rows = self.store.dynos()
        placing = list(self.ctx.tracked.placing.values())
        return [
            InstanceLoad(
                i["id"],
                sum(1 for r in rows if r["instance"] == i["id"] and r["container"])
                + sum(1 for iid, _ in placing if iid == i["id"]),  # starts under way count (Dynos.start_dynos)
            )
            for i in self.store.instances()
            if i["runtime"] == "common" and i["state"] == "running"
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
            self.ensure_pool()

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
