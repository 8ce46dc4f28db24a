"""``ps``, ``ps:scale``, ``ps:restart``, ``ps:stop``, ``ps:type``, ``ps:wait``, ``run``, ``run:detached``.

Names and aliases as the Heroku CLI registers them (heroku-reference §1.1: each command's ``aliases`` and
``hiddenAliases`` in packages/cli/src/commands/ps/*.ts).
"""

from __future__ import annotations

import shlex
import sys
from typing import Annotated

import typer

from labctl.cli import render
from labctl.cli.common import DEFAULT_LAB, AppOpt, Json, Lab, app, client, command, require_app
from labctl.domain.names import is_dyno_name
from labctl.errors import InvalidInput, NotFound

DynoName = Annotated[str | None, typer.Option("--dyno-name", "-d", help="A dyno, e.g. web.1")]
ProcType = Annotated[str | None, typer.Option("--process-type", "-p", help="A process type, e.g. web")]
Target = Annotated[str | None, typer.Argument(help="web.1 or web (older positional form)")]


@app.command("ps")
def ps(
    types: Annotated[list[str] | None, typer.Argument(help="Only these process types")] = None,
    app_name: AppOpt = None,
    show_all: Annotated[bool, typer.Option("--all", help="Also show old dynos that preboot keeps serving")] = False,
    extended: Annotated[
        bool, typer.Option("--extended", "-x", help="One row per dyno with its instance, IP, port and release")
    ] = False,
    lab: Lab = DEFAULT_LAB,
    json: Json = False,
) -> None:
    """List the app's dynos, as `heroku ps` prints them."""
    name = require_app(app_name)
    dynos = client(lab).dynos(name, include_old=show_all, extended=extended)
    if types:
        dynos = [d for d in dynos if d["type"] in types]
        if not dynos:
            raise NotFound(f"No {', '.join(types)} dynos on ⬢ {name}")
    if json:
        render.as_json(dynos)
    else:
        render.out(render.ps_extended_text(dynos) if extended else render.ps_text(name, dynos))


@command("ps:scale", aliases=["dyno:scale"], hidden=["scale"])
def scale(
    args: Annotated[list[str] | None, typer.Argument(help="TYPE=N[:SIZE], TYPE+N, TYPE-N")] = None,
    app_name: AppOpt = None,
    lab: Lab = DEFAULT_LAB,
    json: Json = False,
) -> None:
    """Scale process types; with no arguments, print the formation."""
    name = require_app(app_name)
    c = client(lab)
    if not args:
        formation = c.formation(name)
        if json:
            return render.as_json(formation)
        if not formation:
            raise NotFound(f"No process types on ⬢ {name}. Upload a Procfile to add process types.")
        return render.out(render.formation_text(formation))
    result = c.scale(name, args)
    if json:
        return render.as_json(result)
    render.out(f"Scaling dynos... done, now running {render.formation_line(result)}.")


def _target(positional: str | None, dyno: str | None, ptype: str | None) -> tuple[str | None, str | None]:
    if sum(x is not None for x in (positional, dyno, ptype)) > 1:
        raise InvalidInput("Give only one of DYNO, --dyno-name and --process-type")
    if positional:
        return (positional, None) if is_dyno_name(positional) else (None, positional)
    return dyno, ptype


@command("ps:restart", aliases=["dyno:restart"], hidden=["restart"])
def restart(
    target: Target = None,
    dyno_name: DynoName = None,
    process_type: ProcType = None,
    app_name: AppOpt = None,
    lab: Lab = DEFAULT_LAB,
    json: Json = False,
) -> None:
    """Restart all dynos, a type, or one dyno (Private Space: on the same instance)."""
    name = require_app(app_name)
    dyno, ptype = _target(target, dyno_name, process_type)
    what = f"dyno {dyno}" if dyno else f"all {ptype} dynos" if ptype else "all dynos"
    result = client(lab).restart(name, dyno=dyno, ptype=ptype)
    render.as_json(result) if json else render.out(f"Restarting {what} on ⬢ {name}... done")


@command("ps:stop", aliases=["dyno:stop", "ps:kill", "dyno:kill"], hidden=["stop", "kill"])
def stop(
    target: Target = None,
    dyno_name: DynoName = None,
    process_type: ProcType = None,
    app_name: AppOpt = None,
    lab: Lab = DEFAULT_LAB,
    json: Json = False,
) -> None:
    """Stop a dyno or type (formation dynos come back; in a Private Space on a new instance)."""
    name = require_app(app_name)
    dyno, ptype = _target(target, dyno_name, process_type)
    if not dyno and not ptype:
        raise InvalidInput("Please specify a process type or dyno name to stop. See more help with --help")
    what = f"dyno {dyno}" if dyno else f"all {ptype} dynos"
    result = client(lab).stop(name, dyno=dyno, ptype=ptype)
    render.as_json(result) if json else render.out(f"Stopping {what} on ⬢ {name}... done")


