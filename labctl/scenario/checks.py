"""Traffic and command conditions of a scenario (docs/scenarios.md): their YAML form and their pure evaluation.

A traffic condition looks at the requests of a named stream (``labctl.traffic`` records), narrowed to a window
of time, a dyno or a runtime instance, and compares figures with thresholds written ``"OP VALUE"``:
``requests: ">= 20"``, ``error_rate: "<= 1%"``, ``p95: "< 300ms"``, ``codes: {H12: ">= 1"}``,
``releases: [v3]``. An error is a 5xx or no answer at all (``labctl.traffic.is_error``).
"""

from __future__ import annotations

import operator
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml

from labctl.scenario.yamldoc import Doc, Duration, node_kind

OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "==": operator.eq,
    "<": operator.lt,
    ">": operator.gt,
}
LATENCY_KEYS = ("p50", "p90", "p95", "p99", "max")
TRAFFIC_KEYS = ("stream", "dyno", "instance", "window", "requests", "error_rate", *LATENCY_KEYS, "releases", "codes")
WINDOW_EDGES = ("start", "end")
_CMP_RE = re.compile(r"^\s*(<=|>=|==|<|>)?\s*(\d+(?:\.\d+)?)\s*(%|ms|s)?\s*$")
_CODE_RE = re.compile(r"^H\d\d$")
_RELEASE_RE = re.compile(r"^v\d+$")
_STREAM_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass
class Comparison:
    op: str
    value: float  # requests: a count; error_rate: a fraction; latencies: milliseconds
    text: str

    def holds(self, measured: float | None) -> bool:
        return measured is not None and OPS[self.op](measured, self.value)


@dataclass
class Window:
    start: str = "start"  # a snapshot name, or "start" (the stream's start)
    end: str = "end"  # a snapshot name, or "end" (the stream's end: an expect waits for it)
    last: Duration | None = None  # or: the last N seconds before the check

    def describe(self) -> str:
        if self.last is not None:
            return f"last {self.last.text}"
        return f"{self.start}→{self.end}"


@dataclass
class TrafficCheck:
    stream: str
    dyno: str | None = None
    instance_of: tuple[str, str] | None = None  # (dyno, snapshot): the instance that dyno had at that snapshot
    window: Window = field(default_factory=Window)
    limits: dict[str, Comparison] = field(default_factory=dict)  # requests, error_rate, p50, p95, p99, max
    releases: list[str] | None = None
    codes: dict[str, Comparison] = field(default_factory=dict)

    def describe(self) -> str:
        who = [self.stream]
        if self.dyno:
            who.append(self.dyno)
        if self.instance_of:
            who.append(f"on {self.instance_of[0]}@{self.instance_of[1]}'s instance")
        if self.window != Window():
            who.append(self.window.describe())
        want = [f"{k} {c.text}" for k, c in self.limits.items()]
        if self.releases is not None:
            want.append("releases " + ",".join(self.releases))
        want += [f"{code} {c.text}" for code, c in self.codes.items()]
        return f"traffic {' '.join(who)}: {', '.join(want)}"


@dataclass
class CommandCheck:
    command: str
    argv: list[str]
    exit: int | None = 0
    output: str | None = None

    def describe(self) -> str:
        want = [f"exit {self.exit}"] if self.exit is not None else []
        if self.output is not None:
            want.append(f"output has {self.output!r}")
        return f"`labctl {self.command}` {', '.join(want)}"


