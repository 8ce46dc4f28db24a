"""The ``labctl`` command line: thin commands over the API client, one error boundary (style.md §2, §6).

``labctl.main`` (the console script) adds the ``scenario`` group on top; scenarios use this package, never the
other way round.
"""

from __future__ import annotations

import os
import sys

import typer

from labctl.cli import apps, drains, faults, lab, logs, ps, releases, traffic  # noqa: F401 - modules register their commands
from labctl.cli.common import app as typer_app
from labctl.errors import LabError


def main(argv: list[str] | None = None) -> int:
    """Entry point: every failure is one line on stderr and a non-zero exit; never a traceback."""
    command = typer.main.get_command(typer_app)
    try:
        rv = command.main(args=argv if argv is not None else sys.argv[1:], prog_name="labctl", standalone_mode=False)
        if isinstance(rv, int):  # without standalone mode, an Exit(code) comes back as the return value
            return rv
    except typer.Exit as e:
        return e.exit_code
    except typer.Abort:
        typer.echo("Aborted.", err=True)
        return 1
    except typer.TyperException as e:  # usage errors: bad option, missing argument
        show = getattr(e, "show", None)
        show() if show else typer.echo(f"Error: {e.format_message()}", err=True)
        return e.exit_code
    except LabError as e:
        typer.echo(f" ▸    {e}", err=True)
        return e.exit_code
    except KeyboardInterrupt:
        typer.echo("Interrupted.", err=True)
        return 130
    except Exception as e:  # noqa: BLE001 - the boundary: no traceback reaches a user
        if os.environ.get("LABCTL_DEBUG"):
            raise
        typer.echo(f" ▸    internal error: {type(e).__name__}: {e} (set LABCTL_DEBUG=1 for details)", err=True)
        return 1
    return 0
