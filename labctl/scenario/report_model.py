"""What the report's picture shows, worked out from ``result.json`` (pure: no matplotlib, no I/O).

Times are seconds since the run started, the clock of the steps, the timeline, the traffic records and the faults.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Any

from labctl.traffic import NONE, error_label, is_error, percentile

# instance colors: no red (red is a fault), no grey (grey is "no instance")
PALETTE = [
    "#4e79a7",
    "#f28e2b",
    "#59a14f",
    "#b07aa1",
    "#76b7b2",
    "#edc948",
    "#9c755f",
    "#a0cbe8",
    "#8cd17d",
    "#d4a6c8",
    "#86bcb6",
    "#f1ce63",
]
# dyno colors (latency lines, lane labels): darker, so that they do not read as instances
DYNO_COLORS = ["#1a1a1a", "#7b3294", "#00796b", "#c51b7d", "#1f5fa8", "#8c510a", "#4d9221", "#b35806"]
CHECK_KINDS = ("run", "expect", "wait_for", "fault", "task", "command")


@dataclass
class Span:
    """A stretch of time in which a dyno's instance, container and state did not change."""

    a: float
    b: float
    instance: str | None
    container: str | None
    state: str


@dataclass
class Action:
    """A vertical line: something the scenario did at ``t``."""

    t: float
    label: str
    kind: str  # run | fault | task | traffic | snapshot


def short_id(instance: str | None) -> str:
    return (instance or "")[:10]


def dyno_key(name: str) -> tuple[int, str, int]:
    if name == NONE:
        return (1, "", 0)
    kind, _, num = name.partition(".")
    return (0, kind, int(num) if num.isdigit() else 0)


def instance_colors(data: dict[str, Any]) -> dict[str, str]:
    """One color per instance id, in order of first appearance (timeline, snapshots, faults)."""
    seen: list[str] = []
    for sample in data.get("timeline") or []:
        seen += [d.get("instance") for d in sample["dynos"].values()]
    for snap in data.get("snapshots") or []:
        seen += [d.get("instance") for dynos in snap["dynos"].values() for d in dynos.values()]
    seen += [f.get("instance") for f in data.get("faults") or []]
    colors: dict[str, str] = {}
    for inst in seen:
        if inst and inst not in colors:
            colors[inst] = PALETTE[len(colors) % len(PALETTE)]
    return colors


def time_window(data: dict[str, Any]) -> tuple[float, float] | None:
    """The stretch of the run the picture shows: the steps, with a little room on both sides."""
    steps = [s for s in data.get("steps") or [] if s.get("start") is not None]
    samples = data.get("timeline") or []
    if not steps or not samples:
        return None
    starts = [steps[0]["start"]] + [s["start"] for s in data.get("traffic") or [] if s.get("start") is not None]
    ends = [s["end"] if s.get("end") is not None else s["start"] for s in steps]
    ends += [max(s["t"] for s in samples)]
    for stream in data.get("traffic") or []:
        ends += [r["t"] + (r.get("latency_ms") or 0) / 1000 for r in stream.get("records") or []]
    t_lo = max(0.0, min(starts) - 0.5)
    return t_lo, max(max(ends) + 0.3, t_lo + 1.0)


def lanes(data: dict[str, Any], t_lo: float) -> list[tuple[str, str]]:
    """(app, dyno) of every dyno the timeline saw in the window: apps in order of appearance, dynos in order."""
    samples = data.get("timeline") or []
    order: dict[str, int] = {}
    for s in samples:
        order.setdefault(s["app"], len(order))
    keys = {(s["app"], n) for s in samples if s["t"] >= t_lo - 5 for n in s["dynos"]}
    return sorted(keys, key=lambda k: (order[k[0]], dyno_key(k[1])))


def spans(data: dict[str, Any], app: str, dyno: str, t_lo: float, t_hi: float) -> list[Span]:
    """Samples ``[t_i, t_i+1)`` carrying the state seen at ``t_i``, merged while nothing changes."""
    samples = sorted((s for s in data.get("timeline") or [] if s["app"] == app), key=lambda s: s["t"])
    out: list[Span] = []
    for i, s in enumerate(samples):
        t_next = samples[i + 1]["t"] if i + 1 < len(samples) else t_hi
        d = s["dynos"].get(dyno)
        if d is None or t_next < t_lo or s["t"] > t_hi:
            continue
        key = (d.get("instance"), d.get("container"), d.get("state") or "")
        last = out[-1] if out else None
        if last and (last.instance, last.container, last.state) == key and abs(last.b - s["t"]) < 1e-6:
            last.b = t_next
        else:
            out.append(Span(max(s["t"], t_lo), min(t_next, t_hi), *key))
    return out


