"""The Heroku CLI's names on a real lab: ``restart`` and ``kill`` (hidden aliases of ``ps:restart`` and
``ps:stop``) do what their commands do in a Private Space, ``releases:info`` shows one release, ``ps --extended``
shows where each dyno runs; bad input is one line and a non-zero exit."""

from __future__ import annotations

import pytest

from tests.conftest import Lab, wait_until

pytestmark = pytest.mark.docker


def _rows(text: str) -> dict[str, dict[str, str]]:
    """``ps --extended``'s table by process name, cut at the header's column starts."""
    header, _, *lines = text.splitlines()
    names = ["Process", "State", "Execution Plane", "Instance", "IP", "Port", "Release", "Command", "Size"]
    starts = [header.index(n) for n in names] + [None]
    return {
        line[: starts[1]].strip(): {n: line[starts[i] : starts[i + 1]].strip() for i, n in enumerate(names)}
        for line in lines
    }


def test_restart_and_kill_aliases_in_a_private_space(lab: Lab, space_app: str):
    app = space_app
    before = lab.dynos(app)["web.1"]
    # CLI src/commands/ps/restart.ts: the positional DYNO warns; the action line goes to stderr, stdout stays empty
    r = lab.cli("restart", "web.1", "-a", app)
    assert (r.code, r.out) == (0, "")
    assert r.err == (
        " ▸    DYNO is a deprecated argument. Use --dyno-name or --process-type instead.\n"
        f"Restarting dyno web.1 on ⬢ {app}... done\n"
    )
    wait_until(
        lambda: (d := lab.dynos(app)["web.1"])["container"] != before["container"] and d["state"] == "up",
        30,
        what="web.1 restarted",
    )
    assert lab.dynos(app)["web.1"]["instance"] == before["instance"], "restart keeps the instance"

    r = lab.cli("kill", "-d", "web.1", "-a", app)  # CLI src/commands/ps/stop.ts
    assert (r.code, r.out, r.err) == (0, "", f"Stopping dyno web.1 on ⬢ {app}... done\n")
    wait_until(
        lambda: (d := lab.dynos(app)["web.1"])["instance"] != before["instance"] and d["state"] == "up",
        30,
        what="web.1 on a new instance",
    )

    # ps --extended: one row per dyno; its instance is the one `instances` says hosts it
    rows = _rows(lab.ok("ps", "--extended", "-a", app))
    assert set(rows) == {"web.1", "web.2"}
    hosts = {d: i["id"] for i in lab.json("instances") for d in i["dynos"]}
    for name, row in rows.items():
        assert row["Instance"] == hosts[f"{app}/{name}"]
        assert row["Execution Plane"].startswith("space:")
        assert row["IP"].count(".") == 3 and row["Port"].isdigit() and row["Release"] == "1"
    assert rows["web.1"]["Instance"] != before["instance"]
    extended = {d["name"]: d["extended"] for d in lab.json("ps", "-x", "-a", app)}
    assert extended["web.2"]["instance"] == rows["web.2"]["Instance"]
    assert "extended" not in lab.json("ps", "-a", app)[0]

    r = lab.cli("kill", "-d", "web.9", "-a", app)
    assert r.code != 0 and r.out == "" and len(r.err.strip().splitlines()) == 1, r


def test_releases_info(lab: Lab, space_app: str):
    app = space_app
    out = lab.ok("releases:info", "v1", "-a", app)
    lines = out.splitlines()
    # CLI src/commands/releases/info.ts
    assert lines[:3] == ["=== Release v1", "", "By:                     labctl@localhost"]
    assert lines[3].startswith("Change:                 Deploy ")
    assert lines[4] == "Eligible for Rollback?: Yes"
    assert lines[5].startswith("When:                   20") and lines[6:8] == ["", "=== v1 Config vars"]
    assert lab.json("releases:info", "-a", app)["version"] == lab.json("releases", "-a", app)[0]["version"]
    assert lab.json("releases:info", "1", "-a", app)["version"] == 1

    for bad in ("v99", "vx", "v"):
        r = lab.cli("releases:info", bad, "-a", app)
        assert (r.code, r.out, r.err.strip()) == (1, "", "▸    Couldn't find that release."), (bad, r)
    r = lab.cli("releases:info", "v1", "-a", "nope-nope")
    assert r.code == 1 and len(r.err.strip().splitlines()) == 1
