"""The fault kinds an instance can be given (lab-spec §8), each defined once: its name, one line of help and
the parameters it takes. The CLI's help, the controller's validation, the engine's probe, ``doctor`` and the
scenario loader all read this table; a new fault kind starts here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FaultKind:
    name: str
    help: str  # one line, for ``faults:add --help``
    params: tuple[str, ...] = ()  # the request body's keys (= the CLI's options) the kind needs
    network: bool = False  # lives in the instance's sandboxes (iptables/tc), not on its dyno containers
    event: bool = False  # happens at once: never listed, never cleared, no --for


FAULT_KINDS: dict[str, FaultKind] = {
    k.name: k
    for k in (
        FaultKind("cpu", "every dyno on the instance gets at most --cpus CPUs", ("cpus",)),
        FaultKind(
            "loss", "drop --percent of the packets between the router and the instance", ("percent",), network=True
        ),
        FaultKind("blackhole", "drop every packet between the router and the instance", network=True),
        FaultKind("bandwidth", "limit the router-instance path to --rate", ("rate",), network=True),
        FaultKind("latency", "delay packets between the router and the instance by --delay", ("delay",), network=True),
        FaultKind("host-failure", "the instance dies at once and its dynos move to a new one", event=True),
    )
}
KINDS = tuple(FAULT_KINDS)
NET_KINDS = frozenset(k.name for k in FAULT_KINDS.values() if k.network)

# How each parameter is given on the command line, for error messages.
PARAM_HELP = {
    "cpus": "--cpus F (a fraction of one CPU, e.g. 0.05)",
    "percent": "--percent N (the share of packets dropped, e.g. 30)",
    "rate": "--rate R (e.g. 1mbit, 512kbit)",
    "delay": "--delay DURATION (e.g. 200ms)",
}


def kinds_help() -> str:
    """``cpu: every dyno … ; loss: …``: the kinds and their one-line help, for ``--help``."""
    return "; ".join(f"{k.name}: {k.help}" for k in FAULT_KINDS.values())
