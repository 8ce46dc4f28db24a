"""Instance faults at the engine level: the only module that runs iptables, tc or ``docker update`` for faults.

Where each fault lives (lab-spec §8):

* network kinds (``loss``, ``blackhole``, ``bandwidth``, ``latency``) live in the network namespace of each
  *sandbox* of the instance (one per app it hosts; the sandbox holds NET_ADMIN, its dynos join its namespace).
  They match only the router's address on the sandbox's network, so they hit exactly the router↔instance
  path. ``sync_sandbox`` rewrites a sandbox's whole fault state from the instance's list of faults (idempotent:
  adding, clearing, expiring and "a new sandbox appeared" are all the same operation);
* ``cpu`` is a CFS quota (``docker update --cpu-quota/--cpu-period``) on every dyno container of the instance.

Nothing here outlives the lab: rules live in the sandboxes' namespaces (removed by ``labctl down`` with the
sandboxes), quotas on the dyno containers, and the probe container carries the lab's labels and is removed
right after use.

The pure part (parsing rates and durations, building the shell script) is tested without Docker.
"""

from __future__ import annotations

import os
import re
import secrets
import shlex
import threading
from dataclasses import dataclass
from typing import Any

import docker.errors

from labctl import const
from labctl.domain.faults import KINDS, NET_KINDS
from labctl.engine.docker import Engine, lab_labels
from labctl.engine.translate import SDK_ERRORS, translate_errors
from labctl.errors import InvalidInput, LabError

CHAIN = "LABCTL-FAULTS"
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


def net_script(router_ip: str, faults: list[dict[str, Any]]) -> str:
    """The shell script that makes a sandbox's namespace match ``faults`` (network kinds only), from any state.

    One chain, ``LABCTL-FAULTS``, jumped to from INPUT, holds the DROP rules matching the router's address;
    the root qdisc of eth0 is tbf when a bandwidth fault is present (netem when a latency fault is, on kernels
    that have it), the default otherwise.
    """
    ip = shlex.quote(router_ip)
    lines = [
        "set -e",
        f"iptables -w -N {CHAIN} 2>/dev/null || iptables -w -F {CHAIN}",
        f"iptables -w -C INPUT -j {CHAIN} 2>/dev/null || iptables -w -I INPUT 1 -j {CHAIN}",
    ]
    rate: int | None = None
    for f in faults:
        kind = f.get("kind")
        comment = shlex.quote(f"labctl {kind} {f.get('id', '')}".strip())
        if kind == "blackhole":
            lines.append(f"iptables -w -A {CHAIN} -s {ip} -m comment --comment {comment} -j DROP")
        elif kind == "loss":
            p = float(f["percent"]) / 100.0
            lines.append(
                f"iptables -w -A {CHAIN} -s {ip} -m statistic --mode random --probability {p:.4f} "
                f"-m comment --comment {comment} -j DROP"
            )
        elif kind == "bandwidth":
            r = int(f["rate_bps"])
            rate = r if rate is None else min(rate, r)
    delay = next((float(f["delay_ms"]) for f in faults if f.get("kind") == "latency"), None)
    if delay is not None:  # only where the kernel has sch_netem (doctor says); netem carries the rate too
        shaped = f" rate {rate}bit" if rate is not None else ""
        lines.append(f"tc qdisc replace dev {DEVICE} root netem delay {delay:g}ms{shaped}")
    elif rate is not None:
        lines.append(f"tc qdisc replace dev {DEVICE} root {tbf_args(rate)}")
    else:
        lines.append(f"tc qdisc del dev {DEVICE} root 2>/dev/null || true")
    return "\n".join(lines) + "\n"


def cpu_quota(cpus: float) -> int:
    return max(int(round(cpus * CPU_PERIOD_US)), 1000)


# -- engine side ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Support:
    supported: bool
    reason: str  # how it is delivered, or why it cannot be

    def as_dict(self) -> dict[str, Any]:
        return {"supported": self.supported, "reason": self.reason}


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
r netem tc qdisc add dev lo root netem delay 1ms
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

    ipt, stat, drop, tbf, netem = (get(n) for n in ("iptables", "statistic", "drop", "tbf", "netem"))
    out = {
        "cpu": Support(cpu[0], "CFS quota via docker update" if cpu[0] else f"docker update failed: {cpu[1]}"),
        "loss": Support(
            ipt[0] and stat[0],
            "iptables statistic match in the instance's namespace"
            if stat[0]
            else f"iptables statistic match unavailable: {stat[1] or ipt[1]}",
        ),
        "blackhole": Support(
            ipt[0] and drop[0],
            "iptables DROP in the instance's namespace"
            if drop[0]
            else f"iptables DROP unavailable: {drop[1] or ipt[1]}",
        ),
        "bandwidth": Support(tbf[0], "tc tbf on the instance's eth0" if tbf[0] else f"tc tbf unavailable: {tbf[1]}"),
        "latency": Support(
            netem[0], "tc netem" if netem[0] else f"the kernel has no sch_netem qdisc (tc: {netem[1] or 'failed'})"
        ),
        "host-failure": Support(True, "container removal"),
    }
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
        """Make the sandbox's namespace carry exactly the network faults in ``faults``."""
        net = [f for f in faults if f.get("kind") in NET_KINDS]
        script = net_script(self.router_ip(sandbox), net)
        self._exec(sandbox, script)

    def sandbox_state(self, sandbox: str) -> dict[str, str]:
        """What is in force in a sandbox: the fault chain's rules and eth0's root qdisc (for tests and doctor)."""
        rules = self._exec(sandbox, f"iptables -w -S {CHAIN} 2>/dev/null || true")
        qdisc = self._exec(sandbox, f"tc qdisc show dev {DEVICE} root")
        return {"iptables": rules, "qdisc": qdisc}

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
