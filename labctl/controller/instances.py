"""Runtime instances and their sandboxes: the Common Runtime's pool, Private Space dedicated instances,
where a dyno's next container runs, and an instance failing or being torn down.

An instance owns a *sandbox* container per app it hosts: the network namespace that app's dynos there join.
Which instance a dyno lands on is decided in ``labctl.domain.placement`` (lab-spec §2 Placement).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from labctl import const
from labctl.domain.actions import Placement
from labctl.domain.placement import InstanceLoad, choose_pool_instance, new_instance_id

if TYPE_CHECKING:
    from labctl.controller.runtime import Runtime


class Instances:
    """Creates, chooses and tears down the runtime's instances and sandboxes."""

    def __init__(self, rt: Runtime):
        self.rt = rt

    def ensure_pool(self) -> None:
        """The Common Runtime's shared instances (default 3)."""
        pool = [i for i in self.rt.store.instances() if i["runtime"] == "common"]
        for _ in range(self.rt.pool_size - len(pool)):
            self.rt.store.add_instance(new_instance_id(self.rt.rng), "common")

    # -- placement -------------------------------------------------------------------------------
    def place(self, row: dict[str, Any], placement: Placement) -> str:
        """Choose (and record) the instance the dyno's next container runs on."""
        store, rng = self.rt.store, self.rt.rng
        app = store.app(row["app"])
        assert app is not None
        if app["space"]:
            if row["instance"] and placement is not Placement.NEW and store.instance(row["instance"]):
                return row["instance"]
            iid = new_instance_id(rng)
            store.add_instance(iid, app["space"])
            return iid
        loads = self._pool_loads()
        iid = choose_pool_instance(loads, placement, row["instance"], rng)
        if iid is None:
            self.ensure_pool()
            iid = choose_pool_instance(self._pool_loads(), Placement.ANY, None, rng)
        assert iid is not None
        return iid

    def _pool_loads(self) -> list[InstanceLoad]:
        rows = self.rt.store.dynos()
        return [InstanceLoad(i["id"], sum(1 for r in rows if r["instance"] == i["id"] and r["container"]))
                for i in self.rt.store.instances() if i["runtime"] == "common" and i["state"] == "running"]

    def ensure_sandbox(self, instance: str, app: dict[str, Any]) -> dict[str, Any]:
        store, engine = self.rt.store, self.rt.engine
        sb = store.sandbox(instance, app["name"])
        if sb:
            info = engine.try_info(sb["container"])
            if info is not None and info.status == "running":
                return sb
            engine.remove(sb["container"])  # stopped (e.g. by an engine restart): a dyno cannot join it
            store.delete_sandbox(instance, app["name"])
        network = engine.ensure_network(app["space"])
        cid, ip = engine.create_sandbox(const.STACK_IMAGE, instance, app["name"], network, app["space"])
        store.add_sandbox(instance, app["name"], cid, ip)
        created = store.sandbox(instance, app["name"])
        assert created is not None
        for hook in self.rt.on_sandbox_created:  # e.g. the instance's faults apply to its new namespace
            hook(instance, created)
        return created

    # -- failure and teardown ------------------------------------------------------------------------
    def fail_instance(self, iid: str) -> list[str]:
        """``host-failure``: the instance dies at once; its dynos are relocated without SIGTERM.

        heroku-reference §1.2 (help.heroku.com KR6BGO6A): "Relocating dyno to a new server"; evacuated
        dynos may not receive SIGTERM. A Common Runtime pool instance is replaced by a fresh one.
        """
        rt = self.rt
        inst = rt.store.instance(iid)
        if inst is None:
            from labctl.errors import NotFound

            raise NotFound(f"No such instance {iid}")
        rows = [r for r in rt.store.dynos() if r["instance"] == iid]
        rt.store.update_instance(iid, state="failed")
        rt.engine.remove_many([r["container"] for r in rows if r["container"]]
                              + [sb["container"] for sb in rt.store.sandboxes(iid)])
        rt.store.delete_instance(iid)
        if inst["runtime"] == "common":
            self.ensure_pool()
        moved = []
        for r in rows:
            if r["container"]:
                rt.followed.discard(r["container"])
            rt.sink.heroku(r["app"], r["name"], "Relocating dyno to a new server")
            if r["one_off"]:
                rt.sink.state(r["app"], r["name"], r["state"], "down")
                rt.store.delete_dyno(r["app"], r["name"])
                continue
            rt.sink.state(r["app"], r["name"], r["state"], "starting")
            rt.store.update_dyno(r["app"], r["name"], container=None, port=None, instance=None, state="starting",
                                 updated_at=time.time(), next_start=None)
            moved.append(r["name"])
        rt.sync_router()
        for r in rows:
            fresh = rt.store.dyno(r["app"], r["name"])
            if fresh is not None and not fresh["container"]:
                rt.start_dyno(fresh, Placement.ANY)
        rt.wake()
        return moved

    def retire_instance(self, iid: str) -> None:
        """Tear a dedicated instance down (its sandbox containers go with it)."""
        if any(r["instance"] == iid and r["container"] for r in self.rt.store.dynos()):
            return  # still hosts a dyno (e.g. a restart raced in): keep it
        for sb in self.rt.store.sandboxes(iid):
            self.rt.engine.remove(sb["container"])
        self.rt.store.delete_instance(iid)

    def sweep_dedicated(self) -> None:
        """A Private Space instance no dyno uses any more (e.g. after a crash mid ps:stop) is torn down."""
        store = self.rt.store
        used = {r["instance"] for r in store.dynos()} | {o["instance"] for o in store.old_dynos()}
        busy = {t.get("instance") for t in self.rt.terminating.values()}
        for inst in store.instances():
            if inst["runtime"] != "common" and inst["id"] not in used and inst["id"] not in busy:
                self.retire_instance(inst["id"])
