"""The platform core against the real engine: spaces, apps, deploys, ps, restart/stop semantics, router, logs."""

from __future__ import annotations

import re

import pytest

from tests.conftest import Lab, wait_until

pytestmark = pytest.mark.docker


def body(lab: Lab, app: str) -> dict:
    """The sample app's JSON, or {} while the router answers an error page (e.g. the restart gap)."""
    r = lab.get(app)
    return r.json() if r.status_code == 200 else {}


def served_by(lab: Lab, app: str, tries: int = 40) -> set[str]:
    seen = set()
    for _ in range(tries):
        r = lab.get(app)
        if r.status_code == 200:
            seen.add(r.json()["dyno"])
    return seen


def test_up_is_idempotent(lab: Lab):
    r = lab.cli("up", "--json")
    assert r.code == 0 and '"changed": false' in r.out
    status = lab.json("status")
    assert status["router"]["url"] == f"http://127.0.0.1:{lab.port}"


def test_private_space_restart_keeps_instance_stop_replaces_it(lab: Lab, space_app: str):
    app = space_app
    assert served_by(lab, app) == {"web.1", "web.2"}
    before = lab.dynos(app)["web.1"]
    body = lab.get(app).json()
    assert body["app"] == app and body["release"] == "v1" and body["instance"].startswith("i-")

    lab.ok("ps:restart", "web.1", "-a", app)
    wait_until(
        lambda: (
            lab.dynos(app)["web.1"]["container"] != before["container"] and lab.dynos(app)["web.1"]["state"] == "up"
        ),
        30,
        what="web.1 restarted",
    )
    after = lab.dynos(app)["web.1"]
    assert after["instance"] == before["instance"], "ps:restart in a Private Space keeps the instance"
    assert "web.1" in served_by(lab, app)

    lab.ok("ps:stop", "--dyno-name", "web.1", "-a", app)
    wait_until(
        lambda: lab.dynos(app)["web.1"]["instance"] != before["instance"] and lab.dynos(app)["web.1"]["state"] == "up",
        30,
        what="web.1 on a new instance",
    )
    ids = {i["id"] for i in lab.json("instances")}
    wait_until(lambda: before["instance"] not in {i["id"] for i in lab.json("instances")}, 20, what="old instance gone")
    assert lab.dynos(app)["web.1"]["instance"] in ids
    import docker

    leftovers = docker.from_env().containers.list(
        all=True, ignore_removed=True, filters={"label": f"io.labctl.instance={before['instance']}"}
    )
    assert leftovers == [], "the replaced instance's containers are gone"
    assert "web.1" in served_by(lab, app)


def test_common_runtime_restart_moves_stop_comes_back(lab: Lab, cr_app: str):
    app = cr_app
    before = lab.dynos(app)["web.1"]
    lab.ok("ps:restart", "web.1", "-a", app)
    wait_until(
        lambda: (
            lab.dynos(app)["web.1"]["state"] == "up" and lab.dynos(app)["web.1"]["container"] != before["container"]
        ),
        30,
        what="restart",
    )
    assert lab.dynos(app)["web.1"]["instance"] != before["instance"], "CR restart lands on another host"

    mid = lab.dynos(app)["web.1"]
    lab.ok("ps:stop", "web.1", "-a", app)
    wait_until(
        lambda: lab.dynos(app)["web.1"]["state"] == "up" and lab.dynos(app)["web.1"]["container"] != mid["container"],
        30,
        what="web.1 back by itself",
    )
    assert served_by(lab, app) == {"web.1", "web.2"}


def test_scale_to_zero_h14_and_one_offs(lab: Lab, cr_app: str):
    app = cr_app
    r = lab.cli("ps:scale", "web=0", "-a", app)  # CLI src/commands/ps/scale.ts: only the type changed, on stderr
    assert (r.code, r.out) == (0, "")
    assert re.fullmatch(r"Scaling dynos\.\.\. done, now running web at 0:[\w-]+\n", r.err), r.err
    wait_until(lambda: lab.get(app).status_code == 503, 20, what="503 after web=0")
    wait_until(lambda: "code=H14" in lab.logs(app), 10, what="H14 router line")
    out = lab.ok("ps", "-a", app)
    assert out.strip() == f"No dynos on ⬢ {app}"

    r = lab.cli("run", "-a", app, "python3", "-c", "print('hello from run'); raise SystemExit(3)")
    assert r.code == 3 and "hello from run" in r.out

    import json

    detached = json.loads(lab.ok("run:detached", "--json", "-a", app, "sleep", "600"))
    name = detached["name"]
    assert name.startswith("run.")
    wait_until(lambda: lab.dynos(app).get(name, {}).get("state") == "up", 20, what="detached one-off up")
    lab.ok("ps:stop", name, "-a", app)
    wait_until(lambda: name not in lab.dynos(app), 20, what="one-off gone for good")


