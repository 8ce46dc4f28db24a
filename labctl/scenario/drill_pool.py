"""The incident pool of ``labctl drill`` and its grading, as data and pure functions (docs/drills.md).

An incident is drawn from ``POOL`` by ``choose(seed, …)`` (the same seed, the same incident and the same sick
dyno); ``inject`` says the labctl command that makes it, ``solution`` the known remedy, ``fits`` the remedies that
fit it. ``classify`` turns a command line the learner typed into a remedy (restart, stop, rollback, …) and
``grade`` judges the answer, the mitigation and the remedy from the events.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

INSTANCE, ROUTER, RELEASE = "instance", "router", "release"


@dataclass(frozen=True)
class Incident:
    name: str  # the pool's id of it (shown only once the drill is over)
    kind: str  # what the learner names with drill:answer --kind
    level: str  # instance | router | release: where the cause sits
    summary: str  # one line, for the report

    def fits(self, private_space: bool) -> tuple[str, ...]:
        if self.level == ROUTER:
            return ("router-clear",)
        if self.level == RELEASE:
            return ("rollback", "config", "deploy")
        # A Private Space dyno keeps its instance through ps:restart (heroku-reference §1.2); in the Common
        # Runtime a restart lands on another host.
        return ("stop", "scale") if private_space else ("restart", "stop", "scale")


POOL: tuple[Incident, ...] = (
    Incident("instance-cpu", "cpu", INSTANCE, "the CPU of one dyno's runtime instance degraded to 5 % of a core"),
    Incident("instance-loss", "loss", INSTANCE, "40 % packet loss between the router and one dyno's instance"),
    Incident("instance-latency", "latency", INSTANCE, "the answers of one dyno's instance delayed"),
    Incident("router-loss", "loss", ROUTER, "40 % packet loss at the router end serving the app"),
    Incident("crash-loop", "crash", RELEASE, "a release whose process exits shortly after it starts (CRASH_AFTER)"),
    Incident("wrong-port", "port", RELEASE, "a release that binds a hard-coded port instead of $PORT (R10)"),
    Incident("slow-endpoint", "slow", RELEASE, "a release whose every request outlasts the router's timeout (H12)"),
)
KINDS = tuple(sorted({i.kind for i in POOL}))
NAMES = tuple(i.name for i in POOL)


@dataclass(frozen=True)
class Chosen:
    incident: Incident
    dyno: str  # the sick dyno of an instance incident (the app's first web dyno otherwise)


def choose(seed: int, web_dynos: list[str]) -> Chosen:
    """The incident of ``seed``: the same seed gives the same incident and the same dyno."""
    rng = random.Random(seed)
    incident = rng.choice(POOL)
    dynos = sorted(web_dynos, key=lambda d: int(d.partition(".")[2] or 0))
    dyno = rng.choice(dynos) if incident.level == INSTANCE else dynos[0]
    return Chosen(incident, dyno)


def seed_for(name: str, start: int = 0) -> int:
    """The first seed from ``start`` on that draws the incident ``name`` (for tests and CI)."""
    for seed in range(start, start + 10_000):
        if choose(seed, ["web.1", "web.2"]).incident.name == name:
            return seed
    raise ValueError(name)


def inject(c: Chosen, app: str, router: str, timescale: float, p95_ms: float = 300.0) -> list[str]:
    """The labctl command (argv, without --lab) that makes the incident; ``p95_ms``: the healthy bar, which a
    latency must clear to be seen (and stay under the router's first-byte timeout)."""
    name = c.incident.name
    first_byte_ms = 30000.0 * timescale  # the router's 30 s first-byte timeout, scaled (heroku-reference §3.1)
    if name == "instance-cpu":
        return ["faults:add", "cpu", "--cpus", "0.05", "-d", c.dyno, "-a", app]
    if name == "instance-loss":
        return ["faults:add", "loss", "--percent", "40", "-d", c.dyno, "-a", app]
    if name == "instance-latency":
        ms = int(min(max(1000.0, 2 * p95_ms), 0.8 * first_byte_ms))
        return ["faults:add", "latency", "--ms", str(ms), "-d", c.dyno, "-a", app]
    if name == "router-loss":
        return ["faults:add", "loss", "--percent", "40", "--router", router]
    if name == "crash-loop":
        return ["config:set", "CRASH_AFTER=1", "-a", app]
    if name == "wrong-port":
        return ["config:set", "BIND_PORT=3999", "-a", app]
    if name == "slow-endpoint":
        return ["config:set", f"SLOW_MS={int(first_byte_ms * 2)}", "-a", app]
    raise ValueError(name)


def solution(c: Chosen, app: str, router: str, private_space: bool) -> list[str]:
    """The known remedy (argv, without --lab): what ``labctl drill --solve`` runs."""
    if c.incident.level == INSTANCE:
        return ["ps:stop" if private_space else "ps:restart", "-d", c.dyno, "-a", app]
    if c.incident.level == ROUTER:
        return ["faults:clear", "--router", router]
    return ["releases:rollback", "-a", app]


# -- the learner's commands ----------------------------------------------------------------------------------
_ALIASES = {
    "restart": "ps:restart",
    "dyno:restart": "ps:restart",
    "stop": "ps:stop",
    "kill": "ps:stop",
    "ps:kill": "ps:stop",
    "dyno:stop": "ps:stop",
    "dyno:kill": "ps:stop",
    "rollback": "releases:rollback",
    "scale": "ps:scale",
    "dyno:scale": "ps:scale",
}
_REMEDIES = {
    "ps:restart": "restart",
    "ps:stop": "stop",
    "releases:rollback": "rollback",
    "config:set": "config",
    "config:unset": "config",
    "deploy": "deploy",
    "ps:scale": "scale",
}
_VALUE_OPTS = {"-a", "--app", "--lab", "-d", "--dyno", "--dyno-name", "-p", "--process-type", "-r", "--router",
               "-i", "--instance", "--kind", "--size", "-s"}  # fmt: skip


def _opts(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    opts: dict[str, str] = {}
    pos: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a.startswith("-") and "=" in a:
            k, _, v = a.partition("=")
            opts[k] = v
        elif a in _VALUE_OPTS and i + 1 < len(argv):
            opts[a] = argv[i + 1]
            i += 1
        elif a.startswith("-"):
            opts[a] = ""
        else:
            pos.append(a)
        i += 1
    return opts, pos


def classify(argv: list[str]) -> dict[str, Any] | None:
    """The remedy a command line is, or None: ``{"remedy": "stop", "dyno": "web.1", "type": None, "app": …}``."""
    if not argv:
        return None
    cmd = _ALIASES.get(argv[0], argv[0])
    opts, pos = _opts(argv[1:])
    app = opts.get("-a") or opts.get("--app")
    if cmd in ("faults:clear", "faults:remove"):
        router = opts.get("-r") or opts.get("--router")
        if router:
            return {"remedy": "router-clear", "router": router, "command": cmd}
        return {"remedy": "fault-clear", "command": cmd}
    remedy = _REMEDIES.get(cmd)
    if remedy is None:
        return None
    out: dict[str, Any] = {"remedy": remedy, "command": cmd, "app": app}
    if remedy in ("restart", "stop"):
        dyno = opts.get("-d") or opts.get("--dyno-name")
        ptype = opts.get("-p") or opts.get("--process-type")
        if pos:
            dyno, ptype = (pos[0], None) if "." in pos[0] else (None, pos[0])
        out.update(dyno=dyno, type=ptype)
    return out


def _covers(remedy: dict[str, Any], dyno: str) -> bool:
    """A restart/stop that reaches ``dyno``: by name, by its type, or every dyno."""
    if remedy.get("dyno"):
        return bool(remedy["dyno"] == dyno)
    if remedy.get("type"):
        return bool(remedy["type"] == dyno.partition(".")[0])
    return True


_WHY_NOT = {
    ("instance", "restart"): "in a Private Space ps:restart keeps the dyno on its sick instance",
    ("instance", "fault-clear"): "faults:clear is the lab's hand, not a remedy the platform gives you",
    ("instance", "rollback"): "the cause is the instance, not the code: a new release runs on the same instances",
    ("instance", "config"): "the cause is the instance, not the code: a new release runs on the same instances",
    ("router", "restart"): "the trouble is at the router end: no dyno action reaches it",
    ("router", "stop"): "the trouble is at the router end: no dyno action reaches it",
    ("release", "restart"): "a restart runs the same release again: the cause stays (any relief is luck)",
    ("release", "stop"): "a stopped formation dyno comes back on the same release: the cause stays",
    ("release", "scale"): "more dynos of the same release do not remove the cause",
}


def judge_remedy(c: Chosen, remedy: dict[str, Any] | None, private_space: bool) -> dict[str, Any]:
    """Does the deciding remedy fit the incident? ``{"fits": bool, "why": str}``."""
    level = c.incident.level
    if remedy is None:
        return {"fits": False, "why": "no remedy was applied"}
    kind = remedy["remedy"]
    fits = c.incident.fits(private_space)
    if kind not in fits:
        why = _WHY_NOT.get((level, kind)) or f"{kind} does not address {c.incident.kind} at the {level} level"
        return {"fits": False, "why": why + f" (fits: {', '.join(fits)})"}
    if level == INSTANCE and kind in ("restart", "stop") and not _covers(remedy, c.dyno):
        return {"fits": False, "why": f"the {kind} did not reach the sick dyno"}
    return {"fits": True, "why": f"{kind} fits {c.incident.kind} at the {level} level"}


def judge_answer(c: Chosen, answer: dict[str, Any] | None, facts: dict[str, Any]) -> dict[str, Any]:
    """Is the learner's answer right? ``facts``: ``instance`` (the sick one), ``router``, ``release``, ``dynos``."""
    if answer is None:
        return {"correct": False, "why": "no answer was given"}
    level = c.incident.level
    if answer.get("kind") != c.incident.kind:
        return {"correct": False, "why": f"the kind was {c.incident.kind}, not {answer.get('kind')}"}
    if level == INSTANCE:
        ok = answer.get("dyno") == c.dyno or (answer.get("instance") and answer.get("instance") == facts["instance"])
        where = f"{c.dyno} (instance {facts['instance']})"
    elif level == ROUTER:
        ok = answer.get("router") == facts["router"]
        where = f"the {facts['router']} router"
    else:
        ok = (answer.get("dyno") in facts["dynos"]) or (answer.get("release") == facts["release"])
        where = f"release {facts['release']} (every web dyno)"
    if not ok:
        return {"correct": False, "why": f"the kind is right, the place is not: it was {where}"}
    return {"correct": True, "why": f"{c.incident.kind} at {where}"}


def deciding_remedy(
    commands: list[dict[str, Any]], injected_at: float, mitigated_at: float | None, slack: float
) -> dict[str, Any] | None:
    """The remedy that counts: the last one that succeeded after the injection and before the traffic got well
    (``mitigated_at`` + ``slack``: the window it is measured in); the last one at all if it never got well."""
    chosen = None
    for cmd in commands:
        if cmd["t"] < injected_at or cmd.get("code") != 0 or cmd.get("solve_inject"):
            continue
        if mitigated_at is not None and cmd["t"] > mitigated_at + slack:
            break
        remedy = classify(cmd["argv"])
        if remedy is not None:
            chosen = {**remedy, "t": cmd["t"], "line": "labctl " + " ".join(cmd["argv"])}
    return chosen