# -- parsing --------------------------------------------------------------------------------------------------
def comparison(doc: Doc, node: yaml.Node, path: str, unit: str) -> Comparison:
    """``"<= 1%"``, ``">= 20"``, ``"< 300ms"``, or a bare number (``0``) meaning ``==``; ``unit`` is
    ``count``, ``rate`` or ``ms``."""
    example = {"count": "'>= 20'", "rate": "'<= 1%' or '< 0.05'", "ms": "'< 300ms' or '<= 1.5s'"}[unit]
    if not isinstance(node, yaml.ScalarNode) or node.tag not in (
        "tag:yaml.org,2002:str",
        "tag:yaml.org,2002:int",
        "tag:yaml.org,2002:float",
    ):
        doc.fail(node, path, f"expected a comparison like {example}, got {node_kind(node)}")
    m = _CMP_RE.match(node.value)
    if not m:
        doc.fail(node, path, f"{node.value!r} is not a comparison (use e.g. {example})")
    op, number, suffix = m.group(1) or "==", float(m.group(2)), m.group(3)
    if unit == "count":
        if suffix or number != int(number):
            doc.fail(node, path, f"{node.value!r}: a number of requests is a whole number (e.g. '>= 20')")
        value = number
    elif unit == "rate":
        if suffix not in (None, "%"):
            doc.fail(node, path, f"{node.value!r}: a rate is a fraction or a percentage (e.g. '<= 1%')")
        value = number / 100 if suffix == "%" else number
        if value > 1:
            doc.fail(node, path, f"{node.value!r}: a rate is at most 1 (100%)")
    else:
        if suffix not in ("ms", "s"):
            doc.fail(node, path, f"{node.value!r}: a latency needs a unit (e.g. '< 300ms', '<= 1.5s')")
        value = number * (1000.0 if suffix == "s" else 1.0)
    return Comparison(op, value, f"{op} {m.group(2)}{suffix or ''}")


def traffic_check(
    doc: Doc,
    node: yaml.Node,
    path: str,
    streams: dict[str, str],
    snapshots: list[str],
    dyno_of: Callable[[yaml.Node, str, str], str],
) -> TrafficCheck:
    m = doc.mapping(node, path, TRAFFIC_KEYS, ("stream",), what=" (stream, window, thresholds)")
    sn = m["stream"][1]
    name = doc.string(sn, f"{path}.stream", _STREAM_RE, "letters, digits, '-', '_' and '.'")
    if name not in streams:
        known = ", ".join(streams) or "none yet"
        doc.fail(sn, f"{path}.stream", f"no traffic stream {name!r} is started before this step (streams: {known})")
    tc = TrafficCheck(name)

    def snap(vn: yaml.Node, sub: str, edges: tuple[str, ...] = ()) -> str:
        ref = doc.string(vn, sub)
        if ref not in snapshots and ref not in edges:
            known = ", ".join([*edges, *snapshots])
            doc.fail(
                vn,
                sub,
                f"{ref!r} is neither {' nor '.join(edges) + ' nor ' if edges else ''}a snapshot taken "
                f"before this step ({known})",
            )
        return ref

    if "dyno" in m:
        tc.dyno = dyno_of(m["dyno"][1], f"{path}.dyno", streams[name])
    if "instance" in m:
        im = doc.mapping(
            m["instance"][1],
            f"{path}.instance",
            ("dyno", "at"),
            ("dyno", "at"),
            what=" like {dyno: web.1, at: SNAPSHOT}",
        )
        dyno = dyno_of(im["dyno"][1], f"{path}.instance.dyno", streams[name])
        tc.instance_of = (dyno, snap(im["at"][1], f"{path}.instance.at"))
    if "window" in m:
        wm = doc.mapping(
            m["window"][1],
            f"{path}.window",
            ("from", "to", "last"),
            what=" like {from: SNAPSHOT, to: end} or {last: 5s}",
        )
        if "last" in wm and len(wm) > 1:
            doc.fail(m["window"][1], f"{path}.window", "give {last: DURATION} alone, or from/to")
        if not wm:
            doc.fail(m["window"][1], f"{path}.window", "give from/to or last")
        if "last" in wm:
            tc.window = Window(last=doc.duration(wm["last"][1], f"{path}.window.last"))
        else:
            tc.window = Window(
                snap(wm["from"][1], f"{path}.window.from", ("start",)) if "from" in wm else "start",
                snap(wm["to"][1], f"{path}.window.to", ("end",)) if "to" in wm else "end",
            )
    units = {"requests": "count", "error_rate": "rate", **{k: "ms" for k in LATENCY_KEYS}}
    for key, unit in units.items():
        if key in m:
            tc.limits[key] = comparison(doc, m[key][1], f"{path}.{key}", unit)
    if "releases" in m:
        tc.releases = [
            doc.string(rn, f"{path}.releases[{j}]", _RELEASE_RE, "a release like v3")
            for j, rn in enumerate(doc.sequence(m["releases"][1], f"{path}.releases"), 1)
        ]
    if "codes" in m:
        cn = m["codes"][1]
        if not isinstance(cn, yaml.MappingNode) or not cn.value:
            doc.fail(
                cn,
                f"{path}.codes",
                f"expected a mapping of router codes to counts like {{H12: '>= 1'}}, got {node_kind(cn)}",
            )
        for kn, vn in cn.value:
            code = doc.string(kn, f"{path}.codes", _CODE_RE, "a router error code like H12")
            tc.codes[code] = comparison(doc, vn, f"{path}.codes.{code}", "count")
    if not tc.limits and tc.releases is None and not tc.codes:
        doc.fail(node, path, "nothing to check: give requests, error_rate, p50, p95, p99, max, releases or codes")
    return tc