Command = Annotated[list[str], typer.Argument(help="The command to run")]
Size = Annotated[str | None, typer.Option("--size", "-s", help="Dyno size")]


def _command_line(args: list[str]) -> str:
    """One argument is a shell command line as typed; several are quoted where needed (as Heroku's CLI)."""
    return args[0] if len(args) == 1 else shlex.join(args)


@app.command("run", context_settings={"allow_interspersed_args": False})
def run(command: Command, app_name: AppOpt = None, size: Size = None, lab: Lab = DEFAULT_LAB) -> None:
    """Run a one-off dyno attached to this terminal; exits with the command's status."""
    name = require_app(app_name)
    line = _command_line(command)
    status = None
    for row in client(lab).run(name, line, size):
        if "dyno" in row:
            render.progress(f"Running {line} on ⬢ {name}... up, {row['dyno']['name']}")
        elif "output" in row:
            sys.stdout.write(row["output"])
            sys.stdout.flush()
        elif "result" in row:
            status = row["result"]["status"]
    raise typer.Exit(status if isinstance(status, int) else 1)


@app.command("run:detached", context_settings={"allow_interspersed_args": False})
def run_detached(
    command: Command, app_name: AppOpt = None, size: Size = None, lab: Lab = DEFAULT_LAB, json: Json = False
) -> None:
    """Run a one-off dyno in the background; see its output with `labctl logs`."""
    name = require_app(app_name)
    line = _command_line(command)
    dyno = client(lab).run_detached(name, line, size)
    if json:
        return render.as_json(dyno)
    render.out(f"Running {line} on ⬢ {name}... done, {dyno['name']} ({dyno['size']})")
    render.out(f"Use 'labctl logs -a {name} --dyno {dyno['name']}' to view the output.")


@command("ps:type", aliases=["ps:resize", "dyno:resize"], hidden=["resize", "dyno:type"])
def ps_type(
    args: Annotated[list[str] | None, typer.Argument(help="SIZE for all types, or TYPE=SIZE …")] = None,
    app_name: AppOpt = None,
    lab: Lab = DEFAULT_LAB,
    json: Json = False,
) -> None:
    """Show or change dyno sizes; changed types restart on the new size."""
    name = require_app(app_name)
    c = client(lab)
    if args:
        c.resize(name, _sizes(args))
        if not json:
            render.out(f"Scaling dynos on ⬢ {name}... done")
    formation = c.formation(name)
    if json:
        return render.as_json(formation)
    render.out(render.types_text(formation))


def _sizes(args: list[str]) -> dict[str, str]:
    """``ps:type`` arguments: one SIZE for every type (``*``), or TYPE=SIZE pairs."""
    sizes: dict[str, str] = {}
    for arg in args:
        ptype, sep, size = arg.partition("=")
        if sep:
            sizes[ptype] = size
        elif len(args) == 1:
            sizes["*"] = arg
        else:
            raise InvalidInput(f"Invalid argument {arg!r}: expected SIZE or TYPE=SIZE")
    return sizes


@app.command("ps:wait")
def ps_wait(
    app_name: AppOpt = None,
    ptype: Annotated[str | None, typer.Option("--type", "-t", help="Only this process type")] = None,
    with_run: Annotated[bool, typer.Option("--with-run", "-R", help="Include one-off dynos")] = False,
    wait_interval: Annotated[
        float, typer.Option("--wait-interval", "-w", help="Seconds between checks (lab default 1)")
    ] = 1.0,
    timeout: Annotated[float, typer.Option(help="Give up after this many seconds (0 = never)")] = 0,
    lab: Lab = DEFAULT_LAB,
) -> None:
    """Wait until every dyno is up on the latest release."""
    # heroku-reference §1.7 (`heroku ps:wait`): its flags, and one progress line that changes in place
    import time

    name = require_app(app_name)
    if wait_interval <= 0:
        raise InvalidInput("wait-interval must be positive")
    c = client(lab)
    releases = c.releases(name)
    if not releases:
        render.err(f" ▸    App ⬢ {name} has no releases")
        return
    latest = releases[0]["version"]
    started = time.time()
    last = None
    while True:
        dynos = [
            d
            for d in c.dynos(name)
            if d["type"] != "release" and (with_run or d["type"] != "run") and (not ptype or d["type"] == ptype)
        ]
        ready = sum(1 for d in dynos if d["state"] == "up" and d["release"]["version"] >= latest)
        line = f"Waiting for every dyno to be running v{latest}... {ready} / {len(dynos)}"
        if line != last:
            render.progress(line)
            last = line
        if ready == len(dynos):
            render.progress(f"{ready} / {len(dynos)}, done")
            return
        if timeout and time.time() - started > timeout:
            raise InvalidInput(f"Timed out after {timeout:.0f} s: {ready} / {len(dynos)} dynos up on v{latest}")
        time.sleep(wait_interval)
