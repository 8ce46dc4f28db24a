"""A drill's report: ``report.html`` and ``report.png`` beside ``result.json`` (docs/drills.md).

The picture is the scenario reports' (``report_plot``), fed a scenario-shaped dictionary: the incident as a
``fault`` line, the learner's commands as ``run`` lines, the answer and the mitigation as checks.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from labctl.traffic import summarize


def _e(x: Any) -> str:
    return html.escape("" if x is None else str(x))


def picture_data(res: dict[str, Any]) -> dict[str, Any]:
    inc, ans, mit = res["incident"], res["answer"], res["mitigation"]
    steps: list[dict[str, Any]] = [
        {"kind": "fault", "start": inc["t"], "end": inc["t"], "status": "done", "command": inc["command"],
         "description": inc["command"]},
    ]  # fmt: skip
    for c in res["commands"]:
        words = c["line"].split()
        if len(words) > 1 and not words[1].startswith("drill"):
            steps.append(
                {"kind": "run", "start": c["t"], "end": c["t"], "status": "done", "command": c["line"],
                 "description": c["line"]}
            )  # fmt: skip
    if ans.get("t") is not None:
        steps.append(
            {"kind": "expect", "start": ans["t"], "end": ans["t"], "status": "pass" if ans["correct"] else "fail",
             "description": "answer"}
        )  # fmt: skip
    end = mit["mitigated_at"] if mit["mitigated_at"] is not None else res["duration_s"]
    steps.append(
        {"kind": "wait_for", "start": inc["t"], "end": end, "status": "pass" if mit["mitigated_at"] is not None
         else "fail", "description": "mitigated"}
    )  # fmt: skip
    steps.sort(key=lambda s: s["start"])
    records = res["traffic"]["records"]
    held = sum([bool(ans.get("correct")), mit["mitigated_at"] is not None, bool(res["remedy"].get("fits"))])
    return {
        "scenario": f"drill {res['drill']} (seed {res['seed']})",
        "description": f"{inc['name']}: {inc['summary']}",
        "status": res["status"],
        "expectations": {"total": 3, "held": held},
        "steps": steps,
        "timeline": res["timeline"],
        "traffic": [
            {
                "name": "drill",
                "app": res["app"],
                "rps": res["traffic"]["rps"],
                "start": 0.0,
                "end": res["duration_s"],
                "records": records,
            }
        ],  # fmt: skip
        "faults": [f for f in res["faults_seen"] if f.get("instance")],
        "snapshots": [],
    }


def write(res: dict[str, Any], directory: Path) -> Path:
    from labctl.scenario import report_plot

    picture_html = ""
    try:
        pic = report_plot.render(picture_data(res))
    except Exception as err:  # noqa: BLE001 - the grade must not be lost to a drawing problem
        pic, picture_html = None, f"<p>(the picture could not be drawn: {_e(err)})</p>"
    if pic is not None:
        (directory / "report.png").write_bytes(pic.png)
        picture_html = pic.svg
    page = directory / "report.html"
    page.write_text(render_html(res, picture_html), encoding="utf-8")
    return page


def _s(v: float | None) -> str:
    return "—" if v is None else f"{v:.1f} s"


def grade_lines(res: dict[str, Any]) -> list[str]:
    """The grade as text: what ``drill:end`` prints."""
    inc, ans, mit, rem = res["incident"], res["answer"], res["mitigation"], res["remedy"]
    ok = {True: "✓", False: "✗"}
    return [
        f"Incident: {inc['name']} — {inc['summary']}" + (f" ({inc['dyno']})" if inc.get("dyno") else ""),
        f"  {ok[bool(ans.get('correct'))]} answer: {ans.get('line') or 'none'} — {ans['why']}"
        f" (time to detect {_s(ans.get('time_to_detect_s'))})",
        f"  {ok[mit['mitigated_at'] is not None]} mitigated: time to mitigate {_s(mit['time_to_mitigate_s'])}"
        f" (errors ≤ {mit['thresholds']['max_error_rate']:.0%}, p95 ≤ {mit['thresholds']['p95_ms']:.0f} ms)",
        f"  {ok[bool(rem.get('fits'))]} remedy: {rem.get('line') or 'none'} — {rem['why']}",
    ]


def render_html(res: dict[str, Any], picture_html: str) -> str:
    verdict = "PASS" if res["status"] == "pass" else "FAIL"
    color = "#2e7d32" if res["status"] == "pass" else "#c62828"
    inc, ans, rem = res["incident"], res["answer"], res["remedy"]
    rows = [(inc["t"], "incident", inc["command"])]
    if ans.get("t") is not None:
        rows.append((ans["t"], "answer", f"drill:answer {ans.get('line')}"))
    rows += [(c["t"], f"command ({c['by']})", f"{c['line']} → exit {c['code']}") for c in res["commands"]]
    if res["mitigation"]["mitigated_at"] is not None:
        rows.append((res["mitigation"]["mitigated_at"], "mitigated", "errors and p95 back under the thresholds"))
    if rem.get("t") is not None:
        rows.append((rem["t"], "remedy", rem.get("line")))
    timeline = "".join(f"<tr><td>{t:.1f}</td><td>{_e(k)}</td><td class=mono>{_e(v)}</td></tr>" for t, k, v in
                       sorted(rows, key=lambda r: r[0]))  # fmt: skip
    inj = inc["t"]
    recs = res["traffic"]["records"]
    phases = [("before the incident", [r for r in recs if r["t"] < inj]), ("after", [r for r in recs if r["t"] >= inj])]
    traffic = "".join(
        f"<tr><td>{_e(name)}</td><td>{s['total']['count']}</td><td>{s['total']['errors']}</td>"
        f"<td>{_e(s['total']['p50'])}</td><td>{_e(s['total']['p95'])}</td>"
        f"<td>{_e(', '.join(f'{k} ×{v}' for k, v in s['total']['error_kinds'].items()))}</td></tr>"
        for name, s in ((n, summarize(rs)) for n, rs in phases)
    )
    grade = "".join(f"<li>{_e(line.strip())}</li>" for line in grade_lines(res))
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{verdict}: drill {_e(res['drill'])}</title><style>"
        "body{font:14px system-ui,sans-serif;margin:2em;max-width:1600px}.mono{font-family:monospace}"
        "table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left}"
        f".v{{background:{color};color:#fff;padding:2px 10px;border-radius:4px}}</style></head><body>"
        f"<h1><span class=v>{verdict}</span> drill {_e(res['drill'])} on ⬢ {_e(res['app'])} (seed {res['seed']})</h1>"
        f"<p>lab {_e(res['lab'])}, {_e(res['space'] or 'Common Runtime')}, solved by {_e(res['solved_by'])}</p>"
        f"<h2>Grade</h2><ul>{grade}</ul><p>Remedies that fit this incident: {_e(', '.join(inc['fits']))}</p>"
        f"<h2>Picture</h2><div>{picture_html}</div>"
        f"<h2>Timeline</h2><table><tr><th>s</th><th>what</th><th></th></tr>{timeline}</table>"
        f"<h2>Traffic ({res['traffic']['rps']:g} req/s on {_e(res['traffic']['path'])})</h2>"
        "<table><tr><th></th><th>requests</th><th>errors</th><th>p50 ms</th><th>p95 ms</th><th>errors by kind</th>"
        f"</tr>{traffic}</table></body></html>\n"
    )