def container_marks(lane: list[Span]) -> list[tuple[float, float, str]]:
    """Where each container starts and the label it gets: its instance for the first one, then
    ``↻ same instance`` (a new container on the instance the previous one ran on) or ``→ new instance``."""
    runs: list[list[Any]] = []  # [a, b, instance, container]
    for s in lane:
        if not s.container:
            continue
        if runs and runs[-1][2:] == [s.instance, s.container]:
            runs[-1][1] = s.b
        else:
            runs.append([s.a, s.b, s.instance, s.container])
    marks = []
    for k, (a, b, inst, _c) in enumerate(runs):
        if k == 0:
            label = short_id(inst)
        elif runs[k - 1][2] == inst:
            label = "↻ same instance"
        else:
            label = f"→ new instance {short_id(inst)}"
        marks.append((a, b, label))
    return marks


def fault_overlays(
    data: dict[str, Any], lane_spans: dict[tuple[str, str], list[Span]], t_hi: float
) -> list[tuple[tuple[str, str], float, float, str]]:
    """(lane, a, b, label) for each stretch in which a dyno ran on an instance that had a fault, or behind a router
    end that had one (the dynos it lists, whatever instance they ran on)."""
    out = []
    for f in data.get("faults") or []:
        a, b = f["start"], f["end"] if f.get("end") is not None else t_hi
        router = f.get("router")
        label = f"{f.get('kind') or 'instance'} fault" + (f" (router {router})" if router else "")
        named = {tuple(d.split("/", 1)) for d in f.get("dynos") or [] if "/" in d}
        for lane, ss in lane_spans.items():
            if router:
                on = [(max(a, s.a), min(b, s.b)) for s in ss] if lane in named else []
            else:
                on = [(max(a, s.a), min(b, s.b)) for s in ss if s.instance and s.instance == f.get("instance")]
            on = [(x, y) for x, y in on if y > x]
            if not on and lane in named and not ss:
                on = [(a, b)]
            for x, y in _merge(on):
                out.append((lane, x, y, label))
    return out


