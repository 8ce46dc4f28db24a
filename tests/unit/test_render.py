"""Heroku-style text output (heroku-reference §1.3, §8) and the JSON shape of dynos."""

import time

from labctl.cli import render
from labctl.engine.docker import parse_proc_listen


def _dyno(name, state="up", typ=None, cmd="python3 app.py", size="Standard-1X", ts=None):
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts or time.time() - 5))
    return {
        "name": name,
        "type": typ or name.split(".")[0],
        "state": state,
        "size": size,
        "command": cmd,
        "updated_at": stamp,
        "instance": "i-1",
        "release": {"version": 2},
    }


def test_ps_text_groups_like_heroku():
    now = time.time()
    text = render.ps_text(
        "demo",
        [_dyno("web.2", ts=now - 5), _dyno("web.1", ts=now - 120), _dyno("run.4321", cmd="bash", ts=now - 5)],
        now=now,
    )
    lines = text.splitlines()
    # CLI src/commands/ps/index.ts (its test: a blank line after each styledHeader and after each group)
    assert lines[0] == "=== run: one-off processes (1)" and lines[1] == ""
    assert lines[2].startswith("run.4321 (Standard-1X): up ") and lines[2].endswith("(~ 5s ago): bash")
    assert lines[3:6] == ["", "=== web (Standard-1X): python3 app.py (2)", ""]
    assert lines[6].startswith("web.1: up ") and lines[6].endswith("(~ 2m ago)")
    assert lines[7].startswith("web.2: up ") and text.endswith("\n") and len(lines) == 8


def test_ps_text_empty_and_old():
    assert render.ps_text("demo", []) == "No dynos on ⬢ demo"
    old = render.ago("2020-01-01T00:00:00Z")
    assert "ago" not in old and old.startswith("2020/01/01") or old.startswith("2019/12/31")


def test_formation_and_log_line():
    assert (
        render.formation_text(
            [
                {"type": "worker", "quantity": 1, "size": "Standard-1X"},
                {"type": "web", "quantity": 3, "size": "Standard-2X"},
            ]
        )
        == "web=3:Standard-2X worker=1:Standard-1X"
    )
    line = render.log_line({"ts": 0.5, "source": "heroku", "dyno": "web.1", "msg": "State changed from starting to up"})
    assert line == "1970-01-01T00:00:00.500000+00:00 heroku[web.1]: State changed from starting to up"


def test_proc_listen_parsing():
    text = """  sl  local_address rem_address   st
   0: 00000000:2710 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0
   1: 0100007F:0BB8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0
   2: 00000000:1F90 0100007F:1234 01 00000000:00000000 00:00000000 00000000     0
   0: 00000000000000000000000000000000:2711 00000000000000000000000000000000:0000 0A 0
   1: 00000000000000000000000001000000:2712 00000000000000000000000000000000:0000 0A 0
"""
    assert parse_proc_listen(text) == {10000, 10001}
