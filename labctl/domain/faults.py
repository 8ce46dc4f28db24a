"""The fault kinds (lab-spec §8), each defined once: its name, one line of help, the parameters it takes,
whether it is a network kind, the directions it allows and how it is delivered. The CLI's help, the
controller's validation, the engine's probe, ``doctor`` and the scenario loader all read this table; a new
fault kind starts here.

Where a network fault sits (issue 17): at the *instance end* (the namespace of each of the instance's
sandboxes) or at the *router end* (the router container that serves a runtime, on its path to every instance
of that runtime, or to one). ``--direction`` is said from the end the fault sits at: ``in`` = the packets
arriving there, ``out`` = the packets leaving it, ``both``. So at the instance end ``in`` is the request
(router → instance) and ``out`` the response; at the router end ``out`` is the request and ``in`` the response.
"""

from __future__ import annotations

from dataclasses import dataclass

DIRECTIONS = ("in", "out", "both")
ENDS = ("instance", "router")


@dataclass(frozen=True)
class FaultKind:
    name: str
    help: str  # one line, for ``faults:add --help``
    params: tuple[str, ...] = ()  # the request body's keys (= the CLI's options) the kind needs
    network: bool = False  # lives in a network namespace (iptables/tc/the fault proxy), not on dyno containers
    event: bool = False  # happens at once: never listed, never cleared, no --for
    optional: tuple[str, ...] = ()  # keys the kind may take
    direction: str = ""  # the default --direction; "" = the kind has none (refused)
    proxy: bool = False  # always delivered by the user-space fault proxy (engine/fault_proxy.py)

    @property
    def directional(self) -> bool:
        return bool(self.direction)


FAULT_KINDS: dict[str, FaultKind] = {
    k.name: k
    for k in (
        FaultKind("cpu", "the instance's dynos share at most --cpus CPUs", ("cpus",)),
        FaultKind("memory", "take --mb N MB of the instance's memory away (R14, then R15, sooner)", ("mb",)),
        FaultKind(
            "loss",
            "drop --percent of the packets between the router and the instance",
            ("percent",),
            network=True,
            direction="in",
        ),
        FaultKind("blackhole", "drop every packet between the router and the instance", network=True, direction="in"),
        FaultKind(
            "bandwidth",
            "limit the router-instance path to --kbit N (or --rate R)",
            network=True,
            optional=("kbit", "rate"),
            direction="out",
        ),
        FaultKind(
            "latency",
            "delay data between the router and the instance by --ms N (± --jitter N)",
            ("ms",),
            network=True,
            optional=("jitter",),
            direction="out",
            proxy=True,
        ),
        FaultKind(
            "timeout", "accept connections, then let nothing through (the router's H12)", network=True, proxy=True
        ),
        FaultKind("reset", "reset connections once the request arrived (the router's H13)", network=True, proxy=True),
        FaultKind("slow-close", "hold the dyno's close of a connection for --ms N", ("ms",), network=True, proxy=True),
        FaultKind(
            "limit-data", "cut each response after --bytes N (the router's H18)", ("bytes",), network=True, proxy=True
        ),
        FaultKind("host-failure", "the instance dies at once and its dynos move to a new one", event=True),
    )
}
KINDS = tuple(FAULT_KINDS)
NET_KINDS = frozenset(k.name for k in FAULT_KINDS.values() if k.network)
DIRECTIONAL_KINDS = tuple(k.name for k in FAULT_KINDS.values() if k.directional)

# How each parameter is given on the command line, for error messages.
PARAM_HELP = {
    "cpus": "--cpus F (a fraction of one CPU, e.g. 0.05)",
    "mb": "--mb N (megabytes, e.g. 1500)",
    "percent": "--percent N (the share of packets dropped, e.g. 30)",
    "kbit": "--kbit N (kbit/s, e.g. 256)",
    "rate": "--rate R (e.g. 1mbit, 512kbit)",
    "ms": "--ms N (milliseconds, e.g. 200)",
    "jitter": "--jitter N (milliseconds, e.g. 100)",
    "bytes": "--bytes N (e.g. 1000)",
}


def kinds_help() -> str:
    """``cpu: every dyno … ; loss: …``: the kinds and their one-line help, for ``--help``."""
    return "; ".join(f"{k.name}: {k.help}" for k in FAULT_KINDS.values())
