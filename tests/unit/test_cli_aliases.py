"""Heroku's command names: every alias the Heroku CLI gives a command runs that command's code, has help, and
stays out of ``labctl --help`` exactly when the Heroku CLI hides it; ``labctl --version``; the text of
``releases:info`` and ``ps --extended``. No Docker, no lab.

The table is read from the Heroku CLI's source (packages/cli/src/commands/ps/{restart,stop,scale,type}.ts and
releases/rollback.ts: each command's ``static aliases`` and ``static hiddenAliases``), not from labctl.
"""

from __future__ import annotations

import contextlib
import io
import re
from importlib import metadata

import pytest
import typer

from labctl.cli import main, render
from labctl.main import typer_app

# command: (aliases, hiddenAliases)
HEROKU = {
    "ps:restart": ({"dyno:restart"}, {"restart"}),
    "ps:stop": ({"dyno:stop", "ps:kill", "dyno:kill"}, {"stop", "kill"}),
    "ps:scale": ({"dyno:scale"}, {"scale"}),
    "ps:type": ({"ps:resize", "dyno:resize"}, {"resize", "dyno:type"}),
    "releases:rollback": (set(), {"rollback"}),
}
ALIASES = [(cmd, alias, alias in hidden) for cmd, (shown, hidden) in HEROKU.items() for alias in sorted(shown | hidden)]
REGISTERED = {c.name: c for c in typer_app.registered_commands}
CLICK = typer.main.get_command(typer_app).commands  # type: ignore[attr-defined]


def _run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize(("command", "alias", "hidden"), ALIASES, ids=[a for _, a, _ in ALIASES])
def test_each_alias_runs_its_command_s_code(command: str, alias: str, hidden: bool):
    assert alias in REGISTERED, f"labctl {alias} is missing (Heroku: alias of {command})"
    assert REGISTERED[alias].callback is REGISTERED[command].callback
    assert CLICK[alias].hidden is hidden
    assert not CLICK[command].hidden
    assert f"Alias of {command}." in (CLICK[alias].help or "")
    assert [p.name for p in CLICK[alias].params] == [p.name for p in CLICK[command].params]


def test_top_level_help_lists_shown_aliases_only():
    code, out, _ = _run("--help")
    assert code == 0
    listed = set(re.findall(r"^(?:│ | {2})([a-z][\w:-]*)\s", out, flags=re.M))
    assert {"ps:restart", "ps:stop", "dyno:restart", "ps:kill", "releases:rollback", "releases:info"} <= listed
    assert not listed & {"restart", "stop", "kill", "scale", "resize", "dyno:type", "rollback"}


def test_an_alias_parses_like_its_command():
    """Bad input through an alias is the command's own one-line error, before any lab is needed."""
    for argv in (["kill", "-a", "demo"], ["ps:stop", "-a", "demo"]):
        code, out, err = _run(*argv)
        assert (code, out) == (1, "")
        assert err.strip() == "▸    Please specify a process type or dyno name to stop. See more help with --help"


def test_version_prints_the_distribution_s_version():
    code, out, err = _run("--version")
    assert code == 0 and err == ""
    dist = metadata.packages_distributions()["labctl"][0]
    assert out.startswith(f"labctl/{metadata.version(dist)} ") and out.count("\n") == 1


def test_release_info_text_is_the_heroku_cli_s():
    rel = {
        "version": 3,
        "description": "Set FOO config vars",
        "status": "succeeded",
        "created_at": "1970-01-01T00:00:00Z",
        "config": {"FOO": "a b", "BAR": "1"},
    }
    # CLI releases/info.ts: styledObject({'Add-ons', By, Change, 'Eligible for Rollback?', When}), keys padded to
    # the longest (its test: 'By:                     foo@foo.com')
    assert render.release_info_text(rel) == (
        "=== Release v3\n"
        "\n"
        "By:                     labctl@localhost\n"
        "Change:                 Set FOO config vars\n"
        "Eligible for Rollback?: Yes\n"
        "When:                   1970-01-01T00:00:00Z\n"
        "\n"
        "=== v3 Config vars\n"
        "\n"
        "BAR: 1\n"
        "FOO: a b"
    )
    failed = render.release_info_text({**rel, "status": "failed", "config": {}}, shell=True)
    assert "Change:                 Set FOO config vars (release command failed)" in failed
    assert "Eligible for Rollback?: No" in failed
    assert render.release_info_text(rel, shell=True).endswith("FOO='a b'\nBAR=1")


def test_ps_extended_text_has_the_where_columns():
    dynos = [
        {
            "name": n,
            "state": "up",
            "updated_at": None,
            "command": "python3 app.py",
            "size": "Private-S",
            "release": {"version": 2},
            "extended": {"execution_plane": "space:tokyo", "instance": f"i-{n[-1]}", "ip": "172.18.0.5", "port": 5001},
        }
        for n in ("web.10", "web.2")
    ]
    lines = render.ps_extended_text(dynos).splitlines()
    assert lines[0].split() == ["Process", "State", "Execution", "Plane", "Instance", "IP", "Port", "Release"] + [
        "Command",
        "Size",
    ]
    assert set(lines[1].replace(" ", "")) == {"─"}
    assert lines[2].split() == ["web.2", "up", "space:tokyo", "i-2", "172.18.0.5", "5001", "2", "python3"] + [
        "app.py",
        "Private-S",
    ]
    assert lines[3].startswith("web.10 ")
