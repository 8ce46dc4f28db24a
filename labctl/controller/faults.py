"""Instance faults (lab-spec §8): add, list, clear, expire, and keep them applied as dynos come and go.

A fault belongs to a runtime instance and is stored in ``instances.faults`` as
``{"id", "kind", <params>, "created_at", "expires_at"}``. So it survives a dyno restart on the instance
(Private Space ``ps:restart``), applies to sandboxes and dynos placed there later (the runtime's hooks), and
disappears with the instance (``ps:stop`` in a space, ``host-failure``, scale to 0). ``--for`` is an
``expires_at`` in the store, so the revert resumes after a controller restart.

Lab choices where Heroku is silent (it has no fault injection):
* one fault per kind per instance: adding a kind the instance already has replaces it (new parameters,
  new expiry); ``loss`` and ``blackhole`` may coexist;
* ``host-failure`` is an event, not a state: it happens at once, is never listed, cannot take ``--for``;
* ``cpu`` and ``memory`` act on the instance's budget (its parent cgroup, docs/instances.md): every dyno on it
  shares the ``--cpus``, and ``--mb`` is taken from the memory they share. Where budgets are not enforced (no
  writable cgroup v1 hierarchy), ``cpu`` falls back to a quota on each dyno and ``memory`` is refused.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from typing import Any, Protocol

from labctl.controller.logsink import LogSink
from labctl.controller.runtime import Runtime
from labctl.domain import clock, names
from labctl.domain.budget import memory_fault
from labctl.domain.faults import DIRECTIONAL_KINDS, DIRECTIONS, FAULT_KINDS, KINDS, NET_KINDS, PARAM_HELP
from labctl.engine.faults import (
    MAX_CPUS,
    MAX_RATE_BPS,
    MIN_CPUS,
    MIN_RATE_BPS,
    FaultEngine,
    Support,
    format_rate,
    parse_duration,
    parse_rate,
)
from labctl.errors import Conflict, EngineError, InvalidInput, LabError, NotFound
from labctl.records import DynoRow, Fault, FaultView, InstanceRow, SandboxRow
from labctl.store import Store

log = logging.getLogger("labctl.faults")
MAX_DELAY_MS = 600_000.0  # ten minutes: beyond any router window
INSTANCE_FAULTS = "/instances/(?P<iid>[^/]+)/faults"
DYNO_FAULTS = "/apps/(?P<app>[^/]+)/dynos/(?P<dyno>[^/]+)/faults"


# -- pure: validation and description ----------------------------------------------------------------------
def _number(value: Any, flag: str) -> float:
    if isinstance(value, bool):
        raise InvalidInput(f"{flag} must be a number")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"{flag} must be a number, not {value!r}") from None


def check_kind(kind: Any) -> str:
    if kind not in KINDS:
        raise InvalidInput(f"Unknown fault kind {kind!r}. Kinds: {', '.join(KINDS)}")
    return kind


def _direction(kind: str, body: dict[str, Any]) -> str | None:
    given = body.get("direction")
    if given is None:
        return FAULT_KINDS[kind].direction or None
    if not FAULT_KINDS[kind].directional:
        raise InvalidInput(f"--direction does not apply to {kind} faults (only to {', '.join(DIRECTIONAL_KINDS)})")
    if given not in DIRECTIONS:
        raise InvalidInput(f"Unknown direction {given!r}: use in, out or both")
    return str(given)


def build_fault(body: dict[str, Any], now: float | None = None, max_delay_ms: float | None = None) -> Fault:
    """Validate a request body into a fault record; raises InvalidInput with one clear line.

    ``max_delay_ms``: the router's first-byte timeout at the lab's time scale; a latency above it would turn
    every request into an H12 (``timeout`` is the fault for that)."""
    now = time.time() if now is None else now
    kind = check_kind(body.get("kind"))
    spec = FAULT_KINDS[kind]
    for key in PARAM_HELP:
        if body.get(key) is not None and key not in spec.params + spec.optional:
            raise InvalidInput(f"--{key} does not apply to {kind} faults")
    for key in spec.params:
        if body.get(key) is None:
            raise InvalidInput(f"{kind} faults need {PARAM_HELP[key]}")
    fault: Fault = {"id": "f-" + secrets.token_hex(4), "kind": kind}
    if kind == "cpu":
        cpus = _number(body["cpus"], "--cpus")
        if not 0 < cpus <= MAX_CPUS:
            raise InvalidInput(f"--cpus must be more than 0 and at most {MAX_CPUS:g}, not {cpus:g}")
        if cpus < MIN_CPUS:
            raise InvalidInput(f"--cpus must be at least {MIN_CPUS:g} (Docker's smallest CPU quota), not {cpus:g}")
        fault["cpus"] = cpus
    elif kind == "memory":
        mb = _number(body["mb"], "--mb")
        if mb != int(mb) or mb <= 0:
            raise InvalidInput(f"--mb must be a whole number of megabytes, more than 0, not {mb:g}")
        fault["mb"] = int(mb)
    elif kind == "loss":
        pct = _number(body["percent"], "--percent")
        if not 0 < pct <= 100:
            raise InvalidInput(f"--percent must be more than 0 and at most 100, not {pct:g}")
        fault["percent"] = pct
    elif kind == "bandwidth":
        if (body.get("kbit") is None) == (body.get("rate") is None):
            raise InvalidInput(f"bandwidth faults need {PARAM_HELP['kbit']} or {PARAM_HELP['rate']}")
        if body.get("kbit") is not None:
            kbit = _number(body["kbit"], "--kbit")
            bps = int(kbit * 1000)
            if not MIN_RATE_BPS <= bps <= MAX_RATE_BPS:
                raise InvalidInput(f"--kbit must be between 8 and 10000000, not {kbit:g}")
        else:
            bps = parse_rate(str(body["rate"]))
        fault["rate"], fault["rate_bps"] = format_rate(bps), bps
    elif kind == "latency":
        ms = _number(body["ms"], "--ms")
        jitter = _number(body.get("jitter") or 0, "--jitter")
        if not 0 < ms <= MAX_DELAY_MS or not 0 <= jitter <= ms:
            raise InvalidInput(
                f"--ms must be more than 0 and at most {MAX_DELAY_MS:g}, and --jitter at most --ms, "
                f"not {ms:g} ± {jitter:g}"
            )
        if max_delay_ms is not None and ms + jitter >= max_delay_ms:
            raise InvalidInput(
                f"--ms {ms:g} (+ --jitter {jitter:g}) is not below the router's first-byte timeout here "
                f"({max_delay_ms:g} ms at this lab's time scale): every request would end in H12; "
                "use the timeout fault for that"
            )
        fault["ms"], fault["jitter"] = ms, jitter
    elif kind == "slow-close":
        ms = _number(body["ms"], "--ms")
        if not 0 < ms <= MAX_DELAY_MS:
            raise InvalidInput(f"--ms must be more than 0 and at most {MAX_DELAY_MS:g}, not {ms:g}")
        fault["ms"] = ms
    elif kind == "limit-data":
        n = _number(body["bytes"], "--bytes")
        if n != int(n) or not 0 <= n <= 2**31:
            raise InvalidInput(f"--bytes must be a whole number of bytes, 0 or more, not {n:g}")
        fault["bytes"] = int(n)
    direction = _direction(kind, body)
    if direction is not None:
        fault["direction"] = direction
    duration = body.get("for")
    if duration is not None and kind == "host-failure":
        raise InvalidInput("host-failure happens at once: --for does not apply")
    seconds = parse_duration(duration) if duration is not None else None
    fault["created_at"] = now
    fault["expires_at"] = now + seconds if seconds is not None else None
    return fault


def describe(fault: Fault) -> str:
    """``cpu 0.05 CPU``, ``loss 30%``, ``blackhole``, ``bandwidth 1mbit``, ``latency 200ms ±100ms``; a
    direction other than the kind's default is added (``loss 30% out``)."""
    kind = fault.get("kind", "?")
    text = str(kind)
    if kind == "cpu":
        text = f"cpu {fault['cpus']:g} CPU"
    elif kind == "memory":
        text = f"memory -{fault['mb']} MB"
    elif kind == "loss":
        text = f"loss {fault['percent']:g}%"
    elif kind == "bandwidth":
        text = f"bandwidth {fault['rate']}"
    elif kind == "latency":
        jitter = f" ±{fault['jitter']:g}ms" if fault.get("jitter") else ""
        text = f"latency {fault.get('ms', 0):g}ms{jitter}"
    elif kind == "slow-close":
        text = f"slow-close {fault.get('ms', 0):g}ms"
    elif kind == "limit-data":
        text = f"limit-data {fault.get('bytes', 0)} bytes"
    spec = FAULT_KINDS.get(kind)
    if spec and spec.directional and fault.get("direction") not in (None, spec.direction):
        text += f" {fault['direction']}"
    return text


