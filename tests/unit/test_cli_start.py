"""The CLI builds only the command it runs (issue 18: `labctl ps` start-up), with the same help and errors."""

from __future__ import annotations

import typer
from typer.testing import CliRunner

from labctl.cli import _app_for, typer_app


def _names(app: typer.Typer) -> set[str]:
    return set(typer.main.get_group(app).commands)


def test_a_command_is_built_alone_and_anything_else_gets_the_whole_app():
    assert _names(_app_for(["ps", "-a", "x"])) == {"ps"}
    assert _names(_app_for(["dyno:restart", "web.1"])) == {"dyno:restart"}
    everything = _names(typer_app)
    assert len(everything) > 40
    for args in ([], ["--help"], ["-h"], ["--version"], ["nosuch"]):
        assert _names(_app_for(args)) == everything


def test_the_lone_command_helps_and_fails_as_in_the_whole_app():
    runner = CliRunner()
    for args in (["ps", "--help"], ["ps:scale", "--bogus"], ["releases:info", "-h"]):
        alone = runner.invoke(_app_for(args), args, prog_name="labctl")
        whole = runner.invoke(typer_app, args, prog_name="labctl")
        assert (alone.exit_code, alone.output) == (whole.exit_code, whole.output)
        assert "Usage: labctl" in whole.output
