"""Faults at the engine level: the only module that runs iptables, tc, the fault proxy or ``docker update``.

Where each fault lives (lab-spec §8, issue 17):

* network kinds live in a network namespace: at the *instance end*, in each *sandbox* of the instance (one
  per app it hosts; the sandbox holds NET_ADMIN, its dynos join its namespace), matching only the router's
  address; at the *router end*, in the router container that serves the runtime (``router_for``), matching
  the runtime's subnet or one instance's sandboxes. ``loss`` and ``blackhole`` are iptables DROPs (INPUT for
  ``in``, OUTPUT for ``out``); ``bandwidth`` is a tc tbf on the sandbox's eth0 for the instance end's ``out``
  and the fault proxy otherwise; ``latency``, ``timeout``, ``reset``, ``slow-close`` and ``limit-data`` are
  toxics of the fault proxy (``fault_proxy.py``, Toxiproxy's semantics in user space: this kernel has no
  sch_netem), to which an iptables nat REDIRECT sends the path's new TCP connections. ``sync_sandbox`` and
  ``sync_router`` rewrite a namespace's whole fault state from a list of faults (idempotent: adding,
  clearing, expiring and "a new sandbox appeared" are all the same operation); the proxy runs only while
  there are toxics, so removing the last one leaves no rule, qdisc or process;
* ``cpu`` and ``memory`` act on the instance's parent cgroup (its budget, ``controller/instances.py``); where
  budgets are not enforced, ``cpu`` is a CFS quota (``docker update --cpu-quota/--cpu-period``) on every dyno
  container of the instance (``set_cpu``).

Nothing here outlives the lab: rules and proxies live in the sandboxes' and the router's namespaces
(removed by ``labctl down`` with those containers), quotas on the dyno containers, and the probe container
carries the lab's labels and is removed right after use.

The pure part (parsing rates and durations, the plans and their shell scripts) is tested without Docker.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shlex
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker.errors

from labctl import const
from labctl.domain.faults import FAULT_KINDS, KINDS, NET_KINDS
from labctl.engine import fault_proxy
from labctl.engine.docker import Engine, lab_labels
from labctl.engine.translate import SDK_ERRORS, translate_errors
from labctl.errors import InvalidInput, LabError

CHAIN = "LABCTL-FAULTS"  # filter, from INPUT: the packets arriving at the end the fault sits at
CHAIN_OUT = "LABCTL-FAULTS-OUT"  # filter, from OUTPUT: the packets leaving it
PROXY_CHAIN = "LABCTL-PROXY"  # nat: the REDIRECT to the fault proxy
PROXY_PORT = fault_proxy.PORT
PROXY_MARK = fault_proxy.MARK
PROXY_DIR = "/run/labctl-faults"  # the proxy's config, pid and log (gone with the proxy)
PROXY_SCRIPT = "/usr/local/lib/labctl/fault_proxy.py"
PROXY_SOURCE = Path(fault_proxy.__file__).read_text(encoding="utf-8")
PROXY_VERSION = hashlib.sha256(PROXY_SOURCE.encode()).hexdigest()[:12]
DEVICE = "eth0"
CPU_PERIOD_US = 100_000  # 100 ms: --cpus 0.05 = 5 ms of CPU every 100 ms
MIN_CPUS = 0.01  # Docker refuses a CFS quota under 1 ms
MAX_CPUS = 8.0
MIN_RATE_BPS = 8_000  # 8kbit
MAX_RATE_BPS = 10_000_000_000  # 10gbit
MAX_DURATION_S = 7 * 24 * 3600.0

# tc's own units (tc(8) "RATES"): bit-based and byte-based ("bps" = bytes per second, as in tc).
_RATE_UNITS = {
    "bit": 1,
    "kbit": 1_000,
    "mbit": 1_000_000,
    "gbit": 1_000_000_000,
    "kibit": 1024,
    "mibit": 1024**2,
    "gibit": 1024**3,
    "bps": 8,
    "kbps": 8_000,
    "mbps": 8_000_000,
    "gbps": 8_000_000_000,
}
_RATE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$")
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


# -- pure helpers ------------------------------------------------------------------------------------------
def parse_rate(text: str) -> int:
    """``1mbit`` → 1000000 (bits per second). tc's units; a bare number means bit/s, as for tc."""
    m = _RATE_RE.match(str(text).lower())
    if not m or (m.group(2) or "bit") not in _RATE_UNITS:
        raise InvalidInput(f"Invalid rate {text!r}: use a number and a tc unit, e.g. 512kbit, 1mbit, 10mbit")
    bps = int(float(m.group(1)) * _RATE_UNITS[m.group(2) or "bit"])
    if not MIN_RATE_BPS <= bps <= MAX_RATE_BPS:
        raise InvalidInput(f"Invalid rate {text!r}: it must be between 8kbit and 10gbit")
    return bps


