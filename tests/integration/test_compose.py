"""compose/docker-compose.yml end to end (issue 20 item 6): on a machine where the lab's state folder does not
exist, ``docker-compose up -d --build`` starts a controller that creates its state, stays up and is the one the
host's ``labctl`` talks to (``labctl up`` finds the lab up and starts no second controller); deploy, ``ps:restart``,
``labctl down`` (which stops the Compose container for good), ``docker-compose down``: nothing is left.

A project name, lab name, state folder and ports of the test's own; the controller image it builds is the
project's and ``down --rmi local`` removes it. The base and stack images are shared and stay.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import docker
import pytest

from labctl import const
from labctl.client import controller_answers
from labctl.engine import images
from tests.conftest import REPO, Lab, _leftovers, cli, deploy_sample, wait_until

pytestmark = [pytest.mark.docker, pytest.mark.xdist_group("test_compose")]
COMPOSE_FILE = REPO / "compose" / "docker-compose.yml"


def _processes(lab: str) -> list[str]:
    """Command lines of this lab's controller processes on the host (the container shares the host's pids)."""
    found = []
    for p in Path("/proc").iterdir():
        try:
            words = (p / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if "labctl.controller" in words and lab in words:
            found.append(" ".join(w for w in words if w))
    return found


def test_compose_runs_the_controller_the_host_labctl_talks_to(tmp_path, monkeypatch):
    lab, project = f"t{uuid.uuid4().hex[:8]}", f"lct{uuid.uuid4().hex[:8]}"
    state = tmp_path / "state"  # does not exist: the controller makes it
    env = {
        **os.environ,
        "LABCTL_LAB": lab,
        "LABCTL_STATE_HOME": str(state),
        "LABCTL_HTTP_PORT": "0",
        "LABCTL_HTTPS_PORT": "0",
        "LABCTL_TIMESCALE": "0.05",
    }
    compose = ["docker-compose", "-p", project, "-f", str(COMPOSE_FILE)]
    monkeypatch.setenv("LABCTL_STATE_DIR", str(state))  # the host's labctl: the same state folder
    client = docker.from_env()
    # the controller image is built FROM the base on the engine, no pull: labctl/base:trixie where `labctl up`
    # debootstrapped it, debian:trixie-slim where it pulled that (the file's own advice)
    images.ensure_stack_image(client, lambda line: None)
    env["LABCTL_BASE_IMAGE"] = next(ref for ref in (const.BASE_IMAGE, "debian:trixie-slim") if client.images.list(ref))
    controller_label = {"label": f"io.labctl.controller={lab}"}
    try:
        up = subprocess.run([*compose, "up", "-d", "--build"], env=env, capture_output=True, text=True, timeout=600)
        assert up.returncode == 0, up.stderr[-2000:]
        wait_until(lambda: controller_answers(lab), 120, 0.5, "the Compose controller to answer")
        (container,) = client.containers.list(filters=controller_label)
        assert container.status == "running"

        r = cli("up", "--json", lab=lab)  # the host's labctl finds the lab up and starts nothing
        assert r.code == 0, r.err
        status = json.loads(r.out)
        assert status["changed"] is False
        assert status["state_dir"] == str(state / lab)  # the host's path, not the container's /state
        assert status["router"]["ca_cert"] == str(state / lab / "ca.crt")
        procs = _processes(lab)
        assert len([p for p in procs if " supervise " in p]) == 1 and len([p for p in procs if " serve " in p]) == 1
        pids = [int(row[1]) for row in container.top(ps_args="-eo user,pid")["Processes"]]
        assert status["controller_pid"] in pids  # the one that answers runs in the Compose container

        lab_ = Lab(lab, status["router"]["port"])
        app = deploy_sample(lab_, f"a{uuid.uuid4().hex[:8]}")  # the controller reads the app through /host
        assert lab_.get(app).json()["dyno"] == "web.1"
        before = lab_.dynos(app)["web.1"]
        lab_.ok("ps:restart", "web.1", "-a", app)

        def restarted() -> bool:
            d = lab_.dynos(app).get("web.1")
            return bool(d and d["state"] == "up" and d["container"] != before["container"])

        wait_until(restarted, 60, 0.2, "web.1 restarted")
        assert lab_.get(app).status_code == 200

        down = cli("down", lab=lab)
        assert down.code == 0, down.err
        container.reload()
        assert container.status == "exited"  # stopped through the engine: its restart policy leaves it so
        assert not state.joinpath(lab).exists()
    finally:
        cli("down", lab=lab)
        gone = subprocess.run([*compose, "down", "--rmi", "local"], env=env, capture_output=True, text=True)
        assert gone.returncode == 0, gone.stderr[-2000:]
    assert _leftovers(lab) == []
    assert client.containers.list(all=True, filters=controller_label) == []
    assert client.containers.list(all=True, filters={"label": f"com.docker.compose.project={project}"}) == []
    assert [n.name for n in client.networks.list() if n.name.startswith(project)] == []
    assert client.images.list(name=f"{project}_controller") == []
    assert not state.joinpath(lab).exists()
