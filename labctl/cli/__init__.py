"""The ``labctl`` command line: thin commands over the API client, one error boundary (style.md §2, §6).

``labctl.main`` (the console script) adds the ``scenario`` group on top (``extend``); scenarios use this
package, never the other way round.

A command line loads only the module of the command it names (issue 18: ``labctl ps`` start-up): every command
module registers its commands on the one Typer app when imported, so the whole app (``typer_app``) exists only
once all of them are; ``labctl``, ``--help``, a group or a typo get the whole app.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from typing import Any

import typer

from labctl.cli import drill_log
from labctl.cli.common import app as _registry
from labctl.errors import LabError

# The command modules in the order their commands are listed by `labctl --help`.
MODULES = ("apps", "dashboard", "drains", "faults", "lab", "logs", "ps", "releases", "traffic")
# Each command (and alias) to the module that registers it. Only a shortcut: a name missing here, or a module
# that does not register it, gets the whole app (tests/unit/test_cli_start.py keeps it complete).
COMMANDS = {
    name: module
    for module, names in {
        "apps": "apps apps:create apps:info apps:rename apps:destroy maintenance maintenance:on maintenance:off "
        "deploy features features:info features:enable features:disable stacks",
        "dashboard": "dashboard",
        "drains": "drains drains:add drains:remove",
        "faults": "faults faults:add faults:clear doctor",
        "lab": "up down status auth:token instances spaces spaces:create spaces:destroy timescale certs",
        "logs": "logs",
        "ps": "ps ps:scale dyno:scale scale ps:restart dyno:restart restart ps:stop dyno:stop ps:kill dyno:kill "
        "stop kill run run:detached ps:type ps:resize dyno:resize resize dyno:type ps:wait",
        "releases": "releases releases:info releases:rollback rollback config config:get config:set config:unset",
        "traffic": "traffic",
    }.items()
    for name in names.split()
}
_extensions: list[Callable[[typer.Typer], None]] = []
_whole: list[typer.Typer] = []


def extend(add: Callable[[typer.Typer], None]) -> None:
    """Have ``add(app)`` put more commands on the whole app when it is built (``labctl.main``: ``scenario``)."""
    _extensions.append(add)
    _whole.clear()


def whole_app() -> typer.Typer:
    """Every command: all command modules imported, their commands in ``MODULES`` order, then the extensions'."""
    if not _whole:
        for name in MODULES:
            importlib.import_module(f"labctl.cli.{name}")
        app = _lean(_registry, sorted(_registry.registered_commands, key=_listed_at))
        app.registered_groups = list(_registry.registered_groups)
        for add in _extensions:
            add(app)
        _whole.append(app)
    return _whole[0]


def _listed_at(info: Any) -> int:
    module = info.callback.__module__.rpartition(".")[2]
    return MODULES.index(module) if module in MODULES else len(MODULES)


def _lean(app: typer.Typer, commands: list[Any]) -> typer.Typer:
    """A copy of ``app`` (its options, callback and settings) with only ``commands`` and no groups."""
    lean = typer.Typer.__new__(typer.Typer)
    lean.__dict__.update(app.__dict__)
    lean.registered_commands = list(commands)
    lean.registered_groups = []
    return lean


def _app_for(args: list[str]) -> typer.Typer:
    """The app with only the command ``args`` names, or the whole app (``labctl``, ``--help``, a group, a typo).

    Typer works out every registered command's parameters when it builds the command line (~60 commands and
    aliases here), and importing every command module costs as much again: together most of ``labctl ps``'s
    start-up (issue 18). Building only the command asked for gives the same command, options, help and errors.
    """
    if args and args[0] in COMMANDS:
        importlib.import_module(f"labctl.cli.{COMMANDS[args[0]]}")
        wanted = [info for info in _registry.registered_commands if info.name == args[0]]
        if wanted:
            return _lean(_registry, wanted)
    return whole_app()


def __getattr__(name: str) -> Any:
    if name == "typer_app":  # the whole app, for tests and tools that walk the command tree
        return whole_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main(argv: list[str] | None = None) -> int:
    """Entry point: every failure is one line on stderr and a non-zero exit; never a traceback."""
    import sys

    args = list(argv if argv is not None else sys.argv[1:])
    started = drill_log.now()
    code = _main(args)
    drill_log.record(args, code, started)  # only while a drill runs in that lab (labctl drill)
    return code


def _main(args: list[str]) -> int:
    try:
        command = typer.main.get_command(_app_for(args))
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
