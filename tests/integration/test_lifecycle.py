"""The lab's own lifecycle: controller crash recovery, down, and the errors a user sees when things are off."""

from __future__ import annotations

import os
import signal
import time

import docker
import pytest

from tests.conftest import SAMPLE_APP, Lab, cli, wait_until

pytestmark = pytest.mark.docker


def _controller_pid(lab: Lab) -> int:
    return lab.json("status")["controller_pid"]


def test_kill_9_during_scale_converges_without_orphans(fresh_lab: Lab, app_name: str):
    lab = fresh_lab
    lab.ok("apps:create", app_name)
    lab.ok("deploy", str(SAMPLE_APP), "-a", app_name)
    lab.ok("ps:scale", "web=4", "-a", app_name)
    time.sleep(0.3)  # mid-way: some dynos started, some not
    old = _controller_pid(lab)
    os.kill(old, signal.SIGKILL)
    wait_until(
        lambda: lab.cli("status", "--json").code == 0 and _controller_pid(lab) != old,
        30,
        what="controller restarted by its supervisor",
    )
    lab.wait_up(app_name, ["web.1", "web.2", "web.3", "web.4"], timeout=60)

    client = docker.from_env()

    def settled():
        dynos = client.containers.list(
            all=True, ignore_removed=True, filters={"label": [f"io.labctl.lab={lab.name}", "io.labctl.kind=dyno"]}
        )
        return len(dynos) == 4 and all(c.status == "running" for c in dynos)

    wait_until(settled, 30, what="exactly 4 running dyno containers (no orphans)")
    ids = {
        c.id
        for c in client.containers.list(
            ignore_removed=True, filters={"label": [f"io.labctl.lab={lab.name}", "io.labctl.kind=dyno"]}
        )
    }
    assert ids == {d["container"] for d in lab.dynos(app_name).values()}
    assert lab.json("releases", "-a", app_name)[0]["version"] == 1


def test_down_removes_everything_even_after_kill_9(lab_state, app_name: str):
    import json
    import uuid

    name = f"t{uuid.uuid4().hex[:8]}"
    r = cli("up", "--timescale", "0.05", "--http-port", "0", "--json", lab=name)
    assert r.code == 0, r.err
    lab = Lab(name, json.loads(r.out)["router"]["port"])
    lab.ok("spaces:create", "kyoto")
    lab.ok("apps:create", app_name, "--space", "kyoto")
    lab.ok("deploy", str(SAMPLE_APP), "-a", app_name)
    lab.wait_up(app_name, ["web.1"])
    os.kill(_controller_pid(lab), signal.SIGKILL)
    assert cli("down", lab=name).code == 0
    client = docker.from_env()
    label = f"io.labctl.lab={name}"
    assert client.containers.list(all=True, ignore_removed=True, filters={"label": label}) == []
    assert client.networks.list(filters={"label": label}) == []
    assert client.images.list(filters={"label": label}) == []
    r = cli("ps", "-a", app_name, lab=name)
    assert r.code != 0 and "is not up" in r.err


def test_engine_down_is_one_clear_line(lab_state, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    r = cli("up", lab="tnoengine")
    assert r.code != 0
    assert "Docker engine is not reachable" in r.err and "Traceback" not in r.err
    assert len(r.err.strip().splitlines()) == 1


def test_controller_not_running_is_one_clear_line(lab_state):
    r = cli("ps", "-a", "demo", lab="tneverup")
    assert r.code != 0 and "is not up. Run: labctl up" in r.err
