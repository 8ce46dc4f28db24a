"""Reliability (issue 7): ``kill -9`` of the controller, during an instance replacement and mid preboot deploy.
The supervisor restarts it and nothing is lost (see ``helpers.nothing_lost_problems``)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import threading
import time
from typing import Any

import docker
import pytest

from labctl.client import Client
from labctl.labdir import LabDir
from tests.conftest import SAMPLE_APP, Lab, deploy_sample, wait_until
from tests.integration.helpers import (
    Traffic,
    assert_nothing_lost,
    assert_releases_without_gaps,
    controller_pid,
    docker_client,
    ignore_errors,
    lab_containers,
    nothing_lost_problems,
    orphan_problems,
)

pytestmark = pytest.mark.docker


# -- kill -9 of the controller during an instance replacement -------------------------------------------------
def _kill_when_signalled(lab: Lab, pid: int, old_container: str, call: threading.Thread) -> None:
    """Kill -9 the controller as soon as the old dyno has been signalled (or the API call returned): the
    replacement is then under way, its old instance not yet torn down."""
    client = docker_client()
    deadline = time.time() + 10
    while time.time() < deadline and call.is_alive():
        try:
            if client.containers.get(old_container).status != "running":
                break
        except docker.errors.NotFound:
            break
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)


def test_kill9_during_instance_replacement_converges(fresh_lab: Lab):
    lab = fresh_lab
    space, app = "k9space", "k9app"
    lab.ok("spaces:create", space)
    deploy_sample(lab, app, web=2, space=space)
    before = lab.dynos(app)
    old_instance = before["web.1"]["instance"]
    releases = lab.json("releases", "-a", app)
    config = lab.json("config", "-a", app)
    pid = controller_pid(lab)
    assert pid

    client = Client(lab.name)
    call = threading.Thread(target=lambda: ignore_errors(client.post, f"/apps/{app}/dynos/web.1/actions/stop"))
    call.start()  # `ps:stop web.1`
    _kill_when_signalled(lab, pid, before["web.1"]["container"], call)
    call.join(timeout=30)

    new_pid = wait_until(
        lambda: (p := controller_pid(lab)) not in (None, pid) and p, 30, 0.2, "the supervisor restarting the controller"
    )
    assert new_pid != pid
    problems: list[str] = []

    def converged() -> bool:
        nonlocal problems
        problems = nothing_lost_problems(lab, {app: {"web": 2}})
        w = lab.dynos(app).get("web.1")
        if not w or w["instance"] in (None, old_instance):
            problems.append(f"web.1 not on a new instance: {w and (w['instance'], w['state'], w['container'])}")
        if old_instance in {i["id"] for i in lab.json("instances")}:
            problems.append(f"old instance {old_instance} still in `labctl instances`")
        leftovers = lab_containers(lab.name, "dyno", instance=old_instance) + lab_containers(
            lab.name, "sandbox", instance=old_instance
        )
        if leftovers:
            problems.append(f"old instance's containers still there: {[c.name for c in leftovers]}")
        sandboxes = sorted(s.labels["io.labctl.instance"] for s in lab_containers(lab.name, "sandbox", app))
        instances = sorted(d["instance"] or "-" for d in lab.dynos(app).values())
        if sandboxes != instances or len(set(instances)) != 2:
            problems.append(f"sandboxes on {sandboxes}, dynos on {instances}: not one sandbox per PS dyno")
        return not problems

    try:
        wait_until(converged, 60, 0.5, "convergence after kill -9")
    except AssertionError:
        raise AssertionError(f"not converged 60 s after kill -9: {'; '.join(problems)}") from None
    assert lab.json("releases", "-a", app) == releases
    assert lab.json("config", "-a", app) == config


# -- kill -9 of the controller during a preboot deploy --------------------------------------------------------
def _rollout(lab: Lab, app: str) -> dict[str, Any]:
    """The app's rollout as the store has it (what a restarted controller resumes from)."""
    con = sqlite3.connect(str(LabDir(lab.name).file("lab.db")), timeout=30)
    try:
        return json.loads(con.execute("SELECT rollout FROM apps WHERE name = ?", (app,)).fetchone()[0])
    finally:
        con.close()


