"""What a scenario run shows: the live step table, the final line, ``result.json`` and ``report.html``.

The HTML report is self-contained (inline CSS and SVG, no script, nothing fetched) and is rendered from the same
dictionary that ``result.json`` holds, so a report can be rebuilt from a result file.
"""

from __future__ import annotations

import html
import json
import time
from pathlib import Path
from typing import Any

from labctl.scenario.loader import Scenario
from labctl.scenario.runner import RunResult, StepResult

# -- text -------------------------------------------------------------------------------------------

_RESULT_WORD = {"pass": "PASS", "fail": "FAIL", "error": "ERROR", "done": "ok", "skipped": "skipped"}
_DESC_MAX = 64


def default_report_dir(scenario: Scenario) -> Path:
    return Path("reports") / f"{scenario.name}-{time.strftime('%Y%m%d-%H%M%S')}"


def _desc_width(scenario: Scenario) -> int:
    return min(_DESC_MAX, max([len("description"), *(len(s.describe()) for s in scenario.steps)]))


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def table_header(scenario: Scenario) -> str:
    w = _desc_width(scenario)
    head = f"{'#':>3}  {'kind':<9} {'description':<{w}}  {'result':<7} measured"
    return head + "\n" + "-" * (len(head) + 30)


def table_row(scenario: Scenario, r: StepResult) -> str:
    w = _desc_width(scenario)
    measured = r.measured or r.message
    if r.status in ("fail", "error") and r.message and r.message not in measured:
        measured = f"{measured} -- {r.message}" if measured else r.message
    return (f"{r.step.number:>3}  {r.step.kind:<9} {_clip(r.step.describe(), w):<{w}}  "
            f"{_RESULT_WORD.get(r.status, r.status):<7} {_clip(measured, 160)}")


def final_line(result: RunResult, report_html: Path | None) -> str:
    sc = result.scenario
    counts = f"({result.held}/{result.total} expectations held)"
    where = f" — report: {report_html}" if report_html else ""
    if result.status == "pass":
        return f"PASS: {sc.name} {counts}{where}"
    first = result.first_failure
    if result.status == "interrupted":
        why = "interrupted"
    elif first is not None:
        why = first.failure()
    else:
        why = result.message or "failed"
    return f"FAIL: {sc.name} {counts} — {why}{where}"


# -- files ------------------------------------------------------------------------------------------


def write(result: RunResult, directory: Path) -> Path:
    """Write ``result.json`` and ``report.html`` into ``directory``; return the HTML file's path."""
    directory.mkdir(parents=True, exist_ok=True)
    data = result.to_json()
    (directory / "result.json").write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    page = directory / "report.html"
    page.write_text(render_html(data), encoding="utf-8")
    return page


# -- HTML -------------------------------------------------------------------------------------------

PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#b07aa1", "#76b7b2", "#edc948", "#9c755f", "#ff9da7",
           "#8cd17d", "#a0cbe8", "#d37295"]
_STATUS_COLORS = {"pass": "#2e7d32", "fail": "#c62828", "error": "#c62828", "done": "#555", "skipped": "#999",
                  "interrupted": "#c62828"}


def _e(x: Any) -> str:
    return html.escape("" if x is None else str(x))


def _dyno_key(name: str) -> tuple[str, int]:
    kind, _, num = name.partition(".")
    return kind, int(num) if num.isdigit() else 0


def instance_colors(data: dict[str, Any]) -> dict[str, str]:
    """One color per instance id, in order of first appearance (snapshots and timeline)."""
    colors: dict[str, str] = {}
    for sample in data.get("timeline", []):
        for d in sample["dynos"].values():
            inst = d.get("instance")
            if inst and inst not in colors:
                colors[inst] = PALETTE[len(colors) % len(PALETTE)]
    for snap in data.get("snapshots", []):
        for dynos in snap["dynos"].values():
            for d in dynos.values():
                inst = d.get("instance")
                if inst and inst not in colors:
                    colors[inst] = PALETTE[len(colors) % len(PALETTE)]
    return colors


