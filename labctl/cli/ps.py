"""``ps``, ``ps:scale``, ``ps:restart``, ``ps:stop``, ``ps:type``, ``ps:wait``, ``run``, ``run:detached``.

Names and aliases as the Heroku CLI registers them (heroku-reference §1.1: each command's ``aliases`` and
``hiddenAliases`` in packages/cli/src/commands/ps/*.ts).
"""

from __future__ import annotations

import re
import shlex
import sys
from typing import Annotated, Any

import typer

from labctl.cli import dyno_commands, render
from labctl.cli.common import DEFAULT_LAB, AppOpt, Json, Lab, app, client, command, require_app
from labctl.errors import InvalidInput, NotFound

DynoName = Annotated[str | None, typer.Option("--dyno-name", "-d", help="A dyno, e.g. web.1")]
ProcType = Annotated[str | None, typer.Option("--process-type", "-p", help="A process type, e.g. web")]
Target = Annotated[str | None, typer.Argument(help="web.1 or web (deprecated: use --dyno-name or --process-type)")]
SCALE_ARG = re.compile(r"^([\w-]+)([=+-]\d+)(?::([\w-]+))?$")  # CLI src/commands/ps/scale.ts


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
    dyno_commands.ps(client, types, app_name, show_all, extended, lab, json)


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
    if json:  # the formation, as ps:scale --json without arguments prints it
        return render.as_json(result)
    # CLI src/commands/ps/scale.ts: the action line names only the types the arguments changed, in formation order
    changed = {m.group(1) for m in map(SCALE_ARG.match, args) if m}
    now = ", ".join(f"{p['type']} at {p['quantity']}:{p['size']}" for p in result if p["type"] in changed)
    render.action("Scaling dynos", f"done, now running {now}")


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
    dyno_commands.restart(client, target, dyno_name, process_type, app_name, lab, json)


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
    dyno_commands.stop(client, target, dyno_name, process_type, app_name, lab, json)


Command = Annotated[list[str], typer.Argument(help="The command to run")]
Size = Annotated[str | None, typer.Option("--size", "-s", help="Dyno size")]


def _command_line(args: list[str]) -> str:
    """One argument is a shell command line as typed; several are quoted where needed (as Heroku's CLI)."""
    return args[0] if len(args) == 1 else shlex.join(args)


@app.command("run", context_settings={"allow_interspersed_args": False})
def run(
    command: Command, app_name: AppOpt = None, size: Size = None, lab: Lab = DEFAULT_LAB, json: Json = False
) -> None:
    """Run a one-off dyno attached to this terminal; exits with the command's status."""
    name = require_app(app_name)
    line = _command_line(command)
    status = None
    dyno: dict[str, Any] = {}
    output: list[str] = []
    for row in client(lab).run(name, line, size):
        if "dyno" in row:
            dyno = row["dyno"]
            # CLI src/lib/run/dyno.ts: `<state>, <dyno name>`; its size test (`size > 0`) never holds for a name
            render.action(f"Running {line} on ⬢ {name}", f"up, {dyno['name']}")
        elif "output" in row:
            if json:
                output.append(row["output"])
            else:
                sys.stdout.write(row["output"])
                sys.stdout.flush()
        elif "result" in row:
            status = row["result"]["status"]
    if json:  # the dyno as the API gave it, with what the command printed and its exit status
        render.as_json({"dyno": dyno, "output": "".join(output), "status": status})
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
    # CLI src/commands/run/detached.ts and src/lib/run/dyno.ts
    render.action(f"Running {line} on ⬢ {name}", f"done, {dyno['name']}")
    render.out(f"Run labctl logs --app {name} --dyno {dyno['name']} to view the output.\n")


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
            render.action(f"Scaling dynos on ⬢ {name}")  # CLI src/commands/ps/type.ts
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
        int,
        typer.Option(
            "--wait-interval", "-w", help="Seconds between checks, at least 10 (multiplied by the lab's time scale)"
        ),
    ] = 10,
    timeout: Annotated[float, typer.Option(help="Give up after this many seconds (0 = never)")] = 0,
    lab: Lab = DEFAULT_LAB,
    json: Json = False,
) -> None:
    """Wait until every dyno is up on the latest release."""
    # heroku-reference §1.7, CLI src/commands/ps/wait.ts: its flags and words; nothing is printed when every dyno
    # is already on the latest release. The lab's choice: the interval, a platform-like pause, follows the time
    # scale (10 s at 0.05 is a check every 0.5 s), so waiting in a fast lab stays fast.
    import time

    name = require_app(app_name)
    if wait_interval < 10:
        raise InvalidInput("wait-interval must be at least 10")
    if with_run and ptype:  # the CLI declares --with-run exclusive of --type (oclif's parser refuses both)
        raise InvalidInput("--with-run cannot also be provided when using --type")
    c = client(lab)
    releases = c.releases(name)
    if not releases:
        render.warn(f"App ⬢ {name} has no releases")
        return render.as_json([]) if json else None
    latest = releases[0]["version"]
    pause = wait_interval * float(c.lab_status().get("timescale") or 1.0)
    message = f"Waiting for every dyno to be running v{latest}"
    started = time.time()
    last = None
    while True:
        dynos = [
            d
            for d in c.dynos(name)
            if d["type"] != "release" and (with_run or d["type"] != "run") and (not ptype or d["type"] == ptype)
        ]
        ready = sum(1 for d in dynos if d["state"] == "up" and d["release"]["version"] >= latest)
        fraction = f"{ready} / {len(dynos)}"
        if ready == len(dynos):
            if last is not None:
                render.action(message, f"{fraction}, done")
            return render.as_json(dynos) if json else None
        if fraction != last:
            render.progress(f"{message}... {fraction}")
            last = fraction
        if timeout and time.time() - started > timeout:
            raise InvalidInput(f"Timed out after {timeout:.0f} s: {fraction} dynos up on v{latest}")
        time.sleep(pause)