def command_check(
    doc: Doc,
    node: yaml.Node,
    path: str,
    validate: Callable[[yaml.Node, str, str], list[str]],
    exit_node: yaml.Node | None,
    output_node: yaml.Node | None,
) -> CommandCheck:
    text = doc.string(node, path)
    argv = validate(node, path, text)
    cc = CommandCheck(text[len("labctl") :].strip() if text.strip().startswith("labctl ") else text.strip(), argv)
    if exit_node is not None:
        cc.exit = doc.integer(exit_node, path.rsplit(".", 1)[0] + ".exit", 0, 255)
    if output_node is not None:
        cc.output = doc.string(output_node, path.rsplit(".", 1)[0] + ".output")
    return cc


# -- evaluation (pure) ----------------------------------------------------------------------------------------
def select(
    records: list[dict[str, Any]], tc: TrafficCheck, t_from: float, t_to: float, instance: str | None
) -> list[dict[str, Any]]:
    """The records of the window ``[t_from, t_to]`` (run seconds, ``rec["t"]``), of the dyno and instance asked."""
    out = []
    for r in records:
        if not t_from <= r["t"] <= t_to:
            continue
        if tc.dyno is not None and r.get("dyno") != tc.dyno:
            continue
        if tc.instance_of is not None and (instance is None or r.get("instance") != instance):
            continue
        out.append(r)
    return out


def evaluate(tc: TrafficCheck, records: list[dict[str, Any]]) -> list[tuple[str, bool, str, str]]:
    """``(name, held, measured, expected)`` for each threshold of ``tc`` over the (already selected) records."""
    from labctl.traffic import stats

    s = stats(records)
    out: list[tuple[str, bool, str, str]] = []
    for key, cmp in tc.limits.items():
        value: float | None
        if key == "requests":
            value, shown = float(s["count"]), f"{s['count']} requests"
        elif key == "error_rate":
            value = s["error_rate"] if s["count"] else None
            kinds = ", ".join(f"{n}x {k}" for k, n in s["error_kinds"].items())
            shown = (
                (f"error rate {100 * s['error_rate']:.1f}% ({s['errors']}/{s['count']}{': ' + kinds if kinds else ''})")
                if s["count"]
                else "no requests in the window"
            )
        else:
            value = s.get(key)
            if key == "p90":
                from labctl.traffic import percentile

                value = percentile([r["latency_ms"] for r in records if r.get("latency_ms") is not None], 90)
            shown = f"{key} {value:g}ms of {s['count']} requests" if value is not None else "no requests in the window"
        expected = f"{key} {cmp.text}"
        out.append((key, cmp.holds(value), shown, expected))
    if tc.releases is not None:
        seen = sorted(s["releases"], key=lambda v: int(v[1:]) if v[1:].isdigit() else 0)
        shown = ", ".join(f"{v} x{s['releases'][v]}" for v in seen) or "no release answered"
        out.append(
            ("releases", set(seen) == set(tc.releases), f"served by {shown}", "served by " + ", ".join(tc.releases))
        )
    for code, cmp in tc.codes.items():
        n = s["codes"].get(code, 0)
        out.append((code, cmp.holds(float(n)), f"{n}x {code}", f"{code} count {cmp.text}"))
    return out


def split_command(doc: Doc, node: yaml.Node, path: str, text: str) -> list[str]:
    try:
        argv = shlex.split(text)
    except ValueError as err:
        doc.fail(node, path, f"cannot split {text!r}: {err}")
    if argv and argv[0] == "labctl":
        argv = argv[1:]
    if not argv:
        doc.fail(node, path, "an empty command")
    return argv