def render_html(data: dict[str, Any]) -> str:
    colors = instance_colors(data)
    status = data["status"]
    verdict = "PASS" if status == "pass" else ("INTERRUPTED" if status == "interrupted" else "FAIL")
    exp = data["expectations"]
    rows = []
    for s in data["steps"]:
        color = _STATUS_COLORS.get(s["status"], "#333")
        t = "" if s["start"] is None else f"{s['start']:.1f}–{s['end']:.1f}s" if s["end"] is not None else ""
        message = s["message"]
        if s.get("output") and s["kind"] == "run":
            message = (message + "\n" if message else "") + s["output"].strip()[-600:]
        rows.append(
            f"<tr><td class=n>{s['number']}</td><td>{_e(s['kind'])}</td><td class=mono>{_e(s['description'])}</td>"
            f"<td class=n>{_e(t)}</td><td><b style='color:{color}'>{_e(s['status'])}</b></td>"
            f"<td class=mono>{_e(s['measured'])}</td><td class=mono>{_e(s['expected'])}</td>"
            f"<td class=pre>{_e(message)}</td></tr>")
    setup = data.get("setup") or {}
    teardown = data.get("teardown") or {}
    first = data.get("first_failure")
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f"<title>{_e(verdict)}: {_e(data['scenario'])} — labctl scenario</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1><span class='verdict {status}'>{_e(verdict)}</span> {_e(data['scenario'])}</h1>",
        f"<p class=desc>{_e(data['description'])}</p>",
        "<table class=meta>",
        f"<tr><th>expectations held</th><td>{exp['held']}/{exp['total']}</td></tr>",
        f"<tr><th>file</th><td class=mono>{_e(data['file'])}</td></tr>",
        f"<tr><th>lab</th><td class=mono>{_e(data['lab'])} (time scale {_e(data['timescale'])}, "
        f"router port {_e(data.get('router_port'))})</td></tr>",
        f"<tr><th>started</th><td>{_e(data['started_at'])} ({_e(data['duration_s'])} s in all)</td></tr>",
        f"<tr><th>setup</th><td>{_e(setup.get('status'))} {_e(setup.get('message', ''))}"
        f"<div class=mono>{'<br>'.join(_e(c) for c in setup.get('commands', []))}</div></td></tr>",
        f"<tr><th>teardown</th><td>{_e(teardown.get('status'))} {_e(teardown.get('message', ''))}</td></tr>",
    ]
    if first and status != "pass":
        parts.append(f"<tr><th>first failure</th><td class='mono bad'>{_e(first)}</td></tr>")
    parts += [
        "</table>",
        "<h2>Timeline: which instance each dyno ran on</h2>",
        "<p class=hint>One row per dyno; the color is the runtime instance it ran on. ↻ marks a new container on "
        "the same instance; → and a change of color, a new instance. "
        "Solid: up; pale: starting; dashed outline: no container (the old one stopping, the new one not yet "
        "created); hatched: down or crashed; empty: no such dyno. Dashed lines: the commands run; "
        "grey dotted lines: snapshots; bottom lane: checks (✓ held, ✗ failed; a bar is the wait).</p>",
        svg_timeline(data, colors),
        "<h2>Steps</h2>",
        "<table class=steps><tr><th>#</th><th>kind</th><th>description</th><th>time</th><th>result</th>"
        "<th>measured</th><th>expected</th><th>message / output</th></tr>",
        *rows,
        "</table>",
        _snapshots_html(data, colors),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _snapshots_html(data: dict[str, Any], colors: dict[str, str]) -> str:
    snaps = data.get("snapshots") or []
    if not snaps:
        return ""
    keys = sorted({(app, n) for s in snaps for app, ds in s["dynos"].items() for n in ds},
                  key=lambda k: (k[0], _dyno_key(k[1])))
    head = "".join(f"<th>{_e(s['name'])}<br><small>step {s['step']}, {s['t']:.1f}s</small></th>" for s in snaps)
    rows = []
    for app, n in keys:
        cells = []
        for s in snaps:
            d = s["dynos"].get(app, {}).get(n)
            if not d:
                cells.append("<td>—</td>")
                continue
            sw = f"<span class=sw style='background:{colors.get(d['instance'], '#ccc')}'></span>"
            cells.append(f"<td class=mono>{sw}{_e(d['instance'])}<br><small>{_e(d['state'])}, container "
                         f"{_e((d.get('container') or '')[:12])}</small></td>")
        rows.append(f"<tr><th class=mono>{_e(app)} {_e(n)}</th>{''.join(cells)}</tr>")
    return ("<h2>Snapshots</h2><table class=snaps><tr><th>dyno</th>" + head + "</tr>" + "".join(rows)
            + "</table>")


# -- the SVG timeline -------------------------------------------------------------------------------

_W = 1160  # whole picture
_LEFT = 150  # row labels
_RIGHT = 24
_ROW_H = 34
_BAR_H = 24
_LABEL_H = 15


def _nice_step(span: float) -> float:
    for step in (0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600):
        if span / step <= 14:
            return step
    return 1200


def svg_timeline(data: dict[str, Any], colors: dict[str, str] | None = None) -> str:
    colors = colors if colors is not None else instance_colors(data)
    steps = [s for s in data["steps"] if s["start"] is not None]
    samples = sorted(data.get("timeline") or [], key=lambda s: s["t"])
    if not steps or not samples:
        return "<p class=hint>(no timeline: the steps did not run)</p>"
    t_lo = max(0.0, steps[0]["start"] - 0.5)
    t_hi = max([s["end"] or s["start"] for s in steps] + [samples[-1]["t"]]) + 0.3
    t_hi = max(t_hi, t_lo + 1.0)
    plot_w = _W - _LEFT - _RIGHT

    def x(t: float) -> float:
        return _LEFT + (min(max(t, t_lo), t_hi) - t_lo) / (t_hi - t_lo) * plot_w

    # rows: every dyno seen in the window, apps in setup order
    app_order: dict[str, int] = {}
    for s in samples:
        app_order.setdefault(s["app"], len(app_order))
    per_app: dict[str, list[dict[str, Any]]] = {}
    for s in samples:
        per_app.setdefault(s["app"], []).append(s)
    keys = sorted({(s["app"], n) for s in samples if s["t"] >= t_lo - 5 for n in s["dynos"]},
                  key=lambda k: (app_order[k[0]], _dyno_key(k[1])))

    # action labels above the plot, staggered so that they do not overlap
    runs = [s for s in steps if s["kind"] == "run"]
    levels: list[float] = []
    placed = []
    for s in runs:
        label = _clip(s.get("command") or s["description"], 46)
        lx = x(s["start"])
        width = 6.6 * len(label) + 10
        lvl = next((i for i, end in enumerate(levels) if end < lx), None)
        if lvl is None:
            levels.append(0.0)
            lvl = len(levels) - 1
        levels[lvl] = lx + width
        placed.append((s, label, lx, lvl))
    top = 12 + max(1, len(levels)) * _LABEL_H + 6
    rows_h = len(keys) * _ROW_H
    checks_y = top + rows_h + 8
    axis_y = checks_y + _ROW_H + 4
    height = axis_y + 44
    out = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{_W}' height='{height}' viewBox='0 0 {_W} {height}' "
           "font-family='DejaVu Sans, Helvetica, Arial, sans-serif' font-size='12' class=timeline>",
           "<defs><pattern id='hatch' width='6' height='6' patternUnits='userSpaceOnUse' "
           "patternTransform='rotate(45)'><rect width='6' height='6' fill='#eee'/>"
           "<line x1='0' y1='0' x2='0' y2='6' stroke='#999' stroke-width='2'/></pattern></defs>",
           f"<rect x='0' y='0' width='{_W}' height='{height}' fill='white'/>"]

    # grid and axis
    setup_end = (data.get("setup") or {}).get("end")
    setup_note = f" (lab up and setup done at {setup_end:.1f}s)" if setup_end else ""
    step = _nice_step(t_hi - t_lo)
    tick = (int(t_lo / step) + 1) * step if t_lo % step else t_lo
    for _ in range(100):
        if tick > t_hi:
            break
        tx = x(tick)
        out.append(f"<line x1='{tx:.1f}' y1='{top - 4}' x2='{tx:.1f}' y2='{axis_y}' stroke='#eee'/>")
        out.append(f"<text x='{tx:.1f}' y='{axis_y + 14}' text-anchor='middle' fill='#555'>{tick:g}s</text>")
        tick += step
    out.append(f"<line x1='{_LEFT}' y1='{axis_y}' x2='{_W - _RIGHT}' y2='{axis_y}' stroke='#888'/>")
    out.append(f"<text x='{_LEFT + plot_w / 2:.0f}' y='{axis_y + 32}' text-anchor='middle' fill='#555'>"
               f"seconds since the run started{setup_note}</text>")

    # one row per dyno
    for i, (app, name) in enumerate(keys):
        y = top + i * _ROW_H
        if i % 2 == 0:
            out.append(f"<rect x='{_LEFT}' y='{y}' width='{plot_w}' height='{_ROW_H}' fill='#fafafa'/>")
        out.append(f"<text x='{_LEFT - 8}' y='{y + _ROW_H / 2 + 4:.1f}' text-anchor='end' fill='#222'>"
                   f"{_e(app)} <tspan font-weight='bold'>{_e(name)}</tspan></text>")
        out += _row_bars(per_app.get(app, []), name, y + (_ROW_H - _BAR_H) / 2, t_lo, t_hi, x, colors)

    # checks lane
    out.append(f"<text x='{_LEFT - 8}' y='{checks_y + _ROW_H / 2 + 4:.1f}' text-anchor='end' fill='#222'>"
               "checks</text>")
    cy = checks_y + _ROW_H / 2
    for s in steps:
        if s["kind"] not in ("run", "expect", "wait_for"):
            continue
        ok = s["status"] == "pass"
        color = "#2e7d32" if ok else "#c62828"
        end = s["end"] if s["end"] is not None else s["start"]
        title = _e(f"step {s['number']} {s['kind']}: {s['description']} — {s['status']}: {s['measured']}")
        if s["kind"] == "wait_for":
            out.append(f"<line x1='{x(s['start']):.1f}' y1='{cy}' x2='{x(end):.1f}' y2='{cy}' stroke='{color}' "
                       f"stroke-width='4' stroke-opacity='0.35'><title>{title}</title></line>")
        out.append(f"<g><title>{title}</title><circle cx='{x(end):.1f}' cy='{cy}' r='7' fill='{color}'/>"
                   f"<text x='{x(end):.1f}' y='{cy + 4}' text-anchor='middle' fill='white' font-size='10' "
                   f"font-weight='bold'>{'✓' if ok else '✗'}</text></g>")

    # snapshots: grey dotted lines
    for s in steps:
        if s["kind"] == "snapshot":
            sx = x(s["start"])
            out.append(f"<line x1='{sx:.1f}' y1='{top}' x2='{sx:.1f}' y2='{checks_y}' stroke='#777' "
                       "stroke-dasharray='2,3'/>")
            out.append(f"<text x='{sx + 3:.1f}' y='{checks_y + 10}' fill='#666' font-size='10'>"
                       f"◉ {_e(s.get('snapshot') or '')}</text>")

    # actions: dashed lines with the command on top
    for s, label, lx, lvl in placed:
        ly = 12 + lvl * _LABEL_H + 10
        out.append(f"<line x1='{lx:.1f}' y1='{ly + 3}' x2='{lx:.1f}' y2='{checks_y + _ROW_H}' stroke='#222' "
                   "stroke-width='1.3' stroke-dasharray='5,3'/>")
        out.append(f"<text x='{lx + 3:.1f}' y='{ly}' fill='#111' font-family='DejaVu Sans Mono, monospace' "
                   f"font-size='11'>{_e(label)}<title>{_e(s['description'])}</title></text>")

    # legend: one swatch per instance
    out.append("</svg>")
    legend = "".join(f"<span class=lg><span class=sw style='background:{c}'></span>{_e(i)}</span>"
                     for i, c in colors.items())
    return "<div class=tl>" + "".join(out) + f"<div class=legend>instances: {legend}</div></div>"


