"""Every ``labctl`` command explains itself, and no ``--help`` text points at the project's internal documents.

The command tree is walked from the console script's app (``labctl.main``, so ``scenario …`` is in it); each
command's ``--help`` is rendered as a user sees it.
"""

from __future__ import annotations

import re

import pytest
import typer
from typer.testing import CliRunner

from labctl.main import typer_app

# Internal documents and their section signs belong in code comments, never in what a user reads.
INTERNAL = re.compile(r"§|lab-spec|heroku-reference|style\.md|\.\./shared")


def _commands() -> list[tuple[list[str], object]]:
    found = []

    def walk(cmd: object, path: list[str]) -> None:
        found.append((path, cmd))
        for name, sub in sorted((getattr(cmd, "commands", None) or {}).items()):
            walk(sub, [*path, name])

    walk(typer.main.get_command(typer_app), [])
    return found


COMMANDS = _commands()


def test_the_tree_holds_the_cli_and_the_scenario_commands():
    names = {" ".join(path) for path, _ in COMMANDS}
    assert {"", "ps", "ps:restart", "faults:add", "scenario", "scenario run", "scenario list"} <= names
    assert len(names) > 40


@pytest.mark.parametrize(("path", "cmd"), COMMANDS, ids=[" ".join(p) or "labctl" for p, _ in COMMANDS])
def test_every_command_has_help(path: list[str], cmd: object):
    assert (getattr(cmd, "help", None) or "").strip(), f"labctl {' '.join(path)} has no help text"


def test_no_help_text_mentions_internal_documents():
    """Each command's ``--help`` as a user sees it (one command tree, one captured terminal: about a second)."""
    cli = typer.main.get_command(typer_app)
    bad = []
    with CliRunner().isolation(env={"COLUMNS": "300"}) as (out, *_):  # wide: no marker split by a wrap
        for path, _ in COMMANDS:
            start = out.tell()
            with pytest.raises(SystemExit) as done:
                cli.main([*path, "--help"], prog_name="labctl")
            assert done.value.code in (0, None), path
            text = out.getvalue()[start:].decode()
            assert "Usage: labctl" in text, path
            bad += [
                f"labctl {' '.join(path)} --help: {line.strip()}" for line in text.splitlines() if INTERNAL.search(line)
            ]
    assert bad == []


def test_the_check_catches_a_bad_help_text():
    assert INTERNAL.search("Wait until every dyno is up (heroku-reference §1.7).")
    assert INTERNAL.search("see ../shared/style.md") and INTERNAL.search("lab-spec 9")
    assert not INTERNAL.search("Restart all dynos, a type, or one dyno (Private Space: on the same instance).")
