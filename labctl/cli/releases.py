"""``releases``, ``releases:info``, ``releases:rollback`` (alias ``rollback``), ``config*``."""

from __future__ import annotations

from typing import Annotated

import typer

from labctl.cli import render
from labctl.cli.common import DEFAULT_LAB, AppOpt, Json, Lab, app, client, command, require_app
from labctl.errors import InvalidInput


@app.command("releases")
def releases(app_name: AppOpt = None, lab: Lab = DEFAULT_LAB, json: Json = False) -> None:
    """List the app's releases, newest first."""
    name = require_app(app_name)
    rows = client(lab).releases(name)
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
    target = rel["description"].rsplit(" ", 1)[-1]
    render.out(f"Rolling back ⬢ {name} to {target}... done, v{rel['version']}")
    render.out("Rollback affects code and config vars; it doesn't add or remove addons.")


@app.command("config")
def config(app_name: AppOpt = None, lab: Lab = DEFAULT_LAB, json: Json = False) -> None:
    """Show config vars."""
    name = require_app(app_name)
    values = client(lab).config(name)
    render.as_json(values) if json else render.out(render.config_text(name, values))


@app.command("config:get")
def config_get(key: str, app_name: AppOpt = None, lab: Lab = DEFAULT_LAB) -> None:
    """Print one config var's value (empty if unset)."""
    values = client(lab).config(require_app(app_name))
    render.out(values.get(key, ""))


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
    if json:
        return render.as_json(result)
    suffix = f", v{result['release']['version']}" if result["release"] else ""
    render.out(f"Setting {', '.join(changes)} and restarting ⬢ {name}... done{suffix}")


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
    if json:
        return render.as_json(result)
    suffix = f", v{result['release']['version']}" if result["release"] else ""
    render.out(f"Unsetting {', '.join(keys)} and restarting ⬢ {name}... done{suffix}")
