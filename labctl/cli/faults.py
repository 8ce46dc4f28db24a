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


Router = Annotated[
    str | None,
    typer.Option("--router", "-r", help="Act at the router end: the router serving common or a space (its name)."),
]


def _target(
    instance: str | None, dyno: str | None, app_name: str | None, router: str | None = None
) -> tuple[dict[str, str], str]:
    """The client's target of ``--instance ID``, ``--dyno web.1 -a APP`` or ``--router R``, and how to name it."""
    if sum(x is not None for x in (instance, dyno, router)) != 1:
        raise InvalidInput("Give exactly one of --instance ID, --dyno DYNO -a APP or --router common|SPACE")
    if router is not None:
        return {"router": router}, f"the {router} router"
    if instance is not None:
        return {"instance": instance}, f"instance {instance}"
    if not app_name:
        raise InvalidInput("--dyno needs the app: -a, --app APP  (or set LABCTL_APP)")
    return {"app": app_name, "dyno": dyno or ""}, f"the instance of {dyno} on ⬢ {app_name}"


@app.command("faults")
def faults(app_name: AppOpt = None, lab: Lab = DEFAULT_LAB, json: Json = False) -> None:
    """List faults: where each sits (instance or router end), its direction and the dynos it hits."""
    rows = client(lab).faults(app_name or None)
    render.as_json(rows) if json else render.out(render.faults_text(rows))


@app.command("faults:add")
def faults_add(
    kind: Annotated[str, typer.Argument(help=f"The fault kind. {kinds_help()}.")],
    percent: Annotated[float | None, typer.Option("--percent", help="loss: % of packets dropped, (0, 100].")] = None,
    cpus: Annotated[
        float | None, typer.Option("--cpus", help="cpu: CPUs the instance's dynos share, e.g. 0.05.")
    ] = None,
    mb: Annotated[int | None, typer.Option("--mb", help="memory: MB taken from the instance, e.g. 1500.")] = None,
    kbit: Annotated[float | None, typer.Option("--kbit", help="bandwidth: kbit/s, e.g. 256.")] = None,
    rate: Annotated[str | None, typer.Option("--rate", help="bandwidth: e.g. 1mbit, 512kbit.")] = None,
    ms: Annotated[float | None, typer.Option("--ms", help="latency, slow-close: milliseconds, e.g. 200.")] = None,
    jitter: Annotated[float | None, typer.Option("--jitter", help="latency: ± milliseconds, e.g. 100.")] = None,
    nbytes: Annotated[int | None, typer.Option("--bytes", help="limit-data: bytes let through, e.g. 1000.")] = None,
    direction: Annotated[
        str | None,
        typer.Option(
            "--direction",
            help="loss, blackhole, latency, bandwidth: in (arriving at the end the fault sits at), out, or both.",
        ),
    ] = None,
    instance: Instance = None,
    dyno: Dyno = None,
    app_name: AppOpt = None,
    router: Router = None,
    to_instance: Annotated[
        str | None, typer.Option("--to-instance", help="With --router: only its path to this instance.")
    ] = None,
    for_: Annotated[str | None, typer.Option("--for", help="Revert by itself after this long, e.g. 30s, 5m.")] = None,
    lab: Lab = DEFAULT_LAB,
    json: Json = False,
) -> None:
    """Inject a fault at an instance (by id, or the one hosting --dyno) or at a router (--router)."""
    target, _ = _target(instance, dyno, app_name, router)
    if to_instance is not None and router is None:
        raise InvalidInput("--to-instance goes with --router common|SPACE")
    body: dict[str, Any] = {
        "kind": kind,
        "percent": percent,
        "cpus": cpus,
        "mb": mb,
        "kbit": kbit,
        "rate": rate,
        "ms": ms,
        "jitter": jitter,
        "bytes": nbytes,
        "direction": direction,
        "to_instance": to_instance,
        "for": for_,
    }
    result = client(lab).faults_add({k: v for k, v in body.items() if v is not None}, **target)
    if json:
        return render.as_json(result)
    if result.get("kind") == "host-failure":
        moved = ", ".join(result.get("dynos") or []) or "no dynos"
        return render.out(f"Failing instance {result['instance']}... done, relocating {moved} to a new server")
    # the duration asked for (the time left would read 2s for --for 3s when the call took a moment)
    until = f", reverts in {for_}" if result.get("expires_at") and for_ else ""
    where = f"instance {result['instance']}"
    if result.get("end") == "router":
        where = f"the {result['router']} router" + (f" toward {result['instance']}" if result.get("instance") else "")
    render.out(
        f"Adding {result['description']} fault to {where} ({','.join(result['dynos']) or 'no dynos'})... done{until}"
    )


@app.command("faults:clear")
def faults_clear(
    instance: Instance = None,
    dyno: Dyno = None,
    app_name: AppOpt = None,
    router: Router = None,
    all_: Annotated[bool, typer.Option("--all", help="Clear the faults of every instance and router.")] = False,
    kind: Annotated[str | None, typer.Option("--kind", help="Only faults of this kind.")] = None,
    lab: Lab = DEFAULT_LAB,
    json: Json = False,
) -> None:
    """Remove faults from an instance or a router (or from all of them with --all)."""
    if all_:
        if instance is not None or dyno is not None or router is not None:
            raise InvalidInput("Give --all, or one of --instance ID / --dyno DYNO -a APP / --router R, not both")
        target: dict[str, str] = {}
        what = "every instance and router"
    else:
        target, what = _target(instance, dyno, app_name, router)
    removed = client(lab).faults_clear(kind=kind or None, **target)
    if json:
        return render.as_json(removed)
    if not removed:
        return render.out(f"No {kind + ' ' if kind else ''}faults to clear on {what}")
    done = ", ".join(
        f"{f['description']} on " + (f"the {f['router']} router" if f.get("end") == "router" else f["instance"])
        for f in removed
    )
    render.out(f"Clearing faults on {what}... done, removed {done}")


@app.command("doctor")
def doctor(lab: Lab = DEFAULT_LAB, json: Json = False) -> None:
    """Check the engine, the images, the lab's controller, and which fault kinds this kernel supports."""
    from labctl.doctor import gather  # the Docker SDK loads only for the commands that need it

    report = gather(lab).as_dict()
    render.as_json(report) if json else render.out(render.doctor_text(report))
    if not report["ok"]:
        raise typer.Exit(1)
