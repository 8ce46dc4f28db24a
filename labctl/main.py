"""The ``labctl`` command (the console script): the CLI's commands, and ``labctl scenario`` on top of them.

Scenarios drive the CLI as a user does (``labctl.cli.main`` in-process, its renderer), so the scenario package
sits above ``labctl.cli`` and ``labctl.cli`` never imports it. This module joins the two: it adds the
``scenario`` group to the CLI's commands. Nothing in ``labctl`` imports this module.
"""

from __future__ import annotations

import sys

from labctl.cli import main, typer_app
from labctl.scenario import drill_command
from labctl.scenario.command import scenario_app

typer_app.add_typer(scenario_app, name="scenario")
drill_command.register(typer_app)

__all__ = ["main", "run", "typer_app"]


def run() -> None:
    sys.exit(main())
