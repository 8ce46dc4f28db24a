"""What a scenario run shows: the live step table, the final line, ``result.json`` and ``report.html``.

The HTML report is self-contained (inline CSS and SVG, no script, nothing fetched) and is rendered from the same
dictionary that ``result.json`` holds, so a report can be rebuilt from a result file (``write_report``). Its
picture (``report_plot``, matplotlib) is drawn once and saved twice: ``report.png`` and the page's inline SVG.
"""

from __future__ import annotations

import html
import json
import time
from pathlib import Path
from typing import Any

from labctl.scenario.model import Scenario
from labctl.scenario.report_model import dyno_key as _dyno_key
from labctl.scenario.report_model import instance_colors
from labctl.scenario.result import RunResult, StepResult
from labctl.traffic import NONE, summarize

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
    return (
        f"{r.step.number:>3}  {r.step.kind:<9} {_clip(r.step.describe(), w):<{w}}  "
        f"{_RESULT_WORD.get(r.status, r.status):<7} {_clip(measured, 160)}"
    )


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
    """Write ``result.json``, ``report.png`` and ``report.html`` into ``directory``; return the HTML file's path."""
    directory.mkdir(parents=True, exist_ok=True)
    data = result.to_json()
    (directory / "result.json").write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    return write_report(data, directory)


def write_report(data: dict[str, Any], directory: Path) -> Path:
    """``report.png`` and ``report.html`` from a result dictionary (a ``result.json``): the picture is drawn once.

    A picture that cannot be drawn is named on the page; the page and ``result.json`` stand.
    """
    from labctl.scenario import report_plot

    picture_html = "<p class=hint>(no picture: the steps did not run)</p>"
    try:
        picture = report_plot.render(data)
    except Exception as err:  # noqa: BLE001 - the run's result must not be lost to a drawing problem
        picture, picture_html = None, f"<p class=bad>(the picture could not be drawn: {_e(err)})</p>"
    if picture is not None:
        (directory / "report.png").write_bytes(picture.png)
        picture_html = f"<div class=tl>{picture.svg}</div>"
    page = directory / "report.html"
    page.write_text(render_html(data, picture_html), encoding="utf-8")
    return page


# -- HTML -------------------------------------------------------------------------------------------

_STATUS_COLORS = {
    "pass": "#2e7d32",
    "fail": "#c62828",
    "error": "#c62828",
    "done": "#555",
    "skipped": "#999",
    "interrupted": "#c62828",
}
_PICTURE_HINT = (
    "Time runs left to right, in seconds since the run started. Top: one lane per dyno, colored by the runtime "
    "instance it ran on (solid: up; pale: starting; dashed outline: no container; hatched: down or crashed). "
    "↻ marks a new container on the same instance, → and a change of color a new instance; a red band is a fault "
    "on the dyno's instance. Then, with traffic: latency per dyno (log scale; thick: p50, dashed: p95, dots: "
    "requests, the numbers: p50 between two actions) and errors per second by kind. Dashed vertical lines: the "
    "actions (commands, faults, tasks; dash-dot: traffic); dotted: snapshots; bottom lane: checks (✓ held, "
    "✗ failed; a bar is the wait)."
)


def _e(x: Any) -> str:
    return html.escape("" if x is None else str(x))


def render_html(data: dict[str, Any], picture_html: str = "") -> str:
    """The whole page; ``picture_html`` is the inline SVG (``write_report`` draws it)."""
    colors = instance_colors(data)
    status = data["status"]
    verdict = "PASS" if status == "pass" else ("INTERRUPTED" if status == "interrupted" else "FAIL")
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f"<title>{_e(verdict)}: {_e(data['scenario'])} — labctl scenario</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1><span class='verdict {status}'>{_e(verdict)}</span> {_e(data['scenario'])}</h1>",
        f"<p class=desc>{_e(data['description'])}</p>",
        _meta_html(data),
        "<h2>Timeline</h2>",
        picture_html,
        f"<p class=hint>{_e(_PICTURE_HINT)}</p>",
        _tasks_html(data),
        "<h2>Steps</h2>",
        _steps_html(data),
        _traffic_html(data, colors),
        _faults_html(data, colors),
        _snapshots_html(data, colors),
        "</body></html>",
    ]
    return "\n".join(p for p in parts if p) + "\n"


