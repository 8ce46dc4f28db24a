"""``drains``, ``drains:add``, ``drains:remove``: an app's log drains, with the Heroku CLI's words."""

from __future__ import annotations

from typing import Annotated

import typer

from labctl.cli import render
from labctl.cli.common import DEFAULT_LAB, AppOpt, Json, Lab, app, client, require_app


@app.command("drains")
def drains(app_name: AppOpt = None, lab: Lab = DEFAULT_LAB, json: Json = False) -> None:
    """Display the log drains of an app."""
    name = require_app(app_name)
    rows = client(lab).log_drains(name)
    if json:
        render.as_json(rows)
    elif rows:
        render.out(render.drains_text(rows))


@app.command("drains:add")
def drains_add(
    url: Annotated[str, typer.Argument(help="URL of the log drain: syslog://, syslog+tls://, http:// or https://")],
    app_name: AppOpt = None,
    lab: Lab = DEFAULT_LAB,
    json: Json = False,
) -> None:
    """Add a log drain to an app (a receiver on this machine: a loopback address or a *.localhost name)."""
    name = require_app(app_name)
    drain = client(lab).log_drain_add(name, url)
    render.as_json(drain) if json else render.out(f"Successfully added drain {drain['url']}")


@app.command("drains:remove")
def drains_remove(
    url: Annotated[str, typer.Argument(help="URL or token of the log drain")],
    app_name: AppOpt = None,
    lab: Lab = DEFAULT_LAB,
    json: Json = False,
) -> None:
    """Remove a log drain from an app."""
    name = require_app(app_name)
    drain = client(lab).log_drain_remove(name, url)
    render.as_json(drain) if json else render.out(f"Successfully removed drain {drain['url']}")
