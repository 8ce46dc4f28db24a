"""``labctl dashboard``: a one-time login link to the controller's live page (docs/dashboard.md)."""

from __future__ import annotations

from typing import Annotated

import typer

from labctl.cli import render
from labctl.cli.common import DEFAULT_LAB, Json, Lab, app, client


@app.command("dashboard")
def dashboard(
    open_: Annotated[bool, typer.Option("--open", help="Open the link in the default web browser.")] = False,
    lab: Lab = DEFAULT_LAB,
    json: Json = False,
) -> None:
    """Print a one-time link that logs a browser in to the lab's live dashboard (valid for 5 minutes)."""
    link = client(lab).dashboard_link()
    if json:
        render.as_json(link)
    else:
        render.out(
            f"Dashboard of lab {lab}: open this link within {link['expires_in'] // 60} minutes (it works once):\n"
            f"  {link['url']}"
        )
    if open_:
        import webbrowser

        if not webbrowser.open(link["url"]):
            render.out("No web browser found: open the link above by hand.")
