"""``releases``, ``releases:info``, ``releases:rollback`` (alias ``rollback``), ``config*``."""

from __future__ import annotations

import shlex
from typing import Annotated, Any

import typer

from labctl.cli import render
from labctl.cli.common import DEFAULT_LAB, AppOpt, Json, Lab, app, client, command, require_app
from labctl.errors import InvalidInput


@app.command("releases")
def releases(
    app_name: AppOpt = None,
    num: Annotated[int, typer.Option("--num", "-n", help="Number of releases to show")] = 15,
    lab: Lab = DEFAULT_LAB,
    json: Json = False,
) -> None:
    """List the app's releases, newest first (the last 15; -n for more)."""
    # CLI src/commands/releases/index.ts: `Range: version ..; max=${num || 15}, order=desc`, for --json too
    name = require_app(app_name)
    if num < 1:
        raise InvalidInput("--num must be at least 1")
    rows = sorted(client(lab).releases(name), key=lambda r: -r["version"])[:num]
    render.as_json(rows) if json else render.out(render.releases_text(name, rows))


@app.command("releases:info")
def releases_info(
    release: Annotated[str | None, typer.Argument(help="The release, e.g. v3 (default: the current one)")] = None,
    app_name: AppOpt = None,
    shell: Annotated[bool, typer.Option("--shell", "-s", help="Print config vars as KEY=value")] = False,
    lab: Lab = DEFAULT_LAB,
    json: Json = False,
) -> None:
    """View detailed information for a release: its change, time and config vars."""
    name = require_app(app_name)
    rel = client(lab).release(name, None if release is None else release.lower().removeprefix("v") or release)
    render.as_json(rel) if json else render.out(render.release_info_text(rel, shell=shell))


# heroku-reference §1.1: `releases:rollback`, with the hidden alias `rollback` (releases/rollback.ts)
@command("releases:rollback", hidden=["rollback"])
def rollback(
    version: Annotated[str | None, typer.Argument(help="Release to roll back to, e.g. v3")] = None,
    app_name: AppOpt = None,
    lab: Lab = DEFAULT_LAB,
    json: Json = False,
) -> None:
    """Create a new release with the code and config of an earlier one (default: the previous)."""
    name = require_app(app_name)
    number = None
    if version is not None:
        digits = version[1:] if version.lower().startswith("v") else version
        if not digits.isdigit():
            raise InvalidInput(f"Invalid release {version!r}: expected vN, e.g. v3")
        number = int(digits)
    rel = client(lab).rollback(name, number)
    if json:
        return render.as_json(rel)
    # CLI src/commands/releases/rollback.ts: the action line, then two warnings
    target = rel["description"].rsplit(" ", 1)[-1]
    render.action(f"Rolling back ⬢ {name} to {target}", f"done, v{rel['version']}")
    render.warn("Rollback affects code and config vars; it doesn't add or remove addons.")
    render.warn(f"To undo, run: labctl rollback v{rel['version'] - 1}")


Shell = Annotated[bool, typer.Option("--shell", "-s", help="Print config vars as KEY=value")]


@app.command("config")
def config(app_name: AppOpt = None, shell: Shell = False, lab: Lab = DEFAULT_LAB, json: Json = False) -> None:
    """Show config vars."""
    # CLI src/commands/config/index.ts
    name = require_app(app_name)
    values = client(lab).config(name)
    if json:
        return render.as_json(values)
    if shell:
        return render.out("\n".join(f"{k}={shlex.quote(v)}" for k, v in values.items())) if values else None
    render.out(render.config_text(name, values))


@app.command("config:get")
def config_get(
    keys: Annotated[list[str], typer.Argument(help="KEY …", metavar="KEY...")],
    app_name: AppOpt = None,
    shell: Shell = False,
    lab: Lab = DEFAULT_LAB,
    json: Json = False,
) -> None:
    """Print config var values, one a line (empty if unset)."""
    # CLI src/commands/config/get.ts: --json is {key, value} (value null when unset), a list for several keys
    values = client(lab).config(require_app(app_name))
    if json:
        found = [{"key": k, "value": values.get(k)} for k in keys]
        return render.as_json(found[0] if len(found) == 1 else found)
    for k in keys:
        render.out(f"{k}={shlex.quote(values.get(k) or '')}" if shell else values.get(k) or "")


@app.command("config:set")
def config_set(
    pairs: Annotated[list[str], typer.Argument(help="KEY=VALUE …")],
    app_name: AppOpt = None,
    lab: Lab = DEFAULT_LAB,
    json: Json = False,
) -> None:
    """Set config vars: a new release that restarts the dynos."""
    name = require_app(app_name)
    changes: dict[str, str | None] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidInput(f"{pair} is invalid. Must be in the format FOO=bar.")
        changes[key] = value
    result = client(lab).config_set(name, changes)
    if json:  # the config-vars object, as config --json prints it
        return render.as_json(result["config"])
    # CLI src/commands/config/set.ts: the action line on stderr, then the vars set (non-empty ones) on stdout
    render.action(f"Setting {', '.join(changes)} and restarting ⬢ {name}", _release_suffix(result))
    render.out("\n".join(render.styled_object({k: v for k, v in changes.items() if v}, keys=list(changes))))


@app.command("config:unset")
def config_unset(
    keys: Annotated[list[str], typer.Argument(help="KEY …")],
    app_name: AppOpt = None,
    lab: Lab = DEFAULT_LAB,
    json: Json = False,
) -> None:
    """Unset config vars: a new release that restarts the dynos."""
    name = require_app(app_name)
    result = client(lab).config_set(name, dict.fromkeys(keys))
    if json:  # the config-vars object, as config --json prints it
        return render.as_json(result["config"])
    # CLI src/commands/config/unset.ts
    render.action(f"Unsetting {', '.join(keys)} and restarting ⬢ {name}", _release_suffix(result))


def _release_suffix(result: dict[str, Any]) -> str:
    """``done, v5``; the lab makes no release when nothing changed, and then says only ``done``."""
    return f"done, v{result['release']['version']}" if result.get("release") else "done"
