"""The console script's fast start (labctl/cli/fast.py): a line it runs gives what the Typer CLI gives, byte for
byte (stdout, stderr, exit status, the API calls); a line it does not read exactly goes to Typer; and
``labctl ps`` then starts without importing Typer."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labctl.cli import fast, main
from labctl.cli import ps as ps_cli
from labctl.errors import NotFound

OLD = "2026-01-01T00:00:00Z"


class _Api:
    """The client calls of ps, restart and stop, for one app ``myapp``; ``calls`` records them."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.labs: list[str] = []

    def __call__(self, lab: str) -> _Api:  # the factory: client(lab)
        self.labs.append(lab)
        return self

    def _app(self, app: str) -> None:
        if app != "myapp":
            raise NotFound("Couldn't find that app.")

    def dynos(self, app: str, include_old: bool = False, extended: bool = False) -> list[dict[str, Any]]:
        self._app(app)
        self.calls.append(("dynos", include_old, extended))
        row = {"type": "web", "state": "up", "size": "Standard-1X", "command": "python3 app.py", "updated_at": OLD}
        ext = {"instance": "i-1", "ip": "10.0.0.2", "port": 5000, "execution_plane": "lab", "region": "lab"}
        return [
            {**row, "name": f"web.{n}", "release": {"version": 3}, **({"extended": ext} if extended else {})}
            for n in (2, 1)
        ]

    def restart(self, app: str, *, dyno: str | None = None, ptype: str | None = None) -> list[str]:
        self._app(app)
        self.calls.append(("restart", dyno, ptype))
        return [dyno or "web.1"]

    def stop(self, app: str, *, dyno: str | None = None, ptype: str | None = None) -> list[str]:
        self._app(app)
        self.calls.append(("stop", dyno, ptype))
        return [dyno or "web.1"]


def _run(args: list[str], use_fast: bool) -> tuple[Any, ...]:
    """Exit status, stdout, stderr, API calls and labs asked for, of the line through ``main``."""
    api = _Api()
    # text streams over bytes, as a terminal's or a pipe's: both paths write to them as they would to a user
    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    err = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setattr(ps_cli, "client", api)  # where a line goes to Typer, also with the fast start on
        if use_fast:
            monkeypatch.setattr(fast, "client", api)
        monkeypatch.setattr(sys, "stdout", out)
        monkeypatch.setattr(sys, "stderr", err)
        code = main(list(args), fast=use_fast)
    out.flush()
    err.flush()
    return code, out.buffer.getvalue().decode(), err.buffer.getvalue().decode(), api.calls, api.labs  # type: ignore[attr-defined]


FAST = [
    ["ps", "-a", "myapp"],
    ["ps", "--app", "myapp", "--json"],
    ["ps", "--app=myapp", "--all", "-x"],
    ["ps", "web", "-a", "myapp", "worker"],
    ["ps", "worker", "-a", "myapp"],
    ["ps", "-a", "nope"],
    ["ps", "-a", ""],
    ["ps"],
    ["ps", "-a", "myapp", "--lab", "BAD LAB"],
    ["ps", "-a", "myapp", "--lab=other"],
    ["ps:restart", "web.1", "-a", "myapp"],
    ["restart", "-a", "myapp"],
    ["dyno:restart", "-p", "web", "-a", "myapp", "--json"],
    ["ps:restart", "--dyno-name", "web.1", "--process-type", "web", "-a", "myapp"],
    ["ps:stop", "web", "-a", "myapp"],
    ["ps:stop", "-a", "myapp"],
    ["kill", "--dyno-name=web.2", "-a", "myapp", "--json"],
    ["stop", "-d", "web.1", "-a", "nope"],
]
TYPERS = [
    ["ps", "--help"],
    ["ps", "-h"],
    ["ps", "-a"],
    ["ps", "-a", "-x"],
    ["ps", "-a", "myapp", "-a", "other"],
    ["ps", "-a", "myapp", "--json=1"],
    ["ps", "-a", "myapp", "--bogus"],
    ["ps", "-amyapp"],
    ["ps", "-xa", "myapp"],
    ["ps", "-a", "myapp", "--", "web"],
    ["ps", "-a", "myapp", "-"],
    ["ps:restart", "web.1", "web.2", "-a", "myapp"],
    ["ps:restart", "-d"],
    ["ps:stop", "--all", "-a", "myapp"],
    ["ps:scale", "-a", "myapp"],
    ["--version"],
    [],
]


@pytest.mark.parametrize("args", FAST, ids=" ".join)
def test_a_line_the_fast_start_reads_gives_what_typer_gives(args: list[str]):
    assert fast.parse(args) is not None
    assert _run(args, True) == _run(args, False)


@pytest.mark.parametrize("args", TYPERS, ids=lambda a: " ".join(a) or "(none)")
def test_any_other_line_is_left_to_typer(args: list[str]):
    assert fast.parse(args) is None
    assert _run(args, True) == _run(args, False)


def test_the_app_and_lab_come_from_the_environment_as_typer_reads_them(monkeypatch: pytest.MonkeyPatch):
    for app_env, lab_env in (("myapp", "lab2"), ("", ""), ("nope", None)):
        monkeypatch.setenv("LABCTL_APP", app_env)
        if lab_env is None:
            monkeypatch.delenv("LABCTL_LAB", raising=False)
        else:
            monkeypatch.setenv("LABCTL_LAB", lab_env)
        for args in (["ps"], ["ps", "-a", "myapp"], ["restart", "web.1"], ["ps", "--lab", "x", "-a", "myapp"]):
            assert _run(args, True) == _run(args, False), (app_env, lab_env, args)


def test_shell_completion_is_left_to_typer(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("_LABCTL_COMPLETE", "bash_complete")
    assert fast.parse(["ps", "-a", "myapp"]) is None


WORDS = ["ps", "ps:restart", "stop", "-a", "--app", "--app=myapp", "myapp", "nope", "web", "web.1", "--json", "--all"]
WORDS += ["-x", "--extended", "-d", "-p", "--lab", "--lab=l2", "--dyno-name=web.1", "-", "--", "--no-json", "-h"]


@settings(deadline=None)  # a line that goes to Typer builds its whole app the first time
@given(st.lists(st.sampled_from(WORDS), max_size=7))
def test_any_line_of_these_words_gives_the_same_either_way(words: list[str]):
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.delenv("LABCTL_APP", raising=False)
        monkeypatch.delenv("LABCTL_LAB", raising=False)
        monkeypatch.setenv("COLUMNS", "100")
        assert _run(words, True) == _run(words, False)


def test_labctl_ps_starts_without_typer(tmp_path):
    code = (
        "import sys; from labctl.main import main; code = main(['ps', '-a', 'x'], fast=True); "
        "print(code, sorted(m for m in ('typer', 'click', 'rich', 'http.client', 'ssl') if m in sys.modules))"
    )
    env = {**os.environ, "LABCTL_STATE_DIR": str(tmp_path), "LABCTL_LAB": "nolab"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout == "1 []\n"
    assert out.stderr == " ▸    Lab 'nolab' is not up. Run: labctl up\n"
