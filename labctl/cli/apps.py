"""``apps*``, ``maintenance*``, ``deploy``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from labctl.cli import render
from labctl.cli.common import DEFAULT_LAB, AppOpt, Json, Lab, app, client, require_app


@app.command("apps")
def apps(lab: Lab = DEFAULT_LAB, json: Json = False) -> None:
    """List apps."""
    rows = client(lab).apps()
    if json:
        return render.as_json(rows)
    if not rows:
        return render.out("You have no apps.")
    render.out("=== Apps")
    for a in rows:
        render.out(a["name"] + (f" (space: {a['space']['name']})" if a["space"] else ""))


@app.command("apps:create")
def apps_create(
    name: Annotated[str, typer.Argument(help="App name: lowercase letters, digits, dashes; 3-30 chars")],
    space: Annotated[str | None, typer.Option("--space", "-s", help="Create it in this Private Space.")] = None,
    lab: Lab = DEFAULT_LAB,
    json: Json = False,
) -> None:
    """Create an app in the Common Runtime, or in a Private Space with --space."""
    row = client(lab).app_create(name, space)
    if json:
        return render.as_json(row)
    where = f" in space {space}" if space else ""
    render.out(f"Creating ⬢ {name}{where}... done")


@app.command("apps:info")
def apps_info(app_name: AppOpt = None, lab: Lab = DEFAULT_LAB, json: Json = False) -> None:
    """Show an app's space, stack, release, formation and features."""
    info = client(lab).app_info(require_app(app_name))
    if json:
        return render.as_json(info)
    formation = render.formation_text(info["formation"]) or "none"
    features = ", ".join(k for k, v in info["features"].items() if v) or "none"
    render.out(f"=== ⬢ {info['name']}")
    render.out(f"Space:       {info['space']['name'] if info['space'] else '(Common Runtime)'}")
    render.out(f"Stack:       {info['stack']['name']}")
    render.out(f"Release:     {'v' + str(info['release']) if info['release'] else 'none (nothing deployed)'}")
    render.out(f"Dynos:       {formation}")
    render.out(f"Features:    {features}")
    render.out(f"Maintenance: {'on' if info['maintenance'] else 'off'}")


@app.command("apps:rename")
def apps_rename(
    newname: Annotated[str, typer.Argument(help="The app's new name")],
    app_name: AppOpt = None,
    lab: Lab = DEFAULT_LAB,
    json: Json = False,
) -> None:
    """Rename an app (the lab renames an app with no running dynos: scale to 0 first)."""
    name = require_app(app_name)
    row = client(lab).app_rename(name, newname)
    render.as_json(row) if json else render.out(f"Renaming ⬢ {name} to ⬢ {newname}... done")


@app.command("apps:destroy")
def apps_destroy(app_name: AppOpt = None, lab: Lab = DEFAULT_LAB) -> None:
    """Destroy an app: its dynos, releases and slug images."""
    name = require_app(app_name)
    client(lab).app_destroy(name)
    render.out(f"Destroying ⬢ {name} (including all add-ons)... done")


def _maintenance(lab: str, name: str, on: bool) -> None:
    client(lab).set_maintenance(name, on)
    render.out(f"{'Enabling' if on else 'Disabling'} maintenance mode for ⬢ {name}... done")


@app.command("maintenance")
def maintenance(app_name: AppOpt = None, lab: Lab = DEFAULT_LAB) -> None:
    """Print on/off."""
    info = client(lab).app_info(require_app(app_name))
    render.out("on" if info["maintenance"] else "off")


@app.command("maintenance:on")
def maintenance_on(app_name: AppOpt = None, lab: Lab = DEFAULT_LAB) -> None:
    """Router answers 503 with H80; dynos keep running."""
    _maintenance(lab, require_app(app_name), True)


@app.command("maintenance:off")
def maintenance_off(app_name: AppOpt = None, lab: Lab = DEFAULT_LAB) -> None:
    """Serve the app again."""
    _maintenance(lab, require_app(app_name), False)


@app.command("deploy")
def deploy(
    directory: Annotated[Path, typer.Argument(help="App source: a directory with a Procfile")],
    app_name: AppOpt = None,
    lab: Lab = DEFAULT_LAB,
    json: Json = False,
) -> None:
    """Build a slug from DIR and create a new release (every release restarts the app's dynos)."""
    name = require_app(app_name)
    src = directory.expanduser().resolve()
    if not src.is_dir():
        raise typer.BadParameter(f"{directory} is not a directory", param_hint="DIRECTORY")
    if not (src / "Procfile").is_file():
        from labctl.errors import InvalidInput

        raise InvalidInput(f"No Procfile in {directory}: a Procfile declares the app's process types.")
    result = None
    for row in client(lab).build(name, str(src)):
        if "line" in row:
            render.progress(f"remote: {row['line']}")
        if "result" in row:
            result = row["result"]
    if json:
        return render.as_json(result)
    render.out(f"Deploying {directory} to ⬢ {name}... done, v{result['version']}")  # type: ignore[index]


Feature = Annotated[str, typer.Argument(help="Feature name, e.g. preboot")]


@app.command("features")
def features(app_name: AppOpt = None, lab: Lab = DEFAULT_LAB, json: Json = False) -> None:
    """List the app's features (as the Dev Center's Preboot article shows them)."""
    name = require_app(app_name)
    rows = client(lab).features(name)
    if json:
        return render.as_json(rows)
    width = max(len(f["name"]) for f in rows)
    render.out(f"=== App Features ({name})")
    for f in rows:
        render.out(f"[{'+' if f['enabled'] else ' '}] {f['name']:<{width}}  {f['description']} [{f['state']}]")


@app.command("features:info")
def features_info(feature: Feature, app_name: AppOpt = None, lab: Lab = DEFAULT_LAB, json: Json = False) -> None:
    """Show one feature."""
    name = require_app(app_name)
    f = client(lab).feature(name, feature)
    if json:
        return render.as_json(f)
    render.out(f"=== {f['name']}\nDescription: {f['description']}\nEnabled:     {str(f['enabled']).lower()}")


def _set_feature(lab: str, app_name: str | None, feature: str, on: bool) -> None:
    name = require_app(app_name)
    client(lab).set_feature(name, feature, on)
    render.out(f"{'Enabling' if on else 'Disabling'} {feature} for ⬢ {name}... done")


@app.command("features:enable")
def features_enable(feature: Feature, app_name: AppOpt = None, lab: Lab = DEFAULT_LAB) -> None:
    """Enable a feature (preboot: no restart)."""
    _set_feature(lab, app_name, feature, True)


@app.command("features:disable")
def features_disable(feature: Feature, app_name: AppOpt = None, lab: Lab = DEFAULT_LAB) -> None:
    """Disable a feature (no restart)."""
    _set_feature(lab, app_name, feature, False)


@app.command("stacks")
def stacks(lab: Lab = DEFAULT_LAB, json: Json = False) -> None:
    """List the stacks dynos run on (one here: Debian with Python, like Heroku's heroku-24)."""
    from labctl import const

    rows = [
        {
            "name": const.STACK_NAME,
            "image": const.STACK_IMAGE,
            "base": f"Debian {const.DEBIAN_SUITE}",
            "python": const.STACK_PYTHON,
            "default": True,
        }
    ]
    if json:
        return render.as_json(rows)
    render.out("=== Available Stacks")
    for r in rows:
        render.out(f"* {r['name']}  ({r['base']}, Python {r['python']}; image {r['image']})")