def _row_bars(samples: list[dict[str, Any]], name: str, y: float, t_lo: float, t_hi: float, x: Any,
              colors: dict[str, str]) -> list[str]:
    # intervals [t_i, t_i+1) carrying the state seen at t_i, merged while nothing changes
    spans: list[list[Any]] = []  # [t_start, t_end, instance, container, state]
    for i, s in enumerate(samples):
        t_next = samples[i + 1]["t"] if i + 1 < len(samples) else t_hi
        if t_next < t_lo or s["t"] > t_hi:
            continue
        d = s["dynos"].get(name)
        if d is None:
            continue
        key = (d["instance"], d["container"], d["state"])
        if spans and tuple(spans[-1][2:]) == key and abs(spans[-1][1] - s["t"]) < 1e-6:
            spans[-1][1] = t_next
        else:
            spans.append([s["t"], t_next, *key])
    out = []
    for j, (a, b, inst, container, state) in enumerate(spans):
        xa, xb = x(a), x(b)
        if xb - xa < 0.5:
            continue
        color = colors.get(inst, "#bbb")
        title = _e(f"{name} on {inst}, container {container}, {state}: {a:.1f}–{b:.1f}s")
        dash = ""
        if state in ("down", "crashed"):
            fill, opacity = "url(#hatch)", "1"
        elif not container:  # between two containers: the old one stopping, the new one not created yet
            fill, opacity, dash = "white", "1", " stroke-dasharray='4,2' stroke-width='1.5'"
        elif state == "up":
            fill, opacity = color, "1"
        else:  # starting
            fill, opacity = color, "0.4"
        out.append(f"<rect x='{xa:.1f}' y='{y:.1f}' width='{xb - xa:.1f}' height='{_BAR_H}' fill='{fill}' "
                   f"fill-opacity='{opacity}' stroke='{color}' stroke-width='1'{dash}><title>{title}</title></rect>")
        prev = spans[j - 1] if j else None
        if prev and prev[2] == inst and prev[3] != container and abs(prev[1] - a) < 1e-6:
            out.append(f"<line x1='{xa:.1f}' y1='{y - 2:.1f}' x2='{xa:.1f}' y2='{y + _BAR_H + 2:.1f}' "
                       "stroke='white' stroke-width='3'/>")
    # labels, one per container: the instance id where a dyno arrives on an instance, "same instance" where a
    # new container starts on the instance the previous one ran on (what a Private Space restart does)
    runs: list[list[Any]] = []  # [t_start, t_end, instance, container]
    for a, b, inst, container, _s in spans:
        if not container:
            continue
        if runs and runs[-1][2:] == [inst, container]:
            runs[-1][1] = b
        else:
            runs.append([a, b, inst, container])
    for k, (a, b, inst, _container) in enumerate(runs):
        xa, xb = x(a), x(b)
        if k == 0:
            labels = [inst or ""]
        elif runs[k - 1][2] == inst:
            labels = [f"↻ same instance {inst}", "↻ same instance", "↻"]
        else:
            labels = [f"→ new instance {inst}", inst or "", "→"]
        label = next((t for t in labels if xb - xa > 7 * len(t) + 8), "")
        if label:
            out.append(f"<text x='{xa + 5:.1f}' y='{y + _BAR_H / 2 + 4:.1f}' fill='#111' font-size='11' "
                       f"font-family='DejaVu Sans Mono, monospace' style='paint-order:stroke' stroke='white' "
                       f"stroke-width='3' stroke-opacity='0.7'>{_e(label)}</text>")
    return out


_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:24px;color:#222}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 6px}
.verdict{padding:2px 10px;border-radius:4px;color:white;background:#c62828}.verdict.pass{background:#2e7d32}
.desc{color:#444;margin:4px 0 14px}.hint{color:#666;font-size:13px;max-width:1160px}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ddd;padding:4px 7px;vertical-align:top;
text-align:left}th{background:#f4f4f4}.meta th{width:140px}.mono{font-family:'DejaVu Sans Mono',monospace;
font-size:12px}.pre{white-space:pre-wrap;font-family:'DejaVu Sans Mono',monospace;font-size:11px;max-width:380px}
.n{text-align:right;white-space:nowrap}.bad{color:#c62828}.sw{display:inline-block;width:11px;height:11px;
margin-right:5px;border-radius:2px;vertical-align:middle}.legend{font-size:12px;margin:4px 0 0 150px}
.lg{margin-right:14px;font-family:'DejaVu Sans Mono',monospace}.tl{overflow-x:auto}
"""
