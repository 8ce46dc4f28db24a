"""The ``labctl`` command line: thin commands over the API client, one error boundary (style.md §2, §6).

``labctl.main`` (the console script) adds the ``scenario`` group on top (``extend``); scenarios use this
package, never the other way round.

A command line loads only the module of the command it names (issue 18: ``labctl ps`` start-up): every command
module registers its commands on the one Typer app when imported, so the whole app (``typer_app``) exists only
once all of them are; ``labctl``, ``--help``, a group or a typo get the whole app. The console script first
offers the line to ``cli/fast.py``, which runs the likes of ``ps -a APP`` without importing Typer at all.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from labctl.cli import drill_log
from labctl.errors import LabError

if TYPE_CHECKING:
    import typer

# The command modules in the order their commands are listed by `labctl --help`.
MODULES = ("apps", "dashboard", "drains", "faults", "lab", "logs", "ps", "releases", "traffic")
# Modules that register a command group only (``swarm:local …``): a group's line gets the whole app.
GROUP_MODULES = ("swarm",)
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
_T = TypeVar("_T")
_extensions: list[Callable[[typer.Typer], None]] = []
_whole: list[typer.Typer] = []


def _registry() -> typer.Typer:
    """The app every command module registers its commands on (``common.app``)."""
    from labctl.cli import common

    return common.app


def extend(add: Callable[[typer.Typer], None]) -> None:
    """Have ``add(app)`` put more commands on the whole app when it is built (``labctl.main``: ``scenario``)."""
    _extensions.append(add)
    _whole.clear()


def whole_app() -> typer.Typer:
    """Every command: all command modules imported, their commands in ``MODULES`` order, then the extensions'."""
    if not _whole:
        for name in (*MODULES, *GROUP_MODULES):
            importlib.import_module(f"labctl.cli.{name}")
        registry = _registry()
        app = _lean(registry, sorted(registry.registered_commands, key=_listed_at))
        app.registered_groups = list(registry.registered_groups)
        for add in _extensions:
            add(app)
        _whole.append(app)
    return _whole[0]


def _listed_at(info: Any) -> int:
    module = info.callback.__module__.rpartition(".")[2]
    return MODULES.index(module) if module in MODULES else len(MODULES)


def _lean(app: typer.Typer, commands: list[Any]) -> typer.Typer:
    """A copy of ``app`` (its options, callback and settings) with only ``commands`` and no groups."""
    lean = type(app).__new__(type(app))
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
        registry = _registry()
        wanted = [info for info in registry.registered_commands if info.name == args[0]]
        if wanted:
            return _lean(registry, wanted)
    return whole_app()


def __getattr__(name: str) -> Any:
    if name == "typer_app":  # the whole app, for tests and tools that walk the command tree
        return whole_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main(argv: list[str] | None = None, fast: bool = False) -> int:
    """Entry point: every failure is one line on stderr and a non-zero exit; never a traceback.

    ``fast``: try ``cli/fast.py`` first (the console script does; in-process callers get Typer every time)."""
    import sys

    args = list(argv if argv is not None else sys.argv[1:])
    started = drill_log.now()
    done = _guarded(lambda: _fast(args)) if fast else None
    code = _guarded(lambda: _typer_main(args)) if done is None else done
    drill_log.record(args, code, started)  # only while a drill runs in that lab (labctl drill)
    return code


def _fast(args: list[str]) -> int | None:
    from labctl.cli import fast

    return fast.run(args)


def _typer_main(args: list[str]) -> int:
    import typer

    command = typer.main.get_command(_app_for(args))
    rv = command.main(args=args, prog_name="labctl", standalone_mode=False)
    return rv if isinstance(rv, int) else 0  # without standalone mode, an Exit(code) comes back as the value


def _guarded(work: Callable[[], _T]) -> _T | int:
    """``work()``'s exit status; a failure is one line on stderr and its status (the CLI's one boundary)."""
    try:
        return work()
    except LabError as e:
        from labctl.cli import render  # here: a fast line sends its call before it loads the renderer

        render.err(f" ▸    {e}")
        return e.exit_code
    except KeyboardInterrupt:
        from labctl.cli import render

        render.err("Interrupted.")
        return 130
    except Exception as e:  # noqa: BLE001 - the boundary: no traceback reaches a user
        code = _typer_outcome(e)
        if code is not None:
            return code
        if os.environ.get("LABCTL_DEBUG"):
            raise
        from labctl.cli import render

        render.err(f" ▸    internal error: {type(e).__name__}: {e} (set LABCTL_DEBUG=1 for details)")
        return 1


def _typer_outcome(e: Exception) -> int | None:
    """The status of Typer's own ways out (``Exit``, ``Abort``, a usage error), after its message; else None."""
    import sys

    typer = sys.modules.get("typer")  # none of these can be raised where Typer was never imported
    if typer is None:
        return None
    from labctl.cli import render

    if isinstance(e, typer.Exit):
        return int(e.exit_code)
    if isinstance(e, typer.Abort):
        render.err("Aborted.")
        return 1
    if isinstance(e, typer.TyperException):
        show = getattr(e, "show", None)
        show() if show else render.err(f"Error: {e.format_message()}")
        return int(e.exit_code)
    return None
