"""``apps*``, ``maintenance*``, ``deploy``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from labctl.cli import render
from labctl.cli.common import DEFAULT_LAB, AppOpt, Json, Lab, app, client, require_app
from labctl.errors import InvalidInput


@app.command("apps")
def apps(lab: Lab = DEFAULT_LAB, json: Json = False) -> None:
    """List apps."""
    rows = client(lab).apps()
    if json:
        return render.as_json(rows)
    if not rows:
        return render.out("You have no apps.")
    # CLI src/commands/apps/index.ts: the user's apps under `=== <email> Apps`; the lab marks a space's apps where
    # the CLI marks a region other than us
    render.out(f"=== {render.USER} Apps\n")
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
    c = client(lab)
    c.app_create(name, space)
    if json:  # the app, as apps:info --json prints it
        return render.as_json(c.app_info(name))
    # CLI src/commands/apps/create.ts; the lab has no git remote, so the CLI's `web URL | git URL` line is left out
    where = f" in space {space}" if space else ""
    render.action(f"Creating ⬢ {name}{where}")


@app.command("apps:info")
def apps_info(app_name: AppOpt = None, lab: Lab = DEFAULT_LAB, json: Json = False) -> None:
    """Show an app's space, stack, release, formation and features."""
    info = client(lab).app_info(require_app(app_name))
    if json:
        return render.as_json(info)
    # CLI src/commands/apps/info.ts: `=== ⬢ app` and a styledObject; the lab adds its release, features and
    # maintenance, and has no add-ons, collaborators, git URL or sizes to show
    dynos = ", ".join(f"{p['type']}: {p['quantity']}" for p in info["formation"] if p["quantity"])
    fields = {
        "Dynos": dynos or None,
        "Features": ", ".join(k for k, v in info["features"].items() if v) or None,
        "Maintenance": "on" if info["maintenance"] else "off",
        "Owner": render.USER,
        "Region": info["region"]["name"],
        "Release": f"v{info['release']}" if info["release"] else None,
        "Space": info["space"]["name"] if info["space"] else None,
        "Stack": info["stack"]["name"],
        "Web URL": info.get("web_url"),
    }
    render.out("\n".join([f"=== ⬢ {info['name']}", "", *render.styled_object(fields)]))


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
def apps_destroy(
    app_arg: Annotated[str | None, typer.Argument(hidden=True, help="The app (or -a)")] = None,
    app_name: AppOpt = None,
    confirm: Annotated[str | None, typer.Option("--confirm", "-c", help="The app's name, to skip the question")] = None,
    lab: Lab = DEFAULT_LAB,
    json: Json = False,
) -> None:
    """Destroy an app: its dynos, releases and slug images."""
    import sys

    name = app_arg or app_name
    if not name:
        raise InvalidInput("No app specified. Usage: labctl apps:destroy APPNAME")
    c = client(lab)
    info = c.app_info(name)  # an unknown app is refused before the question (CLI src/commands/apps/destroy.ts)
    # CLI src/lib/confirm-command.ts. The lab asks only where a person sees and answers the question (stdin and
    # stderr are terminals): a script, a scenario step or a test destroys without --confirm, as labctl always did.
    if confirm is not None and confirm != name:
        raise InvalidInput(f"Confirmation {confirm} did not match {name}. Aborted.")
    if confirm is None and sys.stdin.isatty() and sys.stderr.isatty():
        render.warn(f"This will delete ⬢ {name} including all add-ons.")
        render.err("")
        sys.stderr.write(f"To proceed, type {name} or re-run this command with --confirm {name}: ")
        sys.stderr.flush()
        entered = sys.stdin.readline()
        if not entered:  # end of input: as the CLI's prompt on Ctrl-D
            raise typer.Abort()
        if entered.strip() != name:
            raise InvalidInput(f"Confirmation did not match {name}. Aborted.")
    c.app_destroy(name)
    render.as_json(info) if json else render.action(f"Destroying ⬢ {name} (including all add-ons)")


def _maintenance(lab: str, name: str, on: bool, json: bool) -> None:
    c = client(lab)
    c.set_maintenance(name, on)
    if json:
        return render.as_json(c.app_info(name))
    # CLI src/commands/maintenance/on.ts and off.ts
    render.action(f"{'Enabling' if on else 'Disabling'} maintenance mode for ⬢ {name}")


@app.command("maintenance")
def maintenance(app_name: AppOpt = None, lab: Lab = DEFAULT_LAB, json: Json = False) -> None:
    """Print on/off."""
    info = client(lab).app_info(require_app(app_name))
    # CLI src/commands/maintenance/index.ts prints on/off; --json is the app, as apps:info --json prints it
    render.as_json(info) if json else render.out("on" if info["maintenance"] else "off")


@app.command("maintenance:on")
def maintenance_on(app_name: AppOpt = None, lab: Lab = DEFAULT_LAB, json: Json = False) -> None:
    """Router answers 503 with H80; dynos keep running."""
    _maintenance(lab, require_app(app_name), True, json)


@app.command("maintenance:off")
def maintenance_off(app_name: AppOpt = None, lab: Lab = DEFAULT_LAB, json: Json = False) -> None:
    """Serve the app again."""
    _maintenance(lab, require_app(app_name), False, json)


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
    # CLI src/commands/features/index.ts: sorted by name, the name padded to the longest
    rows = sorted(rows, key=lambda f: f["name"])
    width = max(len(f["name"]) for f in rows)
    render.out(f"=== App Features ⬢ {name}\n")
    for f in rows:
        render.out(f"[{'+' if f['enabled'] else ' '}] {f['name']:<{width}}  {f['description']}")


@app.command("features:info")
def features_info(feature: Feature, app_name: AppOpt = None, lab: Lab = DEFAULT_LAB, json: Json = False) -> None:
    """Show one feature."""
    name = require_app(app_name)
    f = client(lab).feature(name, feature)
    if json:
        return render.as_json(f)
    fields = {"Description": f["description"], "Docs": f.get("doc_url"), "Enabled": str(f["enabled"]).lower()}
    render.out("\n".join([f"=== {f['name']}", "", *render.styled_object(fields)]))  # CLI features/info.ts


def _set_feature(lab: str, app_name: str | None, feature: str, on: bool, json: bool) -> None:
    name = require_app(app_name)
    row = client(lab).set_feature(name, feature, on)
    # CLI src/commands/features/enable.ts and disable.ts; --json: the app-feature, as features:info --json
    render.as_json(row) if json else render.action(f"{'Enabling' if on else 'Disabling'} {feature} for ⬢ {name}")


@app.command("features:enable")
def features_enable(feature: Feature, app_name: AppOpt = None, lab: Lab = DEFAULT_LAB, json: Json = False) -> None:
    """Enable a feature (preboot: no restart)."""
    _set_feature(lab, app_name, feature, True, json)


@app.command("features:disable")
def features_disable(feature: Feature, app_name: AppOpt = None, lab: Lab = DEFAULT_LAB, json: Json = False) -> None:
    """Disable a feature (no restart)."""
    _set_feature(lab, app_name, feature, False, json)


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
