"""``drill``, ``drill:answer``, ``drill:status``, ``drill:end`` (docs/drills.md).

Registered on the CLI's app by the entry module ``labctl.main``, like the ``scenario`` group: a drill drives the
CLI as a user does, so it sits above it. The work is in ``labctl.scenario.drill``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from labctl.cli import render
from labctl.cli.common import DEFAULT_LAB, AppOpt, Json, Lab


def drill(
    app_name: AppOpt = None,
    seed: Annotated[int | None, typer.Option("--seed", help="The same seed draws the same incident.")] = None,
    solve: Annotated[
        bool, typer.Option("--solve", help="Answer and fix it with the known remedy, then end and grade (for CI).")
    ] = False,
    report: Annotated[Path | None, typer.Option("--report", help="With --solve: the report directory.")] = None,
    lab: Lab = DEFAULT_LAB,
    json: Json = False,
) -> None:
    """Start traffic and an incident you must find and fix (without -a: a sample app in a Private Space)."""
    from labctl.scenario import drill as d
    from labctl.scenario import drill_report

    st = d.start(lab, app=app_name, seed=seed, progress=render.progress)
    if not solve:
        info = {"id": st["id"], "app": st["app"], "seed": st["seed"], "rps": st["rps"], "path": st["path"]}
        if json:
            return render.as_json(info)
        return render.out(
            f"Drill {st['id']} on ⬢ {st['app']} (seed {st['seed']}): something has gone wrong.\n"
            f"Traffic: {st['rps']:g} req/s on {st['path']} through the router, until the drill ends.\n"
            "Investigate with any labctl command (ps, logs, instances, faults, releases, traffic…), then:\n"
            "  labctl drill:answer --kind KIND --dyno web.N | --instance ID | --router SPACE | --release vN\n"
            "fix it, and run `labctl drill:end` once the traffic is healthy (labctl drill:status)."
        )
    try:
        d.solve(lab, st, progress=render.progress)
    finally:
        result = d.end(lab, report)
    if json:
        render.as_json({k: v for k, v in result.items() if k not in ("traffic", "timeline")})
    else:
        render.out("\n".join(drill_report.grade_lines(result)))
        render.out(f"{result['status'].upper()}: drill {result['drill']} — report: {result['report']}")
    if result["status"] != "pass":
        raise typer.Exit(1)


def drill_answer(
    kind: Annotated[str, typer.Option("--kind", help="cpu, crash, latency, loss, port or slow.", show_default=False)],
    dyno: Annotated[str | None, typer.Option("--dyno", "-d", help="The sick dyno, e.g. web.1.")] = None,
    instance: Annotated[str | None, typer.Option("--instance", "-i", help="The sick instance (i-…).")] = None,
    router: Annotated[str | None, typer.Option("--router", "-r", help="A sick router end: common or a space.")] = None,
    release: Annotated[str | None, typer.Option("--release", help="The release that brought it, e.g. v3.")] = None,
    lab: Lab = DEFAULT_LAB,
    json: Json = False,
) -> None:
    """Name the cause of the running drill's incident: where it is and what kind (one answer counts)."""
    from labctl.scenario import drill as d

    out = d.answer(lab, kind=kind, dyno=dyno, instance=instance, router=router, release=release)
    if json:
        return render.as_json(out)
    render.out(f"Answer recorded {out['answered_after_s']:g} s after the incident began. Now fix it, then drill:end.")


def drill_status(lab: Lab = DEFAULT_LAB, json: Json = False) -> None:
    """The running drill: time since the incident began, whether you answered, the traffic right now."""
    from labctl.scenario import drill as d

    s = d.status(lab)
    if json:
        return render.as_json(s)
    w = s["last_window"] or {}
    thr = s["thresholds"]
    render.out(
        f"Drill {s['id']} on ⬢ {s['app']}: {s['elapsed_s']:g} s since the incident began; "
        f"{'answered' if s['answered'] else 'not answered yet'}; {s['commands']} labctl commands logged.\n"
        f"Traffic, last {w.get('end', 0) - w.get('start', 0):g} s: {w.get('count', 0)} requests, "
        f"{w.get('errors', 0)} errors, p95 {w.get('p95')} ms — "
        f"{'healthy' if s['healthy_now'] else 'NOT healthy'} (errors ≤ {thr['max_error_rate']:.0%}, "
        f"p95 ≤ {thr['p95_ms']:.0f} ms)"
    )


def drill_end(
    report: Annotated[
        Path | None, typer.Option("--report", help="Report directory (default: reports/drill-ID-…).")
    ] = None,
    keep_app: Annotated[bool, typer.Option("--keep-app", help="Keep the app the drill created.")] = False,
    lab: Lab = DEFAULT_LAB,
    json: Json = False,
) -> None:
    """End the running drill: stop the traffic, grade it, write the report."""
    from labctl.scenario import drill as d
    from labctl.scenario import drill_report

    result = d.end(lab, report, keep_app=keep_app, asked_at=_process_started())
    if json:
        return render.as_json({k: v for k, v in result.items() if k not in ("traffic", "timeline")})
    render.out("\n".join(drill_report.grade_lines(result)))
    render.out(f"{result['status'].upper()}: drill {result['drill']} — report: {result['report']}")


def _process_started() -> float | None:
    """When this labctl process started (Linux /proc), or None: the drill is judged up to the moment the learner
    typed drill:end, not after the CLI's own start-up, which on a busy machine slows the last requests."""
    import os
    import time

    try:
        after_comm = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        started_ticks = int(after_comm[19])  # field 22, starttime, in clock ticks since boot
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return time.time() - (uptime - started_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return None


def register(app: typer.Typer) -> None:
    app.command("drill")(drill)
    app.command("drill:answer")(drill_answer)
    app.command("drill:status")(drill_status)
    app.command("drill:end")(drill_end)