def _merge(intervals: list[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[list[float]] = []
    for a, b in sorted(intervals):
        if out and a <= out[-1][1] + 1e-6:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def short_command(command: str) -> str:
    """``ps:restart web.1`` for ``labctl ps:restart web.1 -a demo``: the app and the lab are the scenario's."""
    try:
        words = shlex.split(command)
    except ValueError:
        return command
    words = words[1:] if words[:1] == ["labctl"] else words
    out: list[str] = []
    skip = False
    for w in words:
        if skip:
            skip = False
        elif w in ("-a", "--app", "--lab"):
            skip = True
        elif w != "--dyno":
            out.append(w)
    return " ".join(out)


def actions(data: dict[str, Any]) -> list[Action]:
    """The vertical lines: commands run, faults added or cleared, tasks, traffic streams, snapshots."""
    out: list[Action] = []
    for s in data.get("steps") or []:
        if s.get("start") is None:
            continue
        if s["kind"] in ("run", "fault"):
            out.append(Action(s["start"], short_command(s.get("command") or s["description"]), s["kind"]))
        elif s["kind"] == "task":
            out.append(Action(s["start"], _task_label(s), "task"))
        elif s["kind"] == "snapshot":
            out.append(Action(s["start"], s.get("snapshot") or "", "snapshot"))
    for stream in data.get("traffic") or []:
        if stream.get("start") is not None:
            out.append(Action(stream["start"], f"▶ traffic {stream['name']} {stream.get('rps', 0):g} rps", "traffic"))
        if stream.get("end") is not None:
            out.append(Action(stream["end"], f"■ traffic {stream['name']}", "traffic"))
    return sorted(out, key=lambda a: a.t)


def _task_label(step: dict[str, Any]) -> str:
    if step.get("graded_by") in (None, "solution") and step.get("solution"):
        return f"task: {short_command(step['solution'])}"
    return f"task ({step.get('graded_by') or 'learner'})"


# -- traffic -----------------------------------------------------------------------------------------


def records(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Every stream's records; ``dyno`` prefixed with the app when the streams go to more than one app."""
    streams = data.get("traffic") or []
    several = len({s.get("app") for s in streams}) > 1
    out = []
    for s in streams:
        for r in s.get("records") or []:
            dyno = r.get("dyno") or NONE
            out.append({**r, "dyno": f"{s.get('app')} {dyno}" if several else dyno})
    return out


def bin_width(span: float) -> float:
    return next((w for w in (0.25, 0.5, 1, 2, 5, 10, 30, 60) if span / w <= 60), 120)


def release_bins(recs: list[dict[str, Any]], w: float) -> dict[str, dict[int, float]]:
    """Per release (``v1``, ``v2`` …, oldest first): its share of the answers of each ``w``-second bin."""
    counts: dict[int, dict[str, int]] = {}
    for r in recs:
        if r.get("release"):
            per = counts.setdefault(int(r["t"] // w), {})
            per[r["release"]] = per.get(r["release"], 0) + 1
    releases = sorted({rel for per in counts.values() for rel in per}, key=_version)
    return {rel: {k: per.get(rel, 0) / sum(per.values()) for k, per in sorted(counts.items())} for rel in releases}


def _version(release: str) -> tuple[int, str]:
    digits = release.lstrip("v")
    return (int(digits), release) if digits.isdigit() else (1 << 30, release)


def latency_bins(recs: list[dict[str, Any]], w: float) -> dict[str, list[tuple[float, float, float]]]:
    """Per dyno: (bin middle, p50, p95) of the latencies of each ``w``-second bin that has requests."""
    groups: dict[str, dict[int, list[float]]] = {}
    for r in recs:
        if r.get("latency_ms") is not None:
            groups.setdefault(r["dyno"], {}).setdefault(int(r["t"] // w), []).append(r["latency_ms"])
    out = {}
    for dyno in sorted(groups, key=dyno_key):
        out[dyno] = [
            ((k + 0.5) * w, percentile(v, 50) or 0.0, percentile(v, 95) or 0.0) for k, v in sorted(groups[dyno].items())
        ]
    return out


def error_bins(recs: list[dict[str, Any]], w: float) -> dict[str, dict[int, int]]:
    """Per error label (``503 H12``, ``timeout``): bin index → count."""
    out: dict[str, dict[int, int]] = {}
    for r in recs:
        if is_error(r):
            b = out.setdefault(error_label(r), {})
            b[int(r["t"] // w)] = b.get(int(r["t"] // w), 0) + 1
    return dict(sorted(out.items(), key=lambda kv: -sum(kv[1].values())))


def close_groups(items: list[tuple[str, float]], ratio: float = 1.35) -> list[tuple[list[str], float]]:
    """Dynos whose latencies are within ``ratio`` of each other share one label: ``web.1, web.2 55 ms``."""
    groups: list[tuple[list[str], list[float]]] = []
    for dyno, v in sorted(items, key=lambda it: it[1]):
        if groups and v <= groups[-1][1][0] * ratio:
            groups[-1][0].append(dyno)
            groups[-1][1].append(v)
        else:
            groups.append(([dyno], [v]))
    return [(sorted(names, key=dyno_key), percentile(vs, 50) or 0.0) for names, vs in groups]


def segment_medians(
    recs: list[dict[str, Any]], cuts: list[float], t_lo: float, t_hi: float
) -> list[tuple[str, float, float, float, int]]:
    """(dyno, a, b, p50, n) between consecutive actions, for the numbers written on the latency panel."""
    edges = [t_lo] + sorted(c for c in cuts if t_lo < c < t_hi) + [t_hi]
    out = []
    for a, b in zip(edges, edges[1:], strict=False):
        groups: dict[str, list[float]] = {}
        for r in recs:
            if a <= r["t"] < b and r.get("latency_ms") is not None and r["dyno"] != NONE:
                groups.setdefault(r["dyno"], []).append(r["latency_ms"])
        for dyno, lat in groups.items():
            out.append((dyno, a, b, percentile(lat, 50) or 0.0, len(lat)))
    return out