def _meta_html(data: dict[str, Any]) -> str:
    exp = data["expectations"]
    setup = data.get("setup") or {}
    teardown = data.get("teardown") or {}
    first = data.get("first_failure")
    mode = f", {_e(data['mode'])}" if data.get("mode") else ""
    commands = [f"{t.get('command')} → exit {t.get('exit_code')}" for t in teardown.get("steps") or []]
    rows = [
        "<table class=meta>",
        f"<tr><th>expectations held</th><td>{exp['held']}/{exp['total']}</td></tr>",
        f"<tr><th>file</th><td class=mono>{_e(data['file'])}</td></tr>",
        f"<tr><th>lab</th><td class=mono>{_e(data['lab'])} (time scale {_e(data['timescale'])}, "
        f"router port {_e(data.get('router_port'))}{mode})</td></tr>",
        f"<tr><th>started</th><td>{_e(data['started_at'])} ({_e(data['duration_s'])} s in all)</td></tr>",
        f"<tr><th>setup</th><td>{_e(setup.get('status'))} {_e(setup.get('message', ''))}"
        f"<div class=mono>{'<br>'.join(_e(c) for c in setup.get('commands', []))}</div></td></tr>",
        f"<tr><th>teardown</th><td>{_e(teardown.get('status'))} {_e(teardown.get('message', ''))}"
        f"<div class=mono>{'<br>'.join(_e(c) for c in commands)}</div></td></tr>",
    ]
    if first and data["status"] != "pass":
        rows.append(f"<tr><th>first failure</th><td class='mono bad'>{_e(first)}</td></tr>")
    return "".join(rows) + "</table>"


def _steps_html(data: dict[str, Any]) -> str:
    rows = []
    for s in data["steps"]:
        color = _STATUS_COLORS.get(s["status"], "#333")
        t = "" if s["start"] is None else f"{s['start']:.1f}–{s['end']:.1f}s" if s["end"] is not None else ""
        message = s["message"]
        if s.get("output") and s["kind"] in ("run", "fault", "command"):
            message = (message + "\n" if message else "") + s["output"].strip()[-600:]
        rows.append(
            f"<tr><td class=n>{s['number']}</td><td>{_e(s['kind'])}</td><td class=mono>{_e(s['description'])}</td>"
            f"<td class=n>{_e(t)}</td><td><b style='color:{color}'>{_e(s['status'])}</b></td>"
            f"<td class=mono>{_e(s['measured'])}</td><td class=mono>{_e(s['expected'])}</td>"
            f"<td class=pre>{_e(message)}</td></tr>"
        )
    return (
        "<table class=steps><tr><th>#</th><th>kind</th><th>description</th><th>time</th><th>result</th>"
        "<th>measured</th><th>expected</th><th>message / output</th></tr>" + "".join(rows) + "</table>"
    )


def _tasks_html(data: dict[str, Any]) -> str:
    tasks = [s for s in data["steps"] if s["kind"] == "task"]
    if not tasks:
        return ""
    out = ["<h2>Tasks</h2>"]
    for s in tasks:
        color = _STATUS_COLORS.get(s["status"], "#333")
        how = {
            "solution": "the solution was run",
            "learner": "graded at the terminal",
            "timeout": "time ran out",
            "skip": "skipped",
            "quit": "the learner quit",
            "condition": "waited for the condition",
        }.get(s.get("graded_by") or "", s.get("graded_by") or "")
        hints = s.get("hints_shown") or []
        out.append(
            f"<div class=task><b>step {s['number']}</b> <b style='color:{color}'>{_e(s['status'])}</b>"
            f"{' — ' + _e(how) if how else ''}<div class=prompt>{_e((s.get('prompt') or '').strip())}</div>"
            f"<small>solution: <span class=mono>{_e(s.get('solution') or '—')}</span>; hints shown: "
            f"{_e('; '.join(hints) if isinstance(hints, list) and hints else 'none')}</small></div>"
        )
    return "".join(out)


_SUMMARY_HEAD = "<th>count</th><th>errors</th><th>p50</th><th>p95</th><th>p99</th><th>max</th>"


def _summary_cells(st: dict[str, Any]) -> str:
    kinds = ", ".join(f"{k} ×{n}" for k, n in (st.get("error_kinds") or {}).items())
    errors = f"{st['errors']}" + (f" <small>({_e(kinds)})</small>" if kinds else "")
    cls = " class=bad" if st["errors"] else ""
    return f"<td class=n>{st['count']}</td><td{cls}>{errors}</td>" + "".join(
        f"<td class=n>{_ms(st.get(p))}</td>" for p in ("p50", "p95", "p99", "max")
    )


def _ms(v: float | None) -> str:
    return "—" if v is None else f"{v:.0f} ms" if v < 1000 else f"{v / 1000:.2f} s"


