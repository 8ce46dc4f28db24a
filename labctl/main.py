"""The ``labctl`` command (the console script): the CLI's commands, and ``labctl scenario`` on top of them.

Scenarios drive the CLI as a user does (``labctl.cli.main`` in-process, its renderer), so the scenario package
sits above ``labctl.cli`` and ``labctl.cli`` never imports it. This module joins the two: it adds the
``scenario`` group and the drill commands to the CLI's whole app, imported only when that app is built (not for
``labctl ps``). Nothing in ``labctl`` imports this module.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from labctl import cli
from labctl.cli import main

if TYPE_CHECKING:
    import typer

__all__ = ["main", "run"]  # and ``typer_app``: the whole app, built when first asked for


def _scenario_commands(app: typer.Typer) -> None:
    from labctl.scenario import drill_command
    from labctl.scenario.command import scenario_app

    app.add_typer(scenario_app, name="scenario")
    drill_command.register(app)


cli.extend(_scenario_commands)


def __getattr__(name: str) -> Any:
    if name == "typer_app":  # the whole app, ``scenario`` included
        return cli.whole_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def run() -> None:
    sys.exit(main(fast=True))