def expired(fault: Fault, now: float) -> bool:
    return bool(fault.get("expires_at")) and fault["expires_at"] <= now


class RouterEnd(Protocol):
    """The router-end faults (``faults_router.RouterFaults``), listed, cleared and expired with these."""

    def start(self) -> None: ...
    def list_faults(self, app: str | None = None, router: str | None = None) -> list[FaultView]: ...
    def clear(self, router: str | None, kind: str | None = None) -> list[FaultView]: ...
    def expire(self, now: float | None = None) -> list[FaultView]: ...
    def pending(self) -> list[float]: ...


# -- the manager ---------------------------------------------------------------------------------------------
class FaultManager:
    """Owns ``instances.faults`` and keeps the engine's state equal to it."""

    def __init__(self, store: Store, runtime: Runtime, sink: LogSink, engine: FaultEngine | None = None):
        self.store = store
        self.rt = runtime
        self.sink = sink
        self.fe = engine or FaultEngine(runtime.engine)
        self.wakeup = threading.Event()
        self.stopping = False
        self.router_end: RouterEnd | None = None  # the router-end faults (faults_router.py), when attached
        runtime.on_sandbox_created.append(self._on_sandbox_created)
        runtime.on_dyno_started.append(self._on_dyno_started)

    # -- boot --------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Re-apply every stored fault (idempotent; covers a crash between store and engine), then run the timer."""
        with self.rt.lock:
            for inst in self.store.instances():
                if inst["faults"]:
                    try:
                        self._apply(inst["id"], inst["faults"], force=True)
                    except LabError as err:
                        log.warning("could not re-apply faults of %s: %s", inst["id"], err)
            if self.router_end is not None:
                self.router_end.start()
        threading.Thread(target=self._timer, daemon=True, name="fault-expiry").start()

    def register(self, api: Any) -> None:
        r = api.add_route
        f = {"resource": "fault"}  # in GET /schema with the API's own resources
        r("GET", "/faults", lambda q, b: self.list_faults(q.get("app") or None), title="List", **f)
        r("DELETE", "/faults", lambda q, b: self.clear(None, q.get("kind") or None), title="Clear", **f)
        r(
            "GET",
            "/faults/support",
            lambda q, b: {k: s.as_dict() for k, s in self.fe.probe().items()},
            resource="fault-support",
            title="Info",
        )
        r("GET", INSTANCE_FAULTS, lambda q, b, iid: self.list_faults(instance=iid), title="List by instance", **f)
        r("POST", INSTANCE_FAULTS, lambda q, b, iid: self.add(iid, b), title="Create", **f)
        r("DELETE", INSTANCE_FAULTS, lambda q, b, iid: self.clear(iid, q.get("kind") or None), title="Clear", **f)
        r(
            "GET",
            DYNO_FAULTS,
            lambda q, b, app, dyno: self.list_faults(instance=self.dyno_instance(app, dyno)),
            title="List by dyno",
            **f,
        )
        r("POST", DYNO_FAULTS, lambda q, b, app, dyno: self.add(self.dyno_instance(app, dyno), b), title="Create", **f)
        r(
            "DELETE",
            DYNO_FAULTS,
            lambda q, b, app, dyno: self.clear(self.dyno_instance(app, dyno), q.get("kind") or None),
            title="Clear",
            **f,
        )

    # -- lookups ---------------------------------------------------------------------------------------
    def _instance(self, iid: str) -> InstanceRow:
        inst = self.store.instance(iid)
        if inst is None:
            raise NotFound(f"No such instance {iid}. See `labctl instances`.")
        return inst

    def dyno_instance(self, app: str, dyno: str) -> str:
        """``--dyno web.1 -a APP``: the instance the dyno runs on now."""
        if self.store.app(app) is None:
            raise NotFound(f"Couldn't find that app: {app}")
        try:
            names.split_dyno_name(dyno)
        except LabError:
            raise InvalidInput(f"Invalid dyno name {dyno!r}: use a dyno such as web.1") from None
        row = self.store.dyno(app, dyno)
        if row is None:
            raise NotFound(f"No such dyno {dyno} on ⬢ {app}")
        iid = row["instance"]
        if not iid or not row["container"] or self.store.instance(iid) is None:
            raise Conflict(
                f"{dyno} on ⬢ {app} is not placed on an instance right now (state: {row['state']}); "
                "try again once it is up"
            )
        return iid

    def _hosted(self, iid: str) -> list[DynoRow]:
        """The dynos with a container on the instance."""
        return [r for r in self.store.dynos() if r["instance"] == iid and r["container"]]

    # -- operations ------------------------------------------------------------------------------------
    def add(self, iid: str, body: dict[str, Any]) -> FaultView:
        kind = check_kind(body.get("kind"))
        self._instance(iid)
        if kind != "host-failure":
            self.require_support(kind)
        fault = build_fault(body, max_delay_ms=self.max_delay_ms())  # bad input changes nothing
        with self.rt.lock:
            inst = self._instance(iid)
            if kind == "memory":
                self._check_memory(inst, int(fault["mb"]))
            if kind == "host-failure":
                hosted = self._hosted(iid)
                moved = self.rt.fail_instance(iid)
                log.info("host-failure on %s; relocated %s", iid, moved)
                return {
                    "instance": iid,
                    "kind": kind,
                    "relocated": moved,
                    "dynos": [f"{r['app']}/{r['name']}" for r in hosted],
                }
            old = inst["faults"]
            new = [f for f in old if f.get("kind") != kind] + [fault]
            try:
                self._apply(iid, new, old=old)
            except LabError as err:
                self._restore(iid, old)
                raise LabError(f"Could not add the {kind} fault on {iid}: {str(err).splitlines()[0][:300]}") from None
            self.store.update_instance(iid, faults=new)
            until = f" for {fault['expires_at'] - fault['created_at']:g}s" if fault["expires_at"] else ""
            self._log(iid, f"Fault on instance {iid}: {describe(fault)}{until} (labctl)")
        self.wakeup.set()
        return self._view(self._instance(iid), fault)

    def _check_memory(self, inst: InstanceRow, mb: int) -> None:
        """A memory fault needs the instance budgets, and must leave the instance some memory."""
        if not getattr(self.rt, "budgets_enforced", False):
            raise InvalidInput(
                "memory faults need the instances' budgets, which are not enforced here "
                "(no writable cgroup v1 hierarchy on this host). See docs/instances.md."
            )
        total = int(self.rt.instance_budget(inst).memory_mb)
        if mb >= total:
            raise InvalidInput(f"--mb {mb} is not below the memory of instance {inst['id']} ({total} MB)")

    def clear(self, iid: str | None, kind: str | None = None) -> list[FaultView]:
        """Remove faults (of one kind, or all) from one instance, or from every instance when ``iid`` is None."""
        if kind is not None:
            check_kind(kind)
            if kind == "host-failure":
                raise InvalidInput("host-failure cannot be cleared: the instance is already gone")
        if iid is not None:
            self._instance(iid)
        removed: list[FaultView] = []
        with self.rt.lock:
            targets = [self._instance(iid)] if iid is not None else self.store.instances()
            for inst in targets:
                gone = [f for f in inst["faults"] if kind is None or f.get("kind") == kind]
                if gone:
                    removed += self._drop(inst, gone, "cleared")
        if iid is None and self.router_end is not None:
            removed += self.router_end.clear(None, kind)
        self.wakeup.set()
        return removed

    def expire(self, now: float | None = None) -> list[FaultView]:
        """Revert every fault whose ``--for`` has run out. Returns what was reverted."""
        now = time.time() if now is None else now
        removed: list[FaultView] = []
        with self.rt.lock:
            for inst in self.store.instances():
                gone = [f for f in inst["faults"] if expired(f, now)]
                if gone:
                    try:
                        removed += self._drop(inst, gone, "expired")
                    except LabError as err:
                        log.warning("could not revert expired faults of %s: %s", inst["id"], err)
        return removed

    def _drop(self, inst: InstanceRow, gone: list[Fault], verb: str) -> list[FaultView]:
        ids = {f.get("id") for f in gone}
        keep = [f for f in inst["faults"] if f.get("id") not in ids]
        self._apply(inst["id"], keep, old=inst["faults"])
        self.store.update_instance(inst["id"], faults=keep)
        for f in gone:
            self._log(inst["id"], f"Fault on instance {inst['id']} {verb}: {describe(f)} (labctl)")
        return [self._view(inst, f) for f in gone]

    def list_faults(self, app: str | None = None, instance: str | None = None) -> list[FaultView]:
        if app is not None and self.store.app(app) is None:
            raise NotFound(f"Couldn't find that app: {app}")
        insts = [self._instance(instance)] if instance else self.store.instances()
        out = []
        for inst in insts:
            hosted = self._hosted(inst["id"])
            if app is not None and not any(r["app"] == app for r in hosted):
                continue
            out += [self._view(inst, f, hosted) for f in inst["faults"]]
        if instance is None and self.router_end is not None:
            out += self.router_end.list_faults(app)
        return out

    def _view(self, inst: InstanceRow, fault: Fault, hosted: list[DynoRow] | None = None) -> FaultView:
        """A fault as the API shows it: with its instance and the dynos (``app/web.1``) it hosts."""
        hosted = self._hosted(inst["id"]) if hosted is None else hosted
        return {
            **fault,
            "end": "instance",
            "instance": inst["id"],
            "runtime": inst["runtime"],
            "description": describe(fault),
            "dynos": [f"{r['app']}/{r['name']}" for r in hosted],
        }

    def max_delay_ms(self) -> float:
        """The router's first-byte timeout at the lab's time scale, in ms: a latency must stay below it."""
        return self.rt.scale(clock.ROUTER_FIRST_BYTE) * 1000.0

    # -- engine ------------------------------------------------------------------------------------------
    def require_support(self, kind: str) -> None:
        """The first fault of a controller's life probes the engine (about a second); the verdict is cached."""
        support: Support = self.fe.probe()[kind]
        if not support.supported:
            raise InvalidInput(
                f"{kind} faults are not supported on this engine: {support.reason}. See `labctl doctor`."
            )

    def _apply(self, iid: str, faults: list[Fault], old: list[Fault] | None = None, force: bool = False) -> None:
        """Make the instance's sandboxes and dynos carry exactly ``faults``; skips what did not change."""
        net_new = [f for f in faults if f.get("kind") in NET_KINDS]
        net_old = [f for f in (old or []) if f.get("kind") in NET_KINDS]
        if force or _net_key(net_new) != _net_key(net_old):
            for sb in self.store.sandboxes(iid):
                if self.rt.engine.try_info(sb["container"]) is None:
                    continue  # vanished; the runtime will recreate it and the hook applies the faults
                self.fe.sync_sandbox(sb["container"], net_new)
        cpu_new, cpu_old = _cpus(faults), _cpus(old or [])
        mem_new, mem_old = memory_fault(faults), memory_fault(old or [])
        if force or cpu_new != cpu_old or mem_new != mem_old:
            # the budget faults act on the instance's parent cgroup: its dynos share them (issue 16)
            if self._apply_budget(iid, faults):
                return
            for cid in (r["container"] for r in self._hosted(iid)):
                if cid:  # budgets not enforced here: each hosted dyno gets the cpu quota, as before them
                    self.fe.set_cpu(cid, cpu_new)

    def _apply_budget(self, iid: str, faults: list[Fault]) -> bool:
        apply = getattr(self.rt, "apply_budget", None)
        return bool(apply(iid, faults)) if apply is not None else False

    def _restore(self, iid: str, old: list[Fault]) -> None:
        try:
            self._apply(iid, old, force=True)
        except LabError as err:
            log.warning("could not restore faults of %s: %s", iid, err)

    # -- hooks (called by the runtime under its lock) ------------------------------------------------------
    def _on_sandbox_created(self, iid: str, sandbox: SandboxRow) -> None:
        inst = self.store.instance(iid)
        net = [f for f in (inst["faults"] if inst else []) if f.get("kind") in NET_KINDS]
        if not net:
            return
        try:
            self.fe.sync_sandbox(sandbox["container"], net)
        except LabError as err:
            log.warning("could not apply faults of %s to its new sandbox: %s", iid, err)

    def _on_dyno_started(self, iid: str, container: str) -> None:
        inst = self.store.instance(iid)
        cpus = _cpus(inst["faults"]) if inst else None
        if cpus is None or getattr(self.rt, "budgets_enforced", False):
            return  # nothing to throttle, or the instance's parent cgroup does it for every dyno
        try:
            self.fe.set_cpu(container, cpus)
        except EngineError as err:
            log.warning("could not throttle the new dyno on %s: %s", iid, err)

    # -- timer -----------------------------------------------------------------------------------------------
    def _timer(self) -> None:
        while not self.stopping:
            try:
                self.expire()
                pending = [f["expires_at"] for i in self.store.instances() for f in i["faults"] if f.get("expires_at")]
                if self.router_end is not None:
                    self.router_end.expire()
                    pending += self.router_end.pending()
            except Exception:  # noqa: BLE001 - the timer must survive anything; the log says what
                log.exception("fault expiry failed")
                pending = []
            delay = min(pending, default=time.time() + 1.0) - time.time()
            self.wakeup.wait(timeout=min(max(delay, 0.05), 1.0))
            self.wakeup.clear()

    def _log(self, iid: str, msg: str) -> None:
        for r in self._hosted(iid):
            self.sink.heroku(r["app"], r["name"], msg)


def _cpus(faults: list[Fault]) -> float | None:
    return next((float(f["cpus"]) for f in faults if f.get("kind") == "cpu"), None)


def _net_key(faults: list[Fault]) -> list[str]:
    """What the engine sees of network faults (not their ids or times): equal keys need no re-apply."""
    skip = ("id", "created_at", "expires_at")
    return sorted(json.dumps({k: v for k, v in f.items() if k not in skip}, sort_keys=True) for f in faults)