def _traffic_html(data: dict[str, Any], colors: dict[str, str]) -> str:
    out = []
    for s in data.get("traffic") or []:
        summary = s.get("summary") or summarize(s.get("records") or [])
        span = f"{s['start']:.1f}–{s['end']:.1f}s" if s.get("start") is not None and s.get("end") is not None else ""
        out.append(
            f"<h2>Traffic: {_e(s['name'])}</h2><p class=desc>{_e(s.get('app'))} "
            f"<span class=mono>{_e(s.get('path', '/'))}</span>, {_e(s.get('rps'))} rps for "
            f"{_e(s.get('duration'))} s, {_e(s.get('status'))} ({_e(span)})</p>"
        )
        total = summary.get("total") or {}
        rows = [f"<tr><th>all</th><td></td>{_summary_cells(total)}</tr>"] if total else []
        rows += [
            f"<tr><th class=mono>{_e('no dyno' if d == NONE else d)}</th>"
            f"<td class=mono>{_e(', '.join(st.get('instances') or {}))}</td>{_summary_cells(st)}</tr>"
            for d, st in (summary.get("by_dyno") or {}).items()
        ]
        out.append(
            "<table class=traffic><tr><th>by dyno</th><th>instances</th>"
            + _SUMMARY_HEAD
            + "</tr>"
            + "".join(rows)
            + "</table>"
        )
        rows = [
            f"<tr><th class=mono><span class=sw style='background:{colors.get(i, '#ccc')}'></span>{_e(i)}"
            f"</th><td class=mono>{_e(', '.join(st.get('dynos') or []))}</td>{_summary_cells(st)}</tr>"
            for i, st in (summary.get("by_instance") or {}).items()
        ]
        out.append(
            "<table class=traffic><tr><th>by instance</th><th>dynos</th>"
            + _SUMMARY_HEAD
            + "</tr>"
            + "".join(rows)
            + "</table>"
        )
    return "".join(out)


def _faults_html(data: dict[str, Any], colors: dict[str, str]) -> str:
    faults = data.get("faults") or []
    if not faults:
        return ""
    rows = []
    for f in faults:
        end = "still on at the end" if f.get("end") is None else f"{f['end']:.1f}s"
        sw = f"<span class=sw style='background:{colors.get(f.get('instance'), '#ccc')}'></span>"
        rows.append(
            f"<tr><td class=mono>{sw}{_e(f.get('instance'))}</td><td>{_e(f.get('kind'))}</td>"
            f"<td class=mono>{_e(f.get('detail'))}</td><td class=n>{f['start']:.1f}s</td>"
            f"<td class=n>{_e(end)}</td><td class=mono>{_e(', '.join(f.get('dynos') or []))}</td></tr>"
        )
    return (
        "<h2>Instance faults</h2><table class=faults><tr><th>instance</th><th>kind</th><th>detail</th>"
        "<th>from</th><th>to</th><th>dynos on it</th></tr>" + "".join(rows) + "</table>"
    )


def _snapshots_html(data: dict[str, Any], colors: dict[str, str]) -> str:
    snaps = data.get("snapshots") or []
    if not snaps:
        return ""
    keys = sorted(
        {(app, n) for s in snaps for app, ds in s["dynos"].items() for n in ds}, key=lambda k: (k[0], _dyno_key(k[1]))
    )
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
            cells.append(
                f"<td class=mono>{sw}{_e(d['instance'])}<br><small>{_e(d['state'])}, container "
                f"{_e((d.get('container') or '')[:12])}</small></td>"
            )
        rows.append(f"<tr><th class=mono>{_e(app)} {_e(n)}</th>{''.join(cells)}</tr>")
    return "<h2>Snapshots</h2><table class=snaps><tr><th>dyno</th>" + head + "</tr>" + "".join(rows) + "</table>"


_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:24px;color:#222}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 6px}
.verdict{padding:2px 10px;border-radius:4px;color:white;background:#c62828}.verdict.pass{background:#2e7d32}
.desc{color:#444;margin:4px 0 14px}.hint{color:#666;font-size:13px;max-width:1160px}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ddd;padding:4px 7px;vertical-align:top;
text-align:left}th{background:#f4f4f4}.meta th{width:140px}.mono{font-family:'DejaVu Sans Mono',monospace;
font-size:12px}.pre{white-space:pre-wrap;font-family:'DejaVu Sans Mono',monospace;font-size:11px;max-width:380px}
.n{text-align:right;white-space:nowrap}.bad{color:#c62828}.sw{display:inline-block;width:11px;height:11px;
margin-right:5px;border-radius:2px;vertical-align:middle}
.tl{max-width:1500px}.tl svg{height:auto}.traffic{margin:6px 0}.task{margin:6px 0 12px;max-width:1100px}
.prompt{white-space:pre-wrap;background:#f7f3fb;border-left:4px solid #6a1b9a;padding:6px 10px;margin:4px 0}
"""
