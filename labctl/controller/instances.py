"""Runtime instances and their sandboxes: the Common Runtime's pool, Private Space dedicated instances,
where a dyno's next container runs, and an instance's teardown (retired, or failed under its dynos).

An instance owns a *sandbox* container per app it hosts: the network namespace that app's dynos there join.
Which instance a dyno lands on is decided in ``labctl.domain.placement`` (lab-spec §2 Placement).

A new instance *provisions* before a dyno can start on it (``ready_at``: the lab's provision time, scaled; a
lab choice, README "Choices where Heroku is silent"): the pool made at ``up`` is ready at once, while a Private
Space's new dedicated instance and a pool instance replacing a failed one provision first. Provisioning is only
a time in the store, so a controller killed meanwhile leaves nothing half-made: the restarted one waits out the
rest of it.

Each instance has a CPU and memory *budget* its dynos share (issue 16, ``domain/budget.py``): a parent cgroup
``/labctl.<lab>.<instance>`` (``engine/cgroups.py``) every dyno container of the instance starts under. It is made
with the instance, set again at every dyno start (so a lost one comes back) and removed with the instance; a
parent left by a crash is swept with the instances no dyno uses.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from labctl import const
from labctl.controller.context import Context
from labctl.domain import budget as bg
from labctl.domain.actions import Placement
from labctl.domain.placement import SPREAD, InstanceLoad, choose_pool_instance, is_provisioning, new_instance_id
from labctl.engine.cgroups import InstanceCgroups, Usage, cpu_use, parent_name
from labctl.engine.docker import Engine
from labctl.errors import LabError
from labctl.records import AppRow, DynoRow, InstanceRow, SandboxRow

log = logging.getLogger("labctl.instances")
SandboxHook = Callable[[str, SandboxRow], None]  # (instance id, its new sandbox)


class Instances:
    """Creates, chooses and tears down the runtime's instances and sandboxes."""

    def __init__(
        self,
        ctx: Context,
        pool_size: int,
        on_sandbox_created: list[SandboxHook],
        provision_time: float = 0.0,
        policy: str = SPREAD,
    ):
        self.ctx = ctx
        self.store = ctx.store
        self.pool_size = pool_size
        self.provision_time = provision_time  # seconds before the time scale
        self.policy = policy  # the pool's placement: SPREAD or PACKED (domain/placement.py)
        self.on_sandbox_created = on_sandbox_created  # e.g. the instance's faults apply to its new namespace
        self._sandbox_locks: dict[tuple[str, str], threading.Lock] = {}  # dynos starting at once: one sandbox
        self._locks_guard = threading.Lock()
        self.cgroups = _cgroups(ctx)
        self._usage: dict[str, Usage] = {}  # the last reading of each instance's CPU time (``live``)

    def ensure_pool(self, provision: bool = False) -> None:
        """The Common Runtime's shared instances (default 3): ready at ``up``; a replacement provisions first."""
        pool = [i for i in self.store.instances() if is_pool(i)]
        for _ in range(self.pool_size - len(pool)):
            iid = new_instance_id(self.ctx.rng)
            self.store.add_instance(iid, "common", self._ready_at() if provision else None)
            self.apply_budget(iid)

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
        if space or bg.is_dedicated_size(row["size"]):
            # Private Space dynos, and Performance dynos in the Common Runtime, run on an instance of their own
            # (heroku-reference §5, "Dyno Isolation"); a Common Runtime one is ``runtime=common`` with a ``size``.
            current = store.instance(row["instance"]) if row["instance"] else None
            # the dyno keeps its dedicated instance while it is of its size (a space's instance made before
            # instances had sizes counts as its own), except that a Common Runtime restart (``OTHER``) moves it to
            # a new host, as it moves a pool dyno; the one it leaves is swept once its old container is gone
            have = (current["size"] or ("" if space and current["runtime"] == space else "-")) if current else "-"
            moves = not space and placement is Placement.OTHER
            if current is not None and have.lower() in (row["size"].lower(), "") and not moves:
                return current["id"]
            iid = new_instance_id(rng)
            # Lab choice (README): a one-off's instance is ready at once, so `run` attaches at once.
            store.add_instance(iid, space or "common", None if row["one_off"] else self._ready_at(), row["size"])
            self.apply_budget(iid)
            return iid
        chosen = choose_pool_instance(self._pool_loads(), placement, row["instance"], rng, self.policy)
        if chosen is None:
            self.ensure_pool(provision=True)
            # no ready pool instance (e.g. a one-instance pool after a host failure): wait for a provisioning one
            chosen = choose_pool_instance(self._pool_loads(ready=False), Placement.ANY, None, rng, self.policy)
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
            if is_pool(i) and i["state"] == "running" and is_provisioning(i["ready_at"], now) != ready
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
        if not app_row["space"]:
            try:
                self.isolate(cid)
            except LabError as err:  # the router not there yet: ``isolate_all`` after it comes back
                log.warning("could not isolate sandbox %s: %s", cid[:12], err)
        for hook in self.on_sandbox_created:
            hook(instance, created)
        return created

    def isolate(self, sandbox: str) -> None:
        """Another app's dyno cannot open a connection to this Common Runtime sandbox (``FaultEngine``)."""
        from labctl.engine.faults import FaultEngine

        if isinstance(self.ctx.engine, Engine):
            FaultEngine(self.ctx.engine).isolate_sandbox(sandbox)

    def isolate_all(self) -> None:
        """Again in every Common Runtime sandbox: after the router came back (perhaps at a new address)."""
        for sb in self.store.sandboxes():
            inst = self.store.instance(sb["instance"])
            app = self.store.app(sb["app"])
            if inst is not None and inst["runtime"] == "common" and app is not None and not app["space"]:
                try:
                    self.isolate(sb["container"])
                except LabError as err:
                    log.warning("could not isolate sandbox %s: %s", sb["container"][:12], err)

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
        self.drop_budget(iid)
        if is_pool(inst):
            self.ensure_pool(provision=True)  # a new host replaces the failed one: it provisions first

    def retire_instance(self, iid: str) -> None:
        """Tear a dedicated instance down (its sandbox containers go with it)."""
        if any(r["instance"] == iid and r["container"] for r in self.store.dynos()):
            return  # still hosts a dyno (e.g. a restart raced in): keep it
        for sb in self.store.sandboxes(iid):
            self.ctx.engine.remove(sb["container"])
        self.store.delete_instance(iid)
        self.drop_budget(iid)

    def sweep_dedicated(self) -> None:
        """A Private Space instance no dyno uses any more (e.g. after a crash mid ps:stop) is torn down."""
        store = self.store
        used = {r["instance"] for r in store.dynos()} | {o["instance"] for o in store.old_dynos()}
        busy = {t.instance for t in self.ctx.tracked.terminating.values()}
        for inst in store.instances():
            if not is_pool(inst) and inst["id"] not in used and inst["id"] not in busy:
                self.retire_instance(inst["id"])
        self.cgroups.sweep({i["id"] for i in store.instances()})  # parents a crash left behind

    def is_common_dedicated(self, iid: str | None) -> bool:
        """A Common Runtime instance of one Performance dyno (torn down when its dyno leaves it)."""
        inst = self.store.instance(iid) if iid else None
        return inst is not None and inst["runtime"] == "common" and bool(inst["size"])

    # -- budgets -----------------------------------------------------------------------------------------
    def budget(self, inst: InstanceRow) -> bg.Budget:
        """What the instance is sized for (``domain/budget.py``), before its faults."""
        return bg.budget_for(inst.get("size"))

    def effective_budget(self, inst: InstanceRow, faults: list[dict[str, Any]] | None = None) -> bg.Budget:
        """The budget its dynos share under ``faults`` (default: its stored ones): a ``cpu`` fault caps it, a
        ``memory`` fault takes some away."""
        faults = inst["faults"] if faults is None else faults
        return bg.effective(self.budget(inst), bg.cpu_fault(faults), bg.memory_fault(faults))

    def apply_budget(self, iid: str, faults: list[dict[str, Any]] | None = None) -> bool:
        """Make the instance's parent cgroup carry its budget under ``faults`` (default: its stored faults).
        False when budgets are not enforced here (no writable cgroup v1 hierarchy: the dynos' own limits only).
        A limit the kernel refuses (memory below what the dynos use) raises LabError."""
        inst = self.store.instance(iid)
        if inst is None or not self.cgroups.enabled:
            return False
        eff = self.effective_budget(inst, faults)
        try:
            self.cgroups.ensure(iid, eff.cpus, eff.memory_mb, bg.PARENT_SHARES)
        except OSError as err:
            raise LabError(
                f"the kernel refused the budget of {iid} ({eff.cpus:g} CPU, {eff.memory_mb} MB): {err.strerror or err}"
            ) from None
        return True

    def cgroup_parent(self, iid: str) -> str | None:
        """The parent cgroup a dyno of the instance starts under (None: budgets are not enforced here)."""
        if not self.cgroups.enabled:
            return None
        try:
            self.apply_budget(iid)  # made again if it went (cheap: a few small writes)
        except LabError as err:  # e.g. a memory fault below what the dynos use now: the parent keeps its limits
            log.warning("%s", err)
        return parent_name(self.cgroups.lab, iid)

    def drop_budget(self, iid: str) -> None:
        self._usage.pop(iid, None)
        if self.cgroups.enabled:
            self.cgroups.remove(iid)  # what stays (a container not quite gone) goes with the next sweep

    def memory_quota_mb(self, row: DynoRow) -> int | None:
        """What is left of the dyno's instance memory once a ``memory`` fault took some (None: no such fault):
        the dyno's R14 quota and R15 limit cannot be above it."""
        inst = self.store.instance(row["instance"]) if row["instance"] else None
        if inst is None or bg.memory_fault(inst["faults"]) is None:
            return None
        return self.effective_budget(inst).memory_mb

    def live(self, iids: list[str]) -> dict[str, dict[str, Any]]:
        """Each instance's budget use read now: CPUs used since the last reading (a first reading waits 0.25 s
        for a second one) and memory in use, from its parent cgroup. Empty for an instance without one."""
        first = {iid: self.cgroups.usage(iid) for iid in iids} if self.cgroups.enabled else {}
        if any(
            u is not None and (iid not in self._usage or u.at - self._usage[iid].at > 30) for iid, u in first.items()
        ):
            for iid, u in first.items():
                if u is not None:
                    self._usage[iid] = u
            time.sleep(0.25)
            first = {iid: self.cgroups.usage(iid) for iid in iids}
        out: dict[str, dict[str, Any]] = {}
        for iid, now in first.items():
            before = self._usage.get(iid)
            if now is None:
                continue
            cpu = cpu_use(before, now) if before is not None and now.at - before.at >= 0.05 else None
            if before is None or now.at - before.at >= 0.05:
                self._usage[iid] = now
            out[iid] = {
                "cpus": round(cpu, 3) if cpu is not None else None,
                "memory_mb": round(now.memory_bytes / 2**20, 1),
            }
        return out


def is_pool(inst: InstanceRow) -> bool:
    """A Common Runtime pool instance (shared by any app's Standard, Basic and Eco dynos)."""
    return inst["runtime"] == "common" and not inst.get("size")


def _cgroups(ctx: Context) -> InstanceCgroups:
    """The instances' parent cgroups on this host, when the engine is this host's (a local socket)."""
    import os

    lab = getattr(ctx.engine, "lab", "none")
    cg = InstanceCgroups(lab)
    host = os.environ.get("DOCKER_HOST", "")
    if not isinstance(ctx.engine, Engine) or (host and not host.startswith("unix://")):
        cg.enabled = False  # a fake engine in tests, or a remote engine: not this host's cgroups
    return cg