def test_config_set_new_release_and_rollback(lab: Lab, cr_app: str):
    app = cr_app
    r = lab.cli("config:set", "GREETING=bar", "-a", app)  # CLI src/commands/config/set.ts
    assert (r.code, r.out, r.err) == (0, "GREETING: bar\n", f"Setting GREETING and restarting ⬢ {app}... done, v2\n")
    wait_until(lambda: body(lab, app).get("greeting") == "bar", 30, what="dynos see GREETING")
    assert lab.ok("config:get", "GREETING", "-a", app).strip() == "bar"
    releases = lab.json("releases", "-a", app)
    assert [r["version"] for r in releases][:2] == [2, 1]
    assert releases[0]["description"] == "Set GREETING config vars"
    r = lab.cli("rollback", "-a", app)  # CLI src/commands/releases/rollback.ts
    assert (r.code, r.out) == (0, "") and r.err == (
        f"Rolling back ⬢ {app} to v1... done, v3\n"
        " ▸    Rollback affects code and config vars; it doesn't add or remove addons.\n"
        " ▸    To undo, run: labctl rollback v2\n"
    )
    wait_until(
        lambda: (
            body(lab, app).get("release") == "v3"
            and "greeting" in body(lab, app)
            and body(lab, app)["greeting"] is None
        ),
        30,
        what="rollback served",
    )
    api = lab.ok("logs", "-a", app, "-d", "api", "-n", "200")
    assert "app[api]: Release v3 created by user" in api and "Rollback to v1" in api
    logs = lab.logs(app)
    assert "heroku[web.1]: State changed from starting to up" in logs
    assert "heroku[router]: at=info method=GET" in logs


@pytest.mark.parametrize(
    "args,needle",
    [
        (("ps", "-a", "nosuchapp"), "Couldn't find that app"),
        (("ps", "-a", "Bad_Name"), "Couldn't find that app"),
        (("apps:create", "Bad_Name"), "is invalid"),
        (("ps:scale", "web==2", "-a", "nosuchapp"), "Invalid argument"),
        (("ps:restart", "-d", "web.99", "-a", "nosuchapp"), "Couldn't find that app."),
        (("deploy", "/tmp", "-a", "nosuchapp"), "No Procfile"),
        (("ps:stop", "-a", "nosuchapp"), "Please specify a process type or dyno name"),
    ],
)
def test_bad_input_is_one_line(lab: Lab, args, needle):
    r = lab.cli(*args)
    assert r.code != 0
    assert needle in r.err
    assert "Traceback" not in r.err + r.out
    assert len(r.err.strip().splitlines()) == 1


def test_unknown_dyno_and_bad_scale_change_nothing(lab: Lab, cr_app: str):
    app = cr_app
    before = lab.dynos(app)
    r = lab.cli("ps:restart", "-d", "web.9", "-a", app)  # the Platform API's not_found words, no name added
    assert (r.code, r.out, r.err.strip()) == (1, "", "▸    Couldn't find that dyno.")
    r = lab.cli("ps:scale", "mailer=2", "-a", app)
    assert r.code != 0 and "Couldn't find that process type" in r.err
    after = lab.dynos(app)
    assert {k: v["container"] for k, v in after.items()} == {k: v["container"] for k, v in before.items()}


def test_attached_run_hangs_up_when_the_client_goes_away(lab: Lab, cr_app: str):
    import socket
    from urllib.parse import urlsplit

    import requests

    from labctl.labdir import LabDir

    d = LabDir(lab.name)
    resp = requests.post(
        f"http://127.0.0.1:{d.api()['port']}/apps/{cr_app}/dynos",
        timeout=30,
        headers={"Authorization": f"Bearer {d.token()}", "Accept": "application/vnd.heroku+json; version=3"},
        json={"command": "sleep 600", "attach": True},
    )
    assert resp.status_code == 201, resp.text
    url = urlsplit(resp.json()["attach_url"])
    assert url.scheme == "rendezvous" and url.hostname == "127.0.0.1"
    name = resp.json()["name"]
    with socket.create_connection((url.hostname, url.port), timeout=30) as sock:  # as Heroku's CLI attaches
        sock.sendall(url.path.lstrip("/").encode() + b"\r\n")
        assert sock.recv(12).startswith(b"rendezvous")
        wait_until(lambda: lab.dynos(cr_app).get(name, {}).get("state") == "up", 30, what="the one-off is up")
    # the learner closed the terminal
    wait_until(
        lambda: "Client connection closed. Sending SIGHUP to all processes" in lab.logs(cr_app),
        15,
        what="SIGHUP on hang-up",
    )
    wait_until(lambda: name not in lab.dynos(cr_app), 20, what="the one-off ends")
