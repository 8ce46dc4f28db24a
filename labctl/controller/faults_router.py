"""Faults at the router end (issue 17): on the router container that serves a runtime, on its path to every
instance of that runtime (the runtime network's subnet) or to one instance (``--to-instance``: its sandboxes).

The faults are stored in the lab's ``meta`` table (``router_faults``, a JSON list) as
``{"id", "kind", <params>, "direction", "router", "to_instance", "created_at", "expires_at"}``: they belong
to the router, not to an instance, so ``ps:stop`` (a new instance, behind the same router) does not cure a
router-wide one. Lab choices where Heroku is silent (it has no fault injection):

* one fault per kind per (router, target); ``loss`` and ``blackhole`` may coexist;
* a ``--to-instance`` fault goes with its instance (the addresses it matched may be reused by another);
* ``cpu`` and ``host-failure`` act on instances only.

Which container serves a runtime is asked of the engine (``FaultEngine.router_for``): one router today,
one per Private Space later; the rules select the runtime's addresses, so they are right in both cases.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from labctl.controller.faults import FaultManager, build_fault, check_kind, describe, expired
from labctl.domain.faults import FAULT_KINDS
from labctl.errors import InvalidInput, LabError, NotFound
from labctl.records import Fault, FaultView

log = logging.getLogger("labctl.faults")
META_KEY = "router_faults"


class RouterFaults:
    """Owns the router-end faults and keeps the router containers equal to them. Attached to the
    ``FaultManager``, which lists, clears and expires them with the instance faults."""

    def __init__(self, faults: FaultManager):
        self.fm = faults
        self.store = faults.store
        self.rt = faults.rt
        self.fe = faults.fe
        self.applied: dict[str, tuple[str, int]] = {}  # router container -> (id, pid) its faults were applied to

    def attach(self, api: Any) -> None:
        self.fm.router_end = self
        self.rt.on_sandbox_created.append(lambda iid, sandbox: self._on_sandbox_created(iid))
        r = api.add_route
        path, f = "/routers/(?P<router>[^/]+)/faults", {"resource": "fault"}
        r("POST", path, lambda q, b, router: self.add(router, b), title="Create at a router", **f)
        r("GET", path, lambda q, b, router: self.list_faults(router=router), title="List by router", **f)
        r("DELETE", path, lambda q, b, router: self.clear(router, q.get("kind") or None), title="Clear", **f)

    # -- store ---------------------------------------------------------------------------------------------
    def faults(self) -> list[Fault]:
        raw = self.store.get_meta(META_KEY)
        return list(json.loads(raw)) if raw else []

    def _save(self, faults: list[Fault]) -> None:
        self.store.set_meta(META_KEY, json.dumps(faults, sort_keys=True))

    # -- lookups -----------------------------------------------------------------------------------------
    def check_router(self, router: str) -> str | None:
        """``common`` → None, a space's name → the name; anything else is refused."""
        if router == "common":
            return None
        if self.store.space(router) is None:
            raise NotFound(f"No such router {router!r}: use common or a space's name (see `labctl spaces`)")
        return router

    def _container(self, router: str) -> str:
        return self.fe.router_for(None if router == "common" else router)

    def _nets(self, fault: Fault) -> list[str]:
        iid = fault.get("to_instance")
        if iid:
            return [f"{sb['ip']}/32" for sb in self.store.sandboxes(iid) if sb.get("ip")]
        subnet = self.fe.runtime_subnet(None if fault["router"] == "common" else fault["router"])
        return [subnet] if subnet else []

    def _behind(self, fault: Fault) -> list[str]:
        """The dynos (``app/web.1``) whose path the fault sits on."""
        iid, router = fault.get("to_instance"), fault["router"]
        insts = {i["id"] for i in self.store.instances() if (i["id"] == iid if iid else i["runtime"] == router)}
        return [f"{r['app']}/{r['name']}" for r in self.store.dynos() if r["instance"] in insts and r["container"]]

    # -- operations ------------------------------------------------------------------------------------
    def add(self, router: str, body: dict[str, Any]) -> FaultView:
        kind = check_kind(body.get("kind"))
        if not FAULT_KINDS[kind].network:
            raise InvalidInput(f"{kind} faults act on an instance's dynos: give --instance ID or --dyno DYNO -a APP")
        self.check_router(router)
        iid = body.get("to_instance") or None
        if iid is not None:
            inst = self.store.instance(str(iid))
            if inst is None:
                raise NotFound(f"No such instance {iid}. See `labctl instances`.")
            if inst["runtime"] != router:
                where = "the Common Runtime" if inst["runtime"] == "common" else f"space {inst['runtime']}"
                raise InvalidInput(f"Instance {iid} is in {where}: the {router} router does not serve it")
        self.fm.require_support(kind)
        fault = build_fault({k: v for k, v in body.items() if k != "to_instance"}, max_delay_ms=self.fm.max_delay_ms())
        fault["router"], fault["to_instance"] = router, iid
        with self.rt.lock:
            old = self.faults()
            new = [f for f in old if (f["router"], f.get("to_instance"), f["kind"]) != (router, iid, kind)] + [fault]
            container = self._container(router)
            try:
                self._sync(container, new)
            except LabError as err:
                self._try_sync(container, old)
                raise LabError(
                    f"Could not add the {kind} fault on the {router} router: {str(err).splitlines()[0][:300]}"
                ) from None
            self._save(new)
            until = f" for {fault['expires_at'] - fault['created_at']:g}s" if fault["expires_at"] else ""
            self._log(fault, f"Fault on the {router} router{_toward(fault)}: {describe(fault)}{until} (labctl)")
        self.fm.wakeup.set()
        return self._view(fault)

    def clear(self, router: str | None, kind: str | None = None) -> list[FaultView]:
        if kind is not None:
            check_kind(kind)
        if router is not None:
            self.check_router(router)
        with self.rt.lock:
            return self._drop(
                lambda f: (router is None or f["router"] == router) and (kind is None or f["kind"] == kind),
                "cleared",
            )

    def expire(self, now: float | None = None) -> list[FaultView]:
        """Revert what ran out (``--for``) and what went with its instance (``--to-instance``); re-apply the
        faults of a router container that was restarted or recreated meanwhile (a new network namespace)."""
        now = time.time() if now is None else now
        live = {i["id"] for i in self.store.instances()}
        with self.rt.lock:
            faults = self.faults()
            for container in {self._container(f["router"]) for f in faults}:
                if self._identity(container) not in (None, self.applied.get(container)):
                    log.info("router %s has a new namespace: re-applying its faults", container)
                    self._try_sync(container, faults)
            gone = self._drop(lambda f: bool(f.get("to_instance")) and f["to_instance"] not in live, "gone")
            return gone + self._drop(lambda f: expired(f, now), "expired")

    def pending(self) -> list[float]:
        return [f["expires_at"] for f in self.faults() if f.get("expires_at")]

    def _drop(self, match: Any, verb: str) -> list[FaultView]:
        faults = self.faults()
        gone = [f for f in faults if match(f)]
        if not gone:
            return []
        keep = [f for f in faults if not match(f)]
        for container in {self._container(f["router"]) for f in gone}:
            self._sync(container, keep)
        self._save(keep)
        for f in gone:
            self._log(f, f"Fault on the {f['router']} router{_toward(f)} {verb}: {describe(f)} (labctl)")
        return [self._view(f) for f in gone]

    def list_faults(self, app: str | None = None, router: str | None = None) -> list[FaultView]:
        if router is not None:
            self.check_router(router)
        runtime = None
        if app is not None:
            row = self.store.app(app)
            runtime = (row["space"] or "common") if row else None
        return [
            self._view(f)
            for f in self.faults()
            if (router is None or f["router"] == router) and (app is None or f["router"] == runtime)
        ]

    def _view(self, fault: Fault) -> FaultView:
        return {
            **fault,
            "end": "router",
            "instance": fault.get("to_instance"),
            "runtime": fault["router"],
            "description": describe(fault),
            "dynos": self._behind(fault),
        }

    # -- engine ------------------------------------------------------------------------------------------
    def _sync(self, container: str, faults: list[Fault]) -> None:
        mine = [{**f, "nets": self._nets(f)} for f in faults if self._container(f["router"]) == container]
        self.fe.sync_router(container, mine)
        identity = self._identity(container)
        if identity is not None:
            self.applied[container] = identity

    def _identity(self, container: str) -> tuple[str, int] | None:
        """The container's id and main pid: a restart (same id, new pid) brings a new network namespace."""
        info = self.rt.engine.try_info(container)
        return (info.id, info.pid) if info is not None and info.pid else None

    def _try_sync(self, container: str, faults: list[Fault]) -> None:
        try:
            self._sync(container, faults)
        except LabError as err:
            log.warning("could not restore the router's faults: %s", err)

    def start(self) -> None:
        """Re-apply the stored faults (a controller restart, or a router recreated meanwhile)."""
        faults = self.faults()
        for container in {self._container(f["router"]) for f in faults}:
            self._try_sync(container, faults)

    def _on_sandbox_created(self, iid: str) -> None:
        faults = self.faults()
        for container in {self._container(f["router"]) for f in faults if f.get("to_instance") == iid}:
            self._try_sync(container, faults)

    def _log(self, fault: Fault, msg: str) -> None:
        for dyno in self._behind(fault):
            app, name = dyno.split("/", 1)
            self.fm.sink.heroku(app, name, msg)


def _toward(fault: Fault) -> str:
    return f" (toward {fault['to_instance']})" if fault.get("to_instance") else ""
