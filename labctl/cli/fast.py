"""The console script's fast start: ``ps``, ``ps:restart`` and ``ps:stop`` lines run without importing Typer.

Importing Typer (and the Click it carries) is ~40 ms of a ~100 ms ``labctl ps`` on this machine, more than the
API call and the rendering together (issue 18: ``labctl ps`` ≤ 0.15 s; ``ps:restart`` → serving ≤ 1.1× its
raw twin, the CLI's start included). This module reads only lines it can read exactly as Typer's parser does
and runs the very functions the Typer commands run (``cli/dyno_commands.py``); for anything else (help, an
option it does not know, a repeated one, an option value that starts with ``-``, ``--``, shell completion) it
answers None and the whole CLI takes the line, so help, usage errors and exit statuses stay Typer's.
tests/unit/test_cli_fast.py runs lines both ways and compares output, errors and exit status.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from labctl import const
from labctl.cli import dyno_commands

if TYPE_CHECKING:
    from labctl.client import Client


class _Option(NamedTuple):
    dest: str
    flag: bool  # a flag takes no value


class _Spec(NamedTuple):
    run: Callable[..., None]
    options: dict[str, _Option]
    positional: str  # the parameter the arguments go to
    many: bool  # any number of arguments (else at most one)


_COMMON = {
    "-a": _Option("app_name", False),
    "--app": _Option("app_name", False),
    "--lab": _Option("lab", False),
    "--json": _Option("json", True),
}
_EXTENDED = _Option("extended", True)
_PS_OPTIONS = {**_COMMON, "--all": _Option("show_all", True), "-x": _EXTENDED, "--extended": _EXTENDED}
_PS = _Spec(dyno_commands.ps, _PS_OPTIONS, "types", True)
_TARGETED = {
    **_COMMON,
    "-d": _Option("dyno_name", False),
    "--dyno-name": _Option("dyno_name", False),
    "-p": _Option("process_type", False),
    "--process-type": _Option("process_type", False),
}
_RESTART = _Spec(dyno_commands.restart, _TARGETED, "target", False)
_STOP = _Spec(dyno_commands.stop, _TARGETED, "target", False)
# the names and aliases cli/ps.py registers these commands under
SPECS = {
    "ps": _PS,
    **dict.fromkeys(("ps:restart", "dyno:restart", "restart"), _RESTART),
    **dict.fromkeys(("ps:stop", "dyno:stop", "ps:kill", "dyno:kill", "stop", "kill"), _STOP),
}
_DEFAULTS = {"app_name": None, "lab": None, "json": False, "show_all": False, "extended": False}
_DEFAULTS |= {"dyno_name": None, "process_type": None}


def client(lab: str) -> Client:
    from labctl.client import Client

    return Client(lab)


def parse(args: list[str]) -> tuple[_Spec, dict[str, object]] | None:
    """The command and its parameters as Typer would pass them, or None for a line left to Typer."""
    if not args or args[0] not in SPECS or os.environ.get("_LABCTL_COMPLETE"):
        return None
    spec = SPECS[args[0]]
    given: dict[str, object] = {}
    positional: list[str] = []
    rest = iter(args[1:])
    for token in rest:
        if not token.startswith("-"):
            positional.append(token)
            continue
        name, eq, value = token.partition("=") if token.startswith("--") else (token, "", "")
        option = spec.options.get(name)
        if option is None or option.dest in given or (option.flag and eq):
            return None
        if not option.flag and not eq:
            value = next(rest, "-")
            if value.startswith("-"):  # a missing value, or one Typer's parser might read otherwise
                return None
        given[option.dest] = True if option.flag else value
    if len(positional) > 1 and not spec.many:
        return None
    params = {k: v for k, v in _DEFAULTS.items() if k in {o.dest for o in spec.options.values()}} | given
    if "app_name" not in given:
        params["app_name"] = os.environ.get("LABCTL_APP") or None  # Click: an empty variable is no value
    if "lab" not in given:
        params["lab"] = os.environ.get("LABCTL_LAB") or const.DEFAULT_LAB
    params[spec.positional] = (positional or None) if spec.many else (positional[0] if positional else None)
    return spec, params


def run(args: list[str]) -> int | None:
    """Run the line (0, or an exception for the CLI's boundary), or None: not a line this module reads."""
    parsed = parse(args)
    if parsed is None:
        return None
    spec, params = parsed
    spec.run(client, **params)
    return 0
