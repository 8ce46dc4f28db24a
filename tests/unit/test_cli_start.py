"""The CLI builds only the command it runs (issue 18: `labctl ps` start-up), with the same help and errors."""

from __future__ import annotations

import os
import subprocess
import sys

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


def test_the_command_map_names_each_command_s_module():
    from labctl import cli

    built = {
        info.name: info.callback.__module__.removeprefix("labctl.cli.")
        for info in typer_app.registered_commands
        if info.callback.__module__.startswith("labctl.cli.")
    }
    assert cli.COMMANDS == built
    assert set(cli.COMMANDS.values()) == set(cli.MODULES)


def _fresh(code: str, tmp_path) -> str:
    env = {**os.environ, "LABCTL_STATE_DIR": str(tmp_path), "LABCTL_LAB": "nolab"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout


def test_labctl_ps_loads_no_other_command_module_and_no_http_library(tmp_path):
    code = (
        "import sys; from labctl.main import main; code = main(['ps', '-a', 'x']); "
        "print(code, sorted(m for m in sys.modules if m.startswith(('labctl.cli.', 'labctl.scenario', 'http', "
        "'email', 'ssl', 'requests', 'yaml', 'docker', '_strptime', 'secrets', 'random'))))"
    )
    loaded = ["labctl.cli.common", "labctl.cli.drill_log", "labctl.cli.dyno_commands", "labctl.cli.ps"]
    assert _fresh(code, tmp_path) == f"1 {[*loaded, 'labctl.cli.render']}\n"


def test_the_whole_app_lists_commands_in_one_order_whatever_was_loaded_first(tmp_path):
    listing = "import typer; print(list(typer.main.get_group(whole_app()).commands))"
    first = _fresh(f"from labctl.cli import whole_app; {listing}", tmp_path)
    later = _fresh(f"from labctl.cli import _app_for, whole_app; _app_for(['releases']); {listing}", tmp_path)
    assert first == later
    assert first.index("'apps'") < first.index("'ps'") < first.index("'releases'") < first.index("'traffic'")
