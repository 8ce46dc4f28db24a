"""The ``labctl`` command line: thin commands over the API client, one error boundary (style.md §2, §6).

``labctl.main`` (the console script) adds the ``scenario`` group on top; scenarios use this package, never the
other way round.
"""

from __future__ import annotations

import copy
import os
import sys

import typer

from labctl.cli import (  # noqa: F401 - modules register their commands
    apps,
    dashboard,
    drains,
    drill_log,
    faults,
    lab,
    logs,
    ps,
    releases,
    swarm,
    traffic,
)
from labctl.cli.common import app as typer_app
from labctl.errors import LabError


def _app_for(args: list[str]) -> typer.Typer:
    """The app with only the command ``args`` names, or the whole app (``labctl``, ``--help``, a group, a typo).

    Typer works out every registered command's parameters when it builds the command line (~60 commands and
    aliases here): that was the largest part of ``labctl ps``'s start-up (issue 18). Building only the command
    asked for gives the same command, options, help and errors.
    """
    if args and not args[0].startswith("-"):
        wanted = [info for info in typer_app.registered_commands if info.name == args[0]]
        groups = [info for info in typer_app.registered_groups if info.name == args[0]]
        if wanted or groups:
            lean = copy.copy(typer_app)
            lean.registered_commands = wanted
            lean.registered_groups = groups
            return lean
    return typer_app


def main(argv: list[str] | None = None) -> int:
    """Entry point: every failure is one line on stderr and a non-zero exit; never a traceback."""
    args = list(argv if argv is not None else sys.argv[1:])
    started = drill_log.now()
    code = _main(args)
    drill_log.record(args, code, started)  # only while a drill runs in that lab (labctl drill)
    return code


def _main(args: list[str]) -> int:
    command = typer.main.get_command(_app_for(args))
    try:
        rv = command.main(args=args, prog_name="labctl", standalone_mode=False)
        if isinstance(rv, int):  # without standalone mode, an Exit(code) comes back as the return value
            return rv
    except typer.Exit as e:
        return e.exit_code
    except typer.Abort:
        typer.echo("Aborted.", err=True)
        return 1
    except typer.TyperException as e:  # usage errors: bad option, missing argument
        show = getattr(e, "show", None)
        show() if show else typer.echo(f"Error: {e.format_message()}", err=True)
        return e.exit_code
    except LabError as e:
        typer.echo(f" ▸    {e}", err=True)
        return e.exit_code
    except KeyboardInterrupt:
        typer.echo("Interrupted.", err=True)
        return 130
    except Exception as e:  # noqa: BLE001 - the boundary: no traceback reaches a user
        if os.environ.get("LABCTL_DEBUG"):
            raise
        typer.echo(f" ▸    internal error: {type(e).__name__}: {e} (set LABCTL_DEBUG=1 for details)", err=True)
        return 1
    return 0