def format_rate(bps: int) -> str:
    """1000000 → ``1mbit``; the largest tc unit that divides the rate."""
    for unit, mult in (("gbit", 10**9), ("mbit", 10**6), ("kbit", 10**3)):
        if bps % mult == 0:
            return f"{bps // mult}{unit}"
    return f"{bps}bit"


def parse_duration(text: str | float | int) -> float:
    """``2s`` → 2.0, ``500ms`` → 0.5, ``5m``, ``1h``; a bare number is seconds. Must be > 0 and ≤ 7 days."""
    if isinstance(text, bool):
        raise InvalidInput(f"Invalid duration {text!r}")
    if isinstance(text, (int, float)):
        seconds = float(text)
    else:
        m = _DURATION_RE.match(str(text).lower())
        if not m:
            raise InvalidInput(f"Invalid duration {text!r}: use e.g. 30s, 500ms, 5m, 1h")
        seconds = float(m.group(1)) * _DURATION_UNITS[m.group(2)]
    if not 0 < seconds <= MAX_DURATION_S:
        raise InvalidInput(f"Invalid duration {text!r}: it must be more than 0 and at most 7 days")
    return seconds


def tbf_args(bps: int) -> str:
    """tbf parameters for a rate: a burst of ~10 ms worth (at least two full frames), at most 500 ms queued."""
    burst = max(bps // 8 // 100, 3028)
    return f"tbf rate {bps}bit burst {burst} latency 500ms"


def streams(end: str, direction: str) -> list[str]:
    """The fault proxy's streams for a direction said from ``end`` (domain/faults.py): ``req`` runs router →
    dyno, ``resp`` back. At the instance end ``in`` is the request; at the router end ``out`` is."""
    toward_dyno = "in" if end == "instance" else "out"
    if direction == "both":
        return ["req", "resp"]
    return ["req"] if direction == toward_dyno else ["resp"]


def _fault_streams(end: str, fault: dict[str, Any]) -> list[str]:
    kind = fault.get("kind", "")
    if kind in ("slow-close", "limit-data"):
        return ["resp"]  # the dyno's close is held; the response is cut
    if kind in ("timeout", "reset"):
        return []  # the whole connection
    return streams(end, fault.get("direction") or FAULT_KINDS[kind].direction)


@dataclass
class NsPlan:
    """What one network namespace must carry: DROP rules per direction, a tbf rate on eth0, and the fault
    proxy's toxics with the REDIRECT matches that send the path's connections to it."""

    hook: str  # the nat chain the REDIRECT hangs from: PREROUTING (instance end) or OUTPUT (router end)
    drops_in: list[str] = field(default_factory=list)  # full iptables rule tails, for LABCTL-FAULTS (INPUT)
    drops_out: list[str] = field(default_factory=list)  # for LABCTL-FAULTS-OUT (OUTPUT)
    rate_bps: int | None = None  # tbf on eth0 (instance end only)
    touch_tc: bool = True
    redirects: list[str] = field(default_factory=list)  # iptables matches for the REDIRECT
    exempt: list[str] = field(default_factory=list)  # addresses never touched (the router's gateways)
    toxics: list[dict[str, Any]] = field(default_factory=list)


def _drop(match: str, fault: dict[str, Any]) -> str:
    comment = shlex.quote(f"labctl {fault.get('kind')} {fault.get('id', '')}".strip())
    prob = ""
    if fault.get("kind") == "loss":
        prob = f"-m statistic --mode random --probability {float(fault['percent']) / 100.0:.4f} "
    return f"{match} {prob}-m comment --comment {comment} -j DROP"


def _toxic(fault: dict[str, Any], end: str, nets: list[str]) -> dict[str, Any]:
    kind = fault["kind"]
    t: dict[str, Any] = {"kind": kind, "id": fault.get("id", ""), "streams": _fault_streams(end, fault), "nets": nets}
    if kind == "latency":
        t["ms"], t["jitter"] = float(fault["ms"]), float(fault.get("jitter") or 0)
    elif kind == "bandwidth":
        t["kbit"] = int(fault["rate_bps"]) / 1000.0
    elif kind == "slow-close":
        t["ms"] = float(fault["ms"])
    elif kind == "limit-data":
        t["bytes"] = int(fault["bytes"])
    return t


def instance_plan(router_ip: str, faults: list[dict[str, Any]], tbf: bool = True) -> NsPlan:
    """A sandbox's plan: rules match the router's address, so they hit exactly the router↔instance path."""
    ip = shlex.quote(router_ip)
    plan = NsPlan(hook="PREROUTING")
    for f in faults:
        kind = f.get("kind")
        direction = f.get("direction") or FAULT_KINDS[kind].direction if kind in FAULT_KINDS else ""
        if kind in ("blackhole", "loss"):
            if direction in ("in", "both"):
                plan.drops_in.append(_drop(f"-s {ip}", f))
            if direction in ("out", "both"):
                plan.drops_out.append(_drop(f"-d {ip}", f))
        elif kind == "bandwidth" and tbf and direction == "out":
            r = int(f["rate_bps"])
            plan.rate_bps = r if plan.rate_bps is None else min(plan.rate_bps, r)
        elif kind == "bandwidth" and tbf and direction == "both":
            r = int(f["rate_bps"])
            plan.rate_bps = r if plan.rate_bps is None else min(plan.rate_bps, r)
            plan.toxics.append(_toxic({**f, "direction": "in"}, "instance", []))
        elif kind in NET_KINDS:
            plan.toxics.append(_toxic(f, "instance", []))
    if plan.toxics:
        plan.redirects.append(f"-s {ip} -p tcp")
    return plan


def router_plan(faults: list[dict[str, Any]], exempt: list[str]) -> NsPlan:
    """The router container's plan; each fault carries ``nets``: the addresses it hits (a runtime's subnet, or
    the sandboxes of one instance). ``exempt`` (the networks' gateways, whence the published ports' clients
    come) is never matched. Bandwidth goes through the proxy here: a tbf on the router would shape clients too."""
    plan = NsPlan(hook="OUTPUT", touch_tc=False, exempt=[shlex.quote(e) for e in exempt])
    for f in faults:
        kind = f.get("kind")
        nets = [str(n) for n in f.get("nets") or []]
        if not nets or kind not in NET_KINDS:
            continue
        direction = f.get("direction") or FAULT_KINDS[kind].direction
        if kind in ("blackhole", "loss"):
            for n in nets:
                if direction in ("in", "both"):
                    plan.drops_in.append(_drop(f"-s {shlex.quote(n)}", f))
                if direction in ("out", "both"):
                    plan.drops_out.append(_drop(f"-d {shlex.quote(n)}", f))
        else:
            plan.toxics.append(_toxic(f, "router", nets))
            for n in nets:
                match = f"-d {shlex.quote(n)} -p tcp -m mark ! --mark {PROXY_MARK:#x}"
                if match not in plan.redirects:
                    plan.redirects.append(match)
    return plan


def _chain(table: str, chain: str, hook: str) -> list[str]:
    t = f"-t {table} " if table != "filter" else ""
    return [
        f"iptables -w {t}-N {chain} 2>/dev/null || iptables -w {t}-F {chain}",
        f"iptables -w {t}-C {hook} -j {chain} 2>/dev/null || iptables -w {t}-I {hook} 1 -j {chain}",
    ]


def _unchain(table: str, chain: str, hook: str) -> list[str]:
    """Remove a chain and every jump to it (nothing at all is left once a namespace has no faults)."""
    t = f"-t {table} " if table != "filter" else ""
    return [
        f"while iptables -w {t}-D {hook} -j {chain} 2>/dev/null; do :; done",
        f"iptables -w {t}-F {chain} 2>/dev/null || true",
        f"iptables -w {t}-X {chain} 2>/dev/null || true",
    ]


def plan_script(plan: NsPlan) -> str:
    """The shell script that makes a namespace match ``plan``, from any state (idempotent).

    Two filter chains, ``LABCTL-FAULTS`` (from INPUT) and ``LABCTL-FAULTS-OUT`` (from OUTPUT), hold the DROP
    rules; the root qdisc of eth0 is tbf when a rate is set (instance end); the nat chain ``LABCTL-PROXY``
    redirects the path's new TCP connections to the fault proxy, which runs only while it has toxics: it is
    started (and listening) before the REDIRECT goes in, and stopped after the REDIRECT went out. A chain
    with nothing left to hold is removed with its jump: a namespace without faults carries no labctl rule.
    """
    lines = ["set -e"]
    if plan.drops_in or plan.drops_out:
        lines += [*_chain("filter", CHAIN, "INPUT"), *_chain("filter", CHAIN_OUT, "OUTPUT")]
        for e in plan.exempt:
            lines.append(f"iptables -w -A {CHAIN} -s {e} -j RETURN")
            lines.append(f"iptables -w -A {CHAIN_OUT} -d {e} -j RETURN")
    else:
        lines += [*_unchain("filter", CHAIN, "INPUT"), *_unchain("filter", CHAIN_OUT, "OUTPUT")]
    lines += [f"iptables -w -A {CHAIN} {rule}" for rule in plan.drops_in]
    lines += [f"iptables -w -A {CHAIN_OUT} {rule}" for rule in plan.drops_out]
    if plan.touch_tc:
        if plan.rate_bps is not None:
            lines.append(f"tc qdisc replace dev {DEVICE} root {tbf_args(plan.rate_bps)}")
        else:
            lines.append(f"tc qdisc del dev {DEVICE} root 2>/dev/null || true")
    d, pid = PROXY_DIR, f"{PROXY_DIR}/proxy.pid"
    if plan.toxics:
        config = json.dumps({"toxics": plan.toxics}, sort_keys=True)
        listening = f":{PROXY_PORT:04X} 00000000:0000 0A"
        lines += [
            f"mkdir -p {d}",
            f"cat > {d}/proxy.json.new <<'LABCTL_EOF'\n{config}\nLABCTL_EOF",
            f"mv -f {d}/proxy.json.new {d}/proxy.json",
            # a proxy started from another version of fault_proxy.py (labctl upgraded) is replaced
            f'if [ -f {pid} ] && [ "$(cat {d}/proxy.version 2>/dev/null)" != "{PROXY_VERSION}" ]; then',
            f'  kill "$(cat {pid})" 2>/dev/null || true; rm -f {pid}',
            f"  i=0; while grep -q '{listening}' /proc/net/tcp && [ $i -lt 60 ]; do i=$((i+1)); sleep 0.05; done",
            "fi",
            f'if ! {{ [ -f {pid} ] && kill -0 "$(cat {pid})" 2>/dev/null; }}; then',
            f"  setsid python3 {PROXY_SCRIPT} {PROXY_PORT} {d}/proxy.json </dev/null >{d}/proxy.log 2>&1 &",
            f"  echo $! > {pid}; echo {PROXY_VERSION} > {d}/proxy.version",
            "fi",
            f"i=0; until grep -q '{listening}' /proc/net/tcp; do",
            f'  i=$((i+1)); if [ $i -gt 100 ]; then echo "the fault proxy did not start: '
            f'$(tail -c 300 {d}/proxy.log)"; exit 1; fi; sleep 0.05',
            "done",
            *_chain("nat", PROXY_CHAIN, plan.hook),
        ]
        lines += [f"iptables -w -t nat -A {PROXY_CHAIN} -d {e} -j RETURN" for e in plan.exempt]
        lines += [
            f"iptables -w -t nat -A {PROXY_CHAIN} {m} -j REDIRECT --to-ports {PROXY_PORT}" for m in plan.redirects
        ]
    else:
        lines += [
            *_unchain("nat", PROXY_CHAIN, plan.hook),
            f'if [ -f {pid} ]; then kill "$(cat {pid})" 2>/dev/null || true; fi',
            f"rm -rf {d}",
        ]
    return "\n".join(lines) + "\n"


def net_script(router_ip: str, faults: list[dict[str, Any]], tbf: bool = True) -> str:
    """The script that makes a sandbox's namespace carry exactly ``faults`` (network kinds only)."""
    return plan_script(instance_plan(router_ip, faults, tbf))


ISOLATE_CHAIN = "LABCTL-ISOLATE"  # filter, from INPUT of a Common Runtime sandbox (issue 16, item 5)


def isolation_script(admit: list[str]) -> str:
    """A Common Runtime sandbox admits new TCP connections only from its loopback and ``admit`` (the router, the
    network's gateway): another app's dyno cannot open one to it (heroku-reference §5: Common Runtime dynos cannot
    reach each other directly). Only SYNs are dropped, so the dynos' own outbound connections work. Idempotent;
    the chain lives in the sandbox's namespace and goes with it."""
    lines = [
        "set -e",
        f"iptables -w -N {ISOLATE_CHAIN} 2>/dev/null || iptables -w -F {ISOLATE_CHAIN}",
        f"iptables -w -A {ISOLATE_CHAIN} -i lo -j RETURN",
        *(f"iptables -w -A {ISOLATE_CHAIN} -s {shlex.quote(a)} -j RETURN" for a in admit),
        f"iptables -w -A {ISOLATE_CHAIN} -p tcp --syn -m comment --comment 'labctl isolation' -j DROP",
        f"iptables -w -C INPUT -j {ISOLATE_CHAIN} 2>/dev/null || iptables -w -A INPUT -j {ISOLATE_CHAIN}",
    ]
    return "\n".join(lines) + "\n"


def cpu_quota(cpus: float) -> int:
    return max(int(round(cpus * CPU_PERIOD_US)), 1000)


# -- engine side ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Support:
    supported: bool
    reason: str  # how it is delivered, or why it cannot be
    mechanism: str = ""  # "iptables", "tc+proxy", "proxy", "cfs", "docker": what doctor names

    def as_dict(self) -> dict[str, Any]:
        return {"supported": self.supported, "reason": self.reason, "mechanism": self.mechanism}


_PROBES: dict[str, dict[str, Support]] = {}
_PROBE_LOCK = threading.Lock()

_PROBE_SCRIPT = f"""
r() {{
  name=$1; shift
  if out=$("$@" 2>&1); then echo "$name ok"; else echo "$name fail $(echo $out | head -c 200)"; fi
}}
r iptables iptables -w -N PROBE
r statistic iptables -w -A PROBE -s 192.0.2.1 -m statistic --mode random --probability 0.5 -j DROP
r drop iptables -w -A PROBE -s 192.0.2.1 -j DROP
r tbf tc qdisc add dev {DEVICE} root {tbf_args(1_000_000)}
r redirect iptables -w -t nat -A OUTPUT -d 192.0.2.1 -p tcp -m mark ! --mark {PROXY_MARK:#x} \\
  -j REDIRECT --to-ports {PROXY_PORT}
r python3 python3 -c 'import asyncio, socket; socket.SO_MARK'
"""


def _parse_probe(text: str) -> dict[str, tuple[bool, str]]:
    found: dict[str, tuple[bool, str]] = {}
    for line in text.splitlines():
        parts = line.split(" ", 2)
        if len(parts) >= 2 and parts[1] in ("ok", "fail"):
            found[parts[0]] = (parts[1] == "ok", parts[2].strip() if len(parts) > 2 else "")
    return found


def support_from_probe(text: str, cpu: tuple[bool, str]) -> dict[str, Support]:
    """Turn the probe's output (and the CPU check) into a verdict per fault kind."""
    p = _parse_probe(text)

    def get(name: str) -> tuple[bool, str]:
        return p.get(name, (False, "not tried"))

    ipt, stat, drop, tbf, redirect, py = (
        get(n) for n in ("iptables", "statistic", "drop", "tbf", "redirect", "python3")
    )
    proxy_ok = redirect[0] and py[0]
    proxy_why = (
        "the user-space fault proxy (iptables REDIRECT to a python3 asyncio proxy in the end's namespace)"
        if proxy_ok
        else "the fault proxy cannot run: "
        + (f"iptables REDIRECT: {redirect[1]}" if not redirect[0] else f"python3: {py[1]}")
    )
    out = {
        "cpu": Support(
            cpu[0],
            "CFS quota of the instance's parent cgroup (of each dyno, via docker update, without budgets)"
            if cpu[0]
            else f"docker update failed: {cpu[1]}",
            "cfs",
        ),
        "loss": Support(
            ipt[0] and stat[0],
            "iptables statistic match (INPUT/OUTPUT of the end's namespace)"
            if stat[0]
            else f"iptables statistic match unavailable: {stat[1] or ipt[1]}",
            "iptables",
        ),
        "blackhole": Support(
            ipt[0] and drop[0],
            "iptables DROP (INPUT/OUTPUT of the end's namespace)"
            if drop[0]
            else f"iptables DROP unavailable: {drop[1] or ipt[1]}",
            "iptables",
        ),
        "bandwidth": Support(
            tbf[0] or proxy_ok,
            ("tc tbf on the instance's eth0 (instance end, out); " if tbf[0] else "no tc tbf here; ")
            + ("the fault proxy otherwise" if proxy_ok else proxy_why),
            "tc+proxy" if tbf[0] else "proxy",
        ),
    }
    for kind in ("latency", "timeout", "reset", "slow-close", "limit-data"):
        out[kind] = Support(proxy_ok, proxy_why, "proxy")
    out["memory"] = Support(True, "the memory limit of the instance's parent cgroup", "cgroup")
    out["host-failure"] = Support(True, "container removal", "docker")
    return out


@translate_errors
class FaultEngine:
    """Applies and inspects faults on one lab's containers (its public methods raise the lab's errors only)."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.client = engine.client

    # -- network faults in a sandbox ------------------------------------------------------------------------
    def router_ip(self, sandbox: str) -> str:
        """The address, on the (one) network of the sandbox, of the router serving it (its space's own router in a
        Private Space, else the common one): the source the rules match."""
        sb = self.client.containers.get(sandbox)
        nets = list(sb.attrs["NetworkSettings"].get("Networks") or {})
        router = self.client.containers.get(self.engine.router_name(sb.labels.get(const.LABEL_SPACE) or None))
        rnets = router.attrs["NetworkSettings"].get("Networks") or {}
        for net in nets:
            if net in rnets and rnets[net].get("IPAddress"):
                return rnets[net]["IPAddress"]
        raise LabError(f"the router is not attached to the network of sandbox {sb.name}")

    def sync_sandbox(self, sandbox: str, faults: list[dict[str, Any]]) -> None:
        """Make the sandbox's namespace carry exactly the network faults in ``faults`` (the instance end)."""
        net = [f for f in faults if f.get("kind") in NET_KINDS]
        plan = instance_plan(self.router_ip(sandbox), net, tbf=self._has_tbf(net))
        self._sync(sandbox, plan)

    def isolate_sandbox(self, sandbox: str) -> None:
        """Only the router (and the network's gateway) may open connections to a Common Runtime sandbox."""
        sb = self.client.containers.get(sandbox)
        admit = [self.router_ip(sandbox)]
        for name in sb.attrs["NetworkSettings"].get("Networks") or {}:
            try:
                net = self.client.networks.get(name)
            except docker.errors.NotFound:
                continue
            admit += [str(c["Gateway"]) for c in (net.attrs.get("IPAM") or {}).get("Config") or [] if c.get("Gateway")]
        self._exec(sandbox, isolation_script(admit))

    def _has_tbf(self, net: list[dict[str, Any]]) -> bool:
        if not any(f.get("kind") == "bandwidth" for f in net):
            return True  # nothing to shape: no need to ask
        return self.probe()["bandwidth"].mechanism == "tc+proxy"

    def _sync(self, container: str, plan: NsPlan) -> None:
        if plan.toxics:
            self.engine.put_file(container, PROXY_SCRIPT, PROXY_SOURCE)
        self._exec(container, plan_script(plan))

    # -- the router end -----------------------------------------------------------------------------------
    def router_for(self, runtime: str | None) -> str:
        """The router container that serves a runtime (None: the Common Runtime; else a space's name).

        The one place that knows how routers map to runtimes: the common router, or the space's own."""
        return self.engine.router_name(runtime)

    def runtime_subnet(self, runtime: str | None) -> str | None:
        """The subnet of a runtime's network (every instance of the runtime has its sandboxes there)."""
        try:
            net = self.client.networks.get(self.engine.network_name(runtime))
        except docker.errors.NotFound:
            return None
        for cfg in (net.attrs.get("IPAM") or {}).get("Config") or []:
            if cfg.get("Subnet") and ":" not in cfg["Subnet"]:
                return str(cfg["Subnet"])
        return None

    def sync_router(self, router: str, faults: list[dict[str, Any]]) -> None:
        """Make a router container carry exactly ``faults`` (each with its ``nets``): the router end."""
        c = self.client.containers.get(router)
        gateways = []
        for name in c.attrs["NetworkSettings"].get("Networks") or {}:
            try:
                net = self.client.networks.get(name)
            except docker.errors.NotFound:
                continue
            gateways += [
                str(cfg["Gateway"]) for cfg in (net.attrs.get("IPAM") or {}).get("Config") or [] if cfg.get("Gateway")
            ]
            # A space's router is reached through the common router, which sits on the space's network too:
            # that hop is the client side, not the router-to-instance path, so it is never matched either.
            front = self.engine.router_name()
            gateways += [
                str(m["IPv4Address"]).split("/")[0]
                for m in (net.attrs.get("Containers") or {}).values()
                if m.get("Name") == front and m.get("IPv4Address") and c.name != front
            ]
        self._sync(router, router_plan([f for f in faults if f.get("kind") in NET_KINDS], gateways))

    def sandbox_state(self, sandbox: str) -> dict[str, str]:
        """What is in force in a namespace: the fault chains' rules, eth0's root qdisc and the fault proxy."""
        rules = self._exec(
            sandbox,
            f"iptables -w -S {CHAIN} 2>/dev/null; iptables -w -S {CHAIN_OUT} 2>/dev/null; "
            f"iptables -w -t nat -S {PROXY_CHAIN} 2>/dev/null || true",
        )
        qdisc = self._exec(sandbox, f"tc qdisc show dev {DEVICE} root")
        proxy = self._exec(sandbox, f"cat {PROXY_DIR}/proxy.pid 2>/dev/null || true")
        return {"iptables": rules, "qdisc": qdisc, "proxy": proxy.strip()}

    def _exec(self, container: str, script: str) -> str:
        try:
            code, out = self.client.containers.get(container).exec_run(["sh", "-c", script])
        except docker.errors.NotFound:
            raise LabError(f"container {container[:12]} is gone") from None
        text = out.decode(errors="replace") if out else ""
        if code != 0:
            raise LabError(f"applying a fault failed in {container[:12]}: {text.strip()[:300]}")
        return text

    # -- cpu --------------------------------------------------------------------------------------------------
    def set_cpu(self, container: str, cpus: float | None) -> None:
        """A CFS quota of ``cpus`` CPUs on one container; ``None`` lifts it."""
        try:
            if cpus is None:
                self.client.api.update_container(container, cpu_quota=-1, cpu_period=CPU_PERIOD_US)
            else:
                self.client.api.update_container(container, cpu_quota=cpu_quota(cpus), cpu_period=CPU_PERIOD_US)
        except docker.errors.NotFound:
            return  # the dyno exited meanwhile: nothing to throttle

    def cpu_of(self, container: str) -> float | None:
        """The CPU limit in force on a container (None: unlimited)."""
        hc = self.client.api.inspect_container(container)["HostConfig"]
        quota, period = hc.get("CpuQuota") or 0, hc.get("CpuPeriod") or CPU_PERIOD_US
        return quota / period if quota > 0 else None

    # -- what this engine and kernel can do ---------------------------------------------------------------
    def probe(self, image: str = const.STACK_IMAGE, refresh: bool = False) -> dict[str, Support]:
        """Try every mechanism for real in a throwaway NET_ADMIN container; cached per engine for the process."""
        key = f"{os.environ.get('DOCKER_HOST', '')} {self.client.api.base_url}"  # one verdict per engine
        with _PROBE_LOCK:
            if key in _PROBES and not refresh:
                return _PROBES[key]
            result = self._probe(image)
            _PROBES[key] = result
            return result

    def _probe(self, image: str) -> dict[str, Support]:
        name = f"{self.engine.prefix}-probe-{secrets.token_hex(3)}"
        try:
            c = self.client.containers.run(
                image,
                ["sleep", "120"],
                name=name,
                detach=True,
                init=True,
                cap_add=["NET_ADMIN"],
                labels=lab_labels(self.engine.lab, const.KIND_PROBE),
            )
        except SDK_ERRORS as err:
            reason = f"cannot start a probe container from {image}: {str(err).splitlines()[0][:200]}"
            return {
                k: Support(k == "host-failure", "container removal" if k == "host-failure" else reason) for k in KINDS
            }
        try:
            code, out = c.exec_run(["sh", "-c", _PROBE_SCRIPT])
            text = out.decode(errors="replace") if out else ""
            try:
                self.client.api.update_container(c.id, cpu_quota=cpu_quota(0.5), cpu_period=CPU_PERIOD_US)
                c.reload()
                ok = c.attrs["HostConfig"].get("CpuQuota") == cpu_quota(0.5)
                cpu = (ok, "" if ok else "the quota did not stick")
            except SDK_ERRORS as err:
                cpu = (False, str(err).splitlines()[0][:200])
            return support_from_probe(text, cpu)
        finally:
            self.engine.remove(c.id)
