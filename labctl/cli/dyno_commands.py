"""What ``ps``, ``ps:restart`` and ``ps:stop`` do, without Typer: run by their Typer commands (``cli/ps.py``) and
by the console script's fast start (``cli/fast.py``), the commands a learner and the bench run most.

Each takes the API client factory as its first argument (``client(lab)``), so both callers, and the tests that
hand the commands a stand-in client, give theirs. The renderer is imported once the call is sent: what the CLI
does before that is the part of a ``ps:restart`` the new dyno waits for.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from labctl.domain.names import is_dyno_name
from labctl.errors import InvalidInput, NotFound

if TYPE_CHECKING:
    from labctl.client import Client

ClientFor = Callable[[str], "Client"]


def require_app(name: str | None) -> str:
    if not name:
        raise InvalidInput("Missing required flag: -a, --app APP  (or set LABCTL_APP)")
    return name


def ps(
    client: ClientFor,
    types: list[str] | None,
    app_name: str | None,
    show_all: bool,
    extended: bool,
    lab: str,
    json: bool,
) -> None:
    name = require_app(app_name)
    dynos = client(lab).dynos(name, include_old=show_all, extended=extended)
    if types:
        dynos = [d for d in dynos if d["type"] in types]
        if not dynos:
            raise NotFound(f"No {', '.join(types)} dynos on ⬢ {name}")
    from labctl.cli import render

    if json:
        render.as_json(dynos)
    else:
        render.out(render.ps_extended_text(dynos) if extended else render.ps_text(name, dynos))


def restart(
    client: ClientFor,
    target: str | None,
    dyno_name: str | None,
    process_type: str | None,
    app_name: str | None,
    lab: str,
    json: bool,
) -> None:
    name = require_app(app_name)
    dyno, ptype = _target(target, dyno_name, process_type)
    what = _what(target, ptype, dyno) or "all dynos"
    try:
        c = client(lab)
        result = c.restart(name, dyno=dyno, ptype=ptype)
    finally:
        _warn_positional(target)
    from labctl.cli import render

    render.as_json(_dynos_named(c, name, result)) if json else render.action(f"Restarting {what} on ⬢ {name}")


def stop(
    client: ClientFor,
    target: str | None,
    dyno_name: str | None,
    process_type: str | None,
    app_name: str | None,
    lab: str,
    json: bool,
) -> None:
    name = require_app(app_name)
    dyno, ptype = _target(target, dyno_name, process_type)
    if not dyno and not ptype:
        raise InvalidInput("Please specify a process type or dyno name to stop. See more help with --help")
    what = _what(target, ptype, dyno)
    try:
        c = client(lab)
        result = c.stop(name, dyno=dyno, ptype=ptype)
    finally:
        _warn_positional(target)
    from labctl.cli import render

    render.as_json(_dynos_named(c, name, result)) if json else render.action(f"Stopping {what} on ⬢ {name}")


def _target(positional: str | None, dyno: str | None, ptype: str | None) -> tuple[str | None, str | None]:
    if sum(x is not None for x in (positional, dyno, ptype)) > 1:
        raise InvalidInput("Give only one of DYNO, --dyno-name and --process-type")
    if positional:
        # the lab still reads "web" there as a process type, as the CLI did before October 2024
        return (positional, None) if is_dyno_name(positional) else (None, positional)
    return dyno, ptype


def _warn_positional(positional: str | None) -> None:
    """CLI src/commands/ps/restart.ts and stop.ts warn about the positional form. Printed once the call is sent
    (or failed): on stderr it still comes first, before the action line or the error."""
    if positional:
        from labctl.cli import render

        render.warn("DYNO is a deprecated argument. Use --dyno-name or --process-type instead.")


def _what(positional: str | None, ptype: str | None, dyno: str | None) -> str:
    """The action line's target, in the CLI's words (ps/restart.ts, stop.ts): a positional DYNO is always named
    ``dyno X`` there, even ``web``, which the lab (as the API behind the older CLI) takes for the process type."""
    if positional:
        return f"dyno {positional}"
    return f"all {ptype} dynos" if ptype else f"dyno {dyno}" if dyno else ""


def _dynos_named(c: Client, app: str, names: list[str]) -> list[dict[str, Any]]:
    """``--json`` of restart and stop: the dynos acted on, as ``ps --json`` shows them right after the action (a
    stopped one-off is gone, so it is no longer listed)."""
    wanted = set(names)
    return [d for d in c.dynos(app) if d["name"] in wanted]