def test_kill9_during_preboot_deploy_resumes_its_timer(fresh_lab: Lab):
    """``kill -9`` of the controller while a preboot deploy starts its new dynos (the first v2 container exists,
    the rest of the rollout not done): the supervisor restarts it, and it finishes the SAME rollout on the
    persisted switch time (release + boot timeout + 2 min, scaled): the old release serves until the switch,
    the new one from it, the old dynos stop then; no request fails, nothing is left behind."""
    lab = fresh_lab
    app = deploy_sample(lab, "pbapp", web=2)
    lab.ok("features:enable", "preboot", "-a", app)
    releases, config = lab.json("releases", "-a", app), lab.json("config", "-a", app)
    switch = (60 + 120) * json.loads(lab.ok("status", "--json"))["timescale"]
    pid = controller_pid(lab)
    assert pid
    client = Client(lab.name, timeout=240)
    build = threading.Thread(target=lambda: ignore_errors(lambda: list(client.build(app, str(SAMPLE_APP)))))
    old_gone_at: float | None = None
    with Traffic(lab, app, max_seconds=120) as traffic:
        time.sleep(1)
        build.start()  # `labctl deploy`: the slug build, then release v2 and its preboot
        started = wait_until(
            lambda: lab_containers(lab.name, "dyno", app, release="2") and time.time(),
            120,
            0.02,
            "the first v2 dyno container",
        )
        os.kill(pid, signal.SIGKILL)
        build.join(timeout=30)
        persisted = _rollout(lab, app)
        assert persisted.get("kind") == "deploy" and persisted.get("release") == 2, (
            f"the preboot was not recorded before its first new dyno started: {persisted}"
        )
        switch_at = persisted["switch_at"]
        assert abs(switch_at - (started + switch)) < 3, (switch_at - started, switch)
        wait_until(
            lambda: (p := controller_pid(lab)) not in (None, pid) and p,
            30,
            0.2,
            "the supervisor restarting the controller",
        )
        restarted = time.time()
        resumed = _rollout(lab, app)
        problems: list[str] = []

        def converged() -> bool:
            nonlocal problems, old_gone_at
            if old_gone_at is None and not lab_containers(lab.name, "dyno", app, release="1"):
                old_gone_at = time.time()
            problems = nothing_lost_problems(lab, {app: {"web": 2}})
            every = lab.json("ps", "--all", "-a", app)
            if any(d.get("old") for d in every) or old_gone_at is None:
                problems.append(f"old dynos still there: {[(d['name'], d['release']['version']) for d in every]}")
            if {d["release"]["version"] for d in every} != {2}:
                problems.append(f"not all on v2: {[(d['name'], d['release']['version']) for d in every]}")
            return not problems

        try:
            wait_until(converged, switch + 60, 0.3, "the preboot converging after kill -9")
        except AssertionError:
            raise AssertionError(f"not converged after kill -9: {'; '.join(problems)}") from None
        time.sleep(1)
    print(
        f"kill at +0, controller back at +{restarted - started:.1f} s, switch_at +{switch_at - started:.1f} s, "
        f"old dynos gone at +{old_gone_at - started:.1f} s"
    )  # type: ignore[operator]
    assert resumed.get("switch_at") == switch_at, f"the restarted controller set another switch time: {resumed}"
    assert traffic.failed() == [], f"{len(traffic.failed())} failed requests: {traffic.failed()[:3]}"
    v1 = [r["t"] for r in traffic.records if r["release"] == "v1"]
    v2 = [r["t"] for r in traffic.records if r["release"] == "v2"]
    assert v2, "the new release never served"
    assert min(v2) >= switch_at - 0.25, f"a v2 dyno served {switch_at - min(v2):.2f} s before the switch"
    assert max(v1) >= switch_at - 1.0, f"v1 stopped serving {switch_at - max(v1):.2f} s before the switch"
    assert min(v2) <= switch_at + 3.0, f"the switch came {min(v2) - switch_at:.2f} s late"
    assert max(v1) - min(v2) < 0.5, "at most a short overlap at the switch"
    assert old_gone_at is not None and old_gone_at - switch_at <= 30 * switch / 180 + 5, (
        "the old dynos were not stopped at the switch (SIGTERM, then the scaled 30 s grace at most)"
    )
    lab.ok("ps:scale", "web=2", "-a", app)  # the formation is no longer locked by a preboot in progress
    assert [(r["version"], r["status"]) for r in lab.json("releases", "-a", app)] == [(2, "succeeded")] + [
        (r["version"], r["status"]) for r in releases
    ]
    assert_releases_without_gaps(lab, app)
    assert lab.json("config", "-a", app) == config
    assert_nothing_lost(lab, {app: {"web": 2}}, timeout=10)
    assert orphan_problems(lab) == []
