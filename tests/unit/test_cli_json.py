"""Every command that prints takes ``--json``, and the shell completion can be installed.

The command tree is walked from the console script's app (``labctl.main``, so ``scenario …`` is in it), as
tests/unit/test_cli_help.py walks it. A new command without ``--json`` fails here; a command that truly cannot
print JSON goes in ALLOWED with the reason beside it.
"""

from __future__ import annotations

import typer

from labctl.main import typer_app

# command path → why it cannot print JSON. Empty today: every command that prints has --json (`traffic --json FILE`
# writes the requests and the summary to FILE, or to stdout with '-').
ALLOWED: dict[str, str] = {}

ROOT = typer.main.get_command(typer_app)


def _leaves() -> list[tuple[str, typer.core.TyperCommand]]:
    found = []

    def walk(cmd: object, path: list[str]) -> None:
        subs = getattr(cmd, "commands", None)
        if subs:
            for name, sub in sorted(subs.items()):
                walk(sub, [*path, name])
        else:
            found.append((" ".join(path), cmd))

    walk(ROOT, [])
    return found  # type: ignore[return-value]


def test_every_command_takes_json():
    leaves = _leaves()
    assert len(leaves) > 40 and {"ps", "run", "scenario validate", "apps:destroy"} <= {p for p, _ in leaves}
    missing = [
        path
        for path, cmd in leaves
        if not cmd.hidden and path not in ALLOWED and not any("--json" in p.opts for p in cmd.params)
    ]
    assert missing == [], f"commands without --json: {missing}"
    assert set(ALLOWED) <= {p for p, _ in leaves}, "ALLOWED names a command that no longer exists"


def test_the_check_catches_a_command_without_json():
    app = typer.Typer()

    @app.command("shout")
    def shout() -> None:
        """Print something."""

    @app.command("quiet")
    def quiet(json: bool = typer.Option(False, "--json")) -> None:
        """Print something, or JSON."""

    cmds = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    assert [n for n, c in cmds.items() if not any("--json" in p.opts for p in c.params)] == ["shout"]


def test_shell_completion_is_installable():
    """Typer's add_completion is on: ``labctl --install-completion`` and ``--show-completion`` exist."""
    opts = {o for p in ROOT.params for o in p.opts}
    assert {"--install-completion", "--show-completion"} <= opts
