"""``faults``, ``faults:add``, ``faults:clear`` (instance faults, lab-spec §8) and ``doctor`` (§10)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from labctl.cli import render
from labctl.cli.common import DEFAULT_LAB, AppOpt, Json, Lab, app, client
from labctl.domain.faults import kinds_help
from labctl.errors import InvalidInput

Instance = Annotated[str | None, typer.Option("--instance", "-i", help="A runtime instance id (i-…).")]
Dyno = Annotated[str | None, typer.Option("--dyno", "-d", help="The instance hosting this dyno, e.g. web.1 (with -a).")]


def _target(instance: str | None, dyno: str | None, app_name: str | None) -> tuple[dict[str, str], str]:
    """The client's target of ``--instance ID`` or of ``--dyno web.1 -a APP``, and how to name it."""
    if (instance is None) == (dyno is None):
        raise InvalidInput("Give exactly one of --instance ID or --dyno DYNO -a APP")
    if instance is not None:
        return {"instance": instance}, f"instance {instance}"
    if not app_name:
        raise InvalidInput("--dyno needs the app: -a, --app APP  (or set LABCTL_APP)")
    return {"app": app_name, "dyno": dyno or ""}, f"the instance of {dyno} on ⬢ {app_name}"


@app.command("faults")
def faults(app_name: AppOpt = None, lab: Lab = DEFAULT_LAB, json: Json = False) -> None:
    """List instance faults (all, or those on instances hosting the app's dynos)."""
    rows = client(lab).faults(app_name or None)
    render.as_json(rows) if json else render.out(render.faults_text(rows))


@app.command("faults:add")
def faults_add(
    kind: Annotated[str, typer.Argument(help=f"The fault kind. {kinds_help()}.")],
    percent: Annotated[float | None, typer.Option("--percent", help="loss: % of packets dropped, (0, 100].")] = None,
    cpus: Annotated[float | None, typer.Option("--cpus", help="cpu: CPUs each dyno gets, e.g. 0.05.")] = None,
    rate: Annotated[str | None, typer.Option("--rate", help="bandwidth: e.g. 1mbit, 512kbit.")] = None,
    delay: Annotated[str | None, typer.Option("--delay", help="latency: added delay, e.g. 200ms.")] = None,
    instance: Instance = None,
    dyno: Dyno = None,
    app_name: AppOpt = None,
    for_: Annotated[str | None, typer.Option("--for", help="Revert by itself after this long, e.g. 30s, 5m.")] = None,
    lab: Lab = DEFAULT_LAB,
    json: Json = False,
) -> None:
    """Inject a fault into a runtime instance (by id, or the one hosting --dyno)."""
    target, _ = _target(instance, dyno, app_name)
    body: dict[str, Any] = {"kind": kind, "percent": percent, "cpus": cpus, "rate": rate, "delay": delay, "for": for_}
    result = client(lab).faults_add({k: v for k, v in body.items() if v is not None}, **target)
    if json:
        return render.as_json(result)
    if result.get("kind") == "host-failure":
        moved = ", ".join(result.get("dynos") or []) or "no dynos"
        return render.out(f"Failing instance {result['instance']}... done, relocating {moved} to a new server")
    until = f", reverts {render.fault_expiry(result)}" if result.get("expires_at") else ""
    render.out(
        f"Adding {result['description']} fault to instance {result['instance']} "
        f"({','.join(result['dynos']) or 'no dynos'})... done{until}"
    )


@app.command("faults:clear")
def faults_clear(
    instance: Instance = None,
    dyno: Dyno = None,
    app_name: AppOpt = None,
    all_: Annotated[bool, typer.Option("--all", help="Clear the faults of every instance.")] = False,
    kind: Annotated[str | None, typer.Option("--kind", help="Only faults of this kind.")] = None,
    lab: Lab = DEFAULT_LAB,
    json: Json = False,
) -> None:
    """Remove faults from an instance (or from every instance with --all)."""
    if all_:
        if instance is not None or dyno is not None:
            raise InvalidInput("Give --all, or one of --instance ID / --dyno DYNO -a APP, not both")
        target: dict[str, str] = {}
        what = "every instance"
    else:
        target, what = _target(instance, dyno, app_name)
    removed = client(lab).faults_clear(kind=kind or None, **target)
    if json:
        return render.as_json(removed)
    if not removed:
        return render.out(f"No {kind + ' ' if kind else ''}faults to clear on {what}")
    done = ", ".join(f"{f['description']} on {f['instance']}" for f in removed)
    render.out(f"Clearing faults on {what}... done, removed {done}")


@app.command("doctor")
def doctor(lab: Lab = DEFAULT_LAB, json: Json = False) -> None:
    """Check the engine, the images, the lab's controller, and which fault kinds this kernel supports."""
    from labctl.doctor import gather  # the Docker SDK loads only for the commands that need it

    report = gather(lab).as_dict()
    render.as_json(report) if json else render.out(render.doctor_text(report))
    if not report["ok"]:
        raise typer.Exit(1)
