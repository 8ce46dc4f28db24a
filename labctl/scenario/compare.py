"""``scenario compare FILE``: every variant of a file, one after the other, and one report side by side
(docs/scenarios.md "What-if runs").

Each variant runs as ``scenario run`` would (a lab of its own, torn down after), and its own report goes to
``DIR/<variant>/``; ``DIR/compare.html`` shows the variants' timelines one above the other with each one's error
budget (failed requests, p95, time to recover: ``health.budget`` from the first fault step on), ``compare.png``
the pictures stacked, ``compare.json`` the figures.
"""

from __future__ import annotations

import html
import io
import json
from pathlib import Path
from typing import Any

from labctl.scenario import health


def since_of(data: dict[str, Any]) -> float:
    """Where the trouble starts: the first ``fault`` step, else the first step."""
    steps = [s for s in data.get("steps") or [] if s.get("start") is not None]
    faults = [s["start"] for s in steps if s["kind"] == "fault"]
    return faults[0] if faults else (steps[0]["start"] if steps else 0.0)


def budget(data: dict[str, Any]) -> dict[str, Any]:
    """The error budget of one variant's result (``result.json``)."""
    streams = data.get("traffic") or []
    records = sorted((r for s in streams for r in s.get("records") or []), key=lambda r: r["t"])
    since = since_of(data)
    if not records:
        return {"requests": 0, "failed": 0, "p95_ms": None, "time_to_recover_s": None, "since": since}
    thr = health.thresholds([r for r in records if r["t"] < since])
    until = max(health.done_at(r) for r in records)
    rps = sum(float(s.get("rps") or 0) for s in streams) or 1.0
    return {**health.budget(records, since, until, rps, thr), "since": since}


def row_text(name: str, data: dict[str, Any], b: dict[str, Any]) -> str:
    verdict = {"pass": "PASS"}.get(data["status"], data["status"].upper())
    p95 = f"{b['p95_ms']:.0f} ms" if b.get("p95_ms") is not None else "—"
    ttr = b.get("time_to_recover_s")
    back = f"recovered {ttr:.1f} s after the fault" if ttr is not None else "not recovered within the run"
    return f"{name:<14} {verdict:<5} failed {b['failed']}/{b['requests']}, p95 {p95}, {back}"


def write(results: list[tuple[str, dict[str, Any]]], directory: Path, file: str) -> Path:
    """``compare.json``, ``compare.png`` and ``compare.html`` for ``(variant, result.json)`` pairs."""
    from labctl.scenario import report_plot

    directory.mkdir(parents=True, exist_ok=True)
    rows = [(name, data, budget(data)) for name, data in results]
    title = str(results[0][1]["scenario"]) if results else ""
    figures = {
        "file": file,
        "scenario": title,
        "variants": [{"variant": n, "status": d["status"], **b} for n, d, b in rows],
    }
    (directory / "compare.json").write_text(json.dumps(figures, indent=2, default=str) + "\n", encoding="utf-8")
    svgs, pngs = [], []
    for name, data, _ in rows:
        try:
            pic = report_plot.render({**data, "scenario": f"{data.get('scenario', '')} — variant {name}"})
        except Exception as err:  # noqa: BLE001 - one variant's drawing must not lose the comparison
            svgs.append(f"<p>(no picture for {html.escape(name)}: {html.escape(str(err))})</p>")
            continue
        if pic is not None:
            svgs.append(pic.svg)
            pngs.append(pic.png)
    if pngs:
        (directory / "compare.png").write_bytes(_stack(pngs))
    table = "".join(
        f"<tr><td><a href='{html.escape(n)}/report.html'>{html.escape(n)}</a></td><td>{html.escape(d['status'])}</td>"
        f"<td>{b['failed']}/{b['requests']}</td><td>{_ms(b.get('p95_ms'))}</td>"
        f"<td>{_s(b.get('time_to_recover_s'))}</td></tr>"
        for n, d, b in rows
    )
    pictures = "".join(f"<h2>{html.escape(n)}</h2><div>{svg}</div>" for (n, _, _), svg in zip(rows, svgs, strict=False))
    page = directory / "compare.html"
    page.write_text(
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>compare: {html.escape(title)}</title><style>body{{font:14px system-ui,sans-serif;"
        "margin:2em;max-width:1600px}td,th{border:1px solid #ddd;padding:3px 8px}table{border-collapse:collapse}"
        f"</style></head><body><h1>What if: {html.escape(title)}</h1>"
        f"<p>{html.escape(file)} — each variant on a lab of its own, the same steps at the same time scale; "
        "the error budget counts from the first fault step (time to recover: until errors ≤ 5 % and p95 ≤ "
        "max(500 ms, 3 × the p50 before the fault), for good).</p>"
        "<table><tr><th>variant</th><th>result</th><th>failed requests</th><th>p95 after the fault</th>"
        f"<th>time to recover</th></tr>{table}</table>{pictures}</body></html>\n",
        encoding="utf-8",
    )
    return page


def _ms(v: float | None) -> str:
    return "—" if v is None else f"{v:.0f} ms"


def _s(v: float | None) -> str:
    return "not recovered" if v is None else f"{v:.1f} s"


def _stack(pngs: list[bytes]) -> bytes:
    """The variants' pictures one above the other, in one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.image as mpimg
    import matplotlib.pyplot as plt

    images = [mpimg.imread(io.BytesIO(p), format="png") for p in pngs]
    width = max(i.shape[1] for i in images)
    height = sum(i.shape[0] for i in images)
    dpi = 100
    fig = plt.figure(figsize=(width / dpi, height / dpi), dpi=dpi)
    y = 1.0
    for img in images:
        h = img.shape[0] / height
        ax = fig.add_axes((0, y - h, img.shape[1] / width, h))
        ax.imshow(img)
        ax.axis("off")
        y -= h
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=dpi)
    plt.close(fig)
    return out.getvalue()
