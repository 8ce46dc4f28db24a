"""Reliability (issue 7): nothing is lost when the controller is killed (also mid preboot deploy), when the
Docker engine restarts under the lab (on a private engine), under concurrent calls, with bad credentials,
malformed input, or a state directory that cannot be written.

Every test ends with "nothing lost": the formation is what was asked, every formation dyno is up, every dyno
container of the app(s) is the ``container`` of a dyno in ``ps --json`` (and their counts match), and the
state (releases, config) is what the accepted calls made it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import docker
import pytest
import requests
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from labctl import const
from labctl.client import Client
from labctl.engine.faults import cpu_quota
from labctl.labdir import LabDir
from tests.conftest import SAMPLE_APP, Lab, cli, wait_until
from tests.integration.test_preboot import Traffic

pytestmark = pytest.mark.docker

HYPOTHESIS = settings(max_examples=40, deadline=None, database=None, derandomize=False,
                      suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


# -- helpers ------------------------------------------------------------------------------------------------
def _docker() -> docker.DockerClient:
    return docker.from_env()


def lab_containers(lab: str, kind: str, app: str | None = None, **labels: str) -> list[Any]:
    filters = [f"io.labctl.lab={lab}", f"io.labctl.kind={kind}"]
    filters += [f"io.labctl.app={app}"] if app else []
    filters += [f"io.labctl.{k}={v}" for k, v in labels.items()]
    return _docker().containers.list(all=True, ignore_removed=True, filters={"label": filters})


def formation_of(lab: Lab, app: str) -> dict[str, int]:
    return {f["type"]: f["quantity"] for f in lab.json("ps:scale", "-a", app)}


def nothing_lost_problems(lab: Lab, want: dict[str, dict[str, int]]) -> list[str]:
    """What is wrong with "nothing lost" for these apps right now (empty list: all good)."""
    problems = []
    for app, types in want.items():
        formation = formation_of(lab, app)
        if any(formation.get(t) != q for t, q in types.items()):
            problems.append(f"{app}: formation {formation}, asked {types}")
        dynos = lab.dynos(app)
        expected = {f"{t}.{i}" for t, q in types.items() for i in range(1, q + 1)}
        formation_dynos = {n for n, d in dynos.items() if d["type"] in types}
        if formation_dynos != expected:
            problems.append(f"{app}: dynos {sorted(formation_dynos)}, expected {sorted(expected)}")
        down = [n for n in expected & formation_dynos if dynos[n]["state"] != "up"]
        if down:
            problems.append(f"{app}: not up: {[(n, dynos[n]['state']) for n in down]}")
        running = {c.id for c in lab_containers(lab.name, "dyno", app)}
        app_listed = {d["container"] for d in dynos.values() if d["container"]}
        if running - app_listed:
            problems.append(f"{app}: orphan dyno containers {sorted(c[:12] for c in running - app_listed)}")
        if app_listed - running:
            gone = sorted(c[:12] for c in app_listed - running)
            problems.append(f"{app}: ps names containers that do not exist {gone}")
        if len(running) != len(app_listed):
            problems.append(f"{app}: {len(running)} dyno containers, {len(app_listed)} in ps")
    return problems


def assert_nothing_lost(lab: Lab, want: dict[str, dict[str, int]], timeout: float = 90.0) -> None:
    """Wait for the lab to settle, then require "nothing lost" (the last problems found are the message)."""
    last: list[str] = []

    def settled() -> bool:
        nonlocal last
        last = nothing_lost_problems(lab, want)
        return not last

    try:
        wait_until(settled, timeout, 0.5, "nothing lost")
    except AssertionError:
        raise AssertionError(f"not settled after {timeout:.0f} s: {'; '.join(last)}") from None


def assert_releases_without_gaps(lab: Lab, app: str) -> list[int]:
    versions = sorted(r["version"] for r in lab.json("releases", "-a", app))
    assert versions == list(range(1, len(versions) + 1)), f"{app}: release numbers have gaps: {versions}"
    return versions


def deployed(lab: Lab, app: str, space: str | None = None, web: int = 1) -> str:
    lab.ok("apps:create", app, *(["--space", space] if space else []))
    lab.ok("deploy", str(SAMPLE_APP), "-a", app)
    if web != 1:
        lab.ok("ps:scale", f"web={web}", "-a", app)
    lab.wait_up(app, [f"web.{i}" for i in range(1, web + 1)], timeout=90)
    return app


def controller_pid(lab: Lab) -> int | None:
    r = lab.cli("status", "--json")
    return json.loads(r.out)["controller_pid"] if r.code == 0 else None


def orphan_problems(lab: Lab, spaces: list[str] = ()) -> list[str]:
    """Docker objects and faults of the lab that its state does not account for (empty list: none).

    One running router; every container of the lab running; one running sandbox per (instance, app), on an
    instance ``labctl instances`` lists; the lab's networks are the common one and one per space; no fault
    rule is left on any instance. Dyno containers are checked against ``ps`` by ``nothing_lost_problems``.
    """
    problems = []
    routers = lab_containers(lab.name, const.KIND_ROUTER)
    if [c.status for c in routers] != ["running"]:
        problems.append(f"router containers: {[(c.name, c.status) for c in routers]}")
    everything = _docker().containers.list(all=True, ignore_removed=True,
                                           filters={"label": f"{const.LABEL_LAB}={lab.name}"})
    stopped = [(c.name, c.status) for c in everything if c.status != "running"]
    if stopped:
        problems.append(f"containers of the lab not running: {stopped}")
    instances = {i["id"]: i for i in lab.json("instances")}
    seen: Counter[tuple[str, str]] = Counter()
    for sb in lab_containers(lab.name, const.KIND_SANDBOX):
        inst, app = sb.labels.get(const.LABEL_INSTANCE), sb.labels.get(const.LABEL_APP)
        seen[(inst, app)] += 1
        if inst not in instances:
            problems.append(f"sandbox {sb.name} on an instance `labctl instances` does not list")
    if any(n > 1 for n in seen.values()):
        problems.append(f"more than one sandbox for {[k for k, n in seen.items() if n > 1]}")
    nets = sorted(n.name for n in _docker().networks.list(filters={"label": f"{const.LABEL_LAB}={lab.name}"}))
    want = sorted([f"labctl-{lab.name}-common"] + [f"labctl-{lab.name}-space-{s}" for s in spaces])
    if nets != want:
        problems.append(f"networks {nets}, expected {want}")
    faulty = {iid: i["faults"] for iid, i in instances.items() if i["faults"]}
    if faulty or lab.json("faults"):
        problems.append(f"fault rules left: {faulty or lab.json('faults')}")
    return problems


def one_error_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one error line, got: {err!r}"
    assert "Traceback" not in err
    return lines[0]


# -- kill -9 of the controller during an instance replacement -------------------------------------------------
def _kill_when_signalled(lab: Lab, pid: int, old_container: str, call: threading.Thread) -> None:
    """Kill -9 the controller as soon as the old dyno has been signalled (or the API call returned): the
    replacement is then under way, its old instance not yet torn down."""
    client = _docker()
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
    deployed(lab, app, space, web=2)
    before = lab.dynos(app)
    old_instance = before["web.1"]["instance"]
    releases = lab.json("releases", "-a", app)
    config = lab.json("config", "-a", app)
    pid = controller_pid(lab)
    assert pid

    client = Client(lab.name)
    call = threading.Thread(target=lambda: _ignore_errors(client.post, f"/apps/{app}/dynos/web.1/actions/stop"))
    call.start()  # `ps:stop web.1`
    _kill_when_signalled(lab, pid, before["web.1"]["container"], call)
    call.join(timeout=30)

    new_pid = wait_until(lambda: (p := controller_pid(lab)) not in (None, pid) and p, 30, 0.2,
                         "the supervisor restarting the controller")
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
        leftovers = lab_containers(lab.name, "dyno", instance=old_instance) + \
            lab_containers(lab.name, "sandbox", instance=old_instance)
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


def _ignore_errors(fn: Any, *args: Any) -> None:
    try:
        fn(*args)
    except Exception:  # noqa: BLE001 - the controller is killed under this call on purpose
        pass


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
    app = deployed(lab, "pbapp", web=2)
    lab.ok("features:enable", "preboot", "-a", app)
    releases, config = lab.json("releases", "-a", app), lab.json("config", "-a", app)
    switch = (60 + 120) * json.loads(lab.ok("status", "--json"))["timescale"]
    pid = controller_pid(lab)
    assert pid
    client = Client(lab.name, timeout=240)
    build = threading.Thread(target=lambda: _ignore_errors(
        lambda: list(client.stream("POST", f"/apps/{app}/builds", {"source_dir": str(SAMPLE_APP)}))))
    old_gone_at: float | None = None
    with Traffic(lab, app, max_seconds=120) as traffic:
        time.sleep(1)
        build.start()  # `labctl deploy`: the slug build, then release v2 and its preboot
        started = wait_until(lambda: lab_containers(lab.name, "dyno", app, release="2") and time.time(), 120, 0.02,
                             "the first v2 dyno container")
        os.kill(pid, signal.SIGKILL)
        build.join(timeout=30)
        persisted = _rollout(lab, app)
        assert persisted.get("kind") == "deploy" and persisted.get("release") == 2, \
            f"the preboot was not recorded before its first new dyno started: {persisted}"
        switch_at = persisted["switch_at"]
        assert abs(switch_at - (started + switch)) < 3, (switch_at - started, switch)
        wait_until(lambda: (p := controller_pid(lab)) not in (None, pid) and p, 30, 0.2,
                   "the supervisor restarting the controller")
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
    print(f"kill at +0, controller back at +{restarted - started:.1f} s, switch_at +{switch_at - started:.1f} s, "
          f"old dynos gone at +{old_gone_at - started:.1f} s")  # type: ignore[operator]
    assert resumed.get("switch_at") == switch_at, f"the restarted controller set another switch time: {resumed}"
    assert traffic.failed() == [], f"{len(traffic.failed())} failed requests: {traffic.failed()[:3]}"
    v1 = [r["t"] for r in traffic.records if r["release"] == "v1"]
    v2 = [r["t"] for r in traffic.records if r["release"] == "v2"]
    assert v2, "the new release never served"
    assert min(v2) >= switch_at - 0.25, f"a v2 dyno served {switch_at - min(v2):.2f} s before the switch"
    assert max(v1) >= switch_at - 1.0, f"v1 stopped serving {switch_at - max(v1):.2f} s before the switch"
    assert min(v2) <= switch_at + 3.0, f"the switch came {min(v2) - switch_at:.2f} s late"
    assert max(v1) - min(v2) < 0.5, "at most a short overlap at the switch"
    assert old_gone_at is not None and old_gone_at - switch_at <= 30 * switch / 180 + 5, \
        "the old dynos were not stopped at the switch (SIGTERM, then the scaled 30 s grace at most)"
    lab.ok("ps:scale", "web=2", "-a", app)  # the formation is no longer locked by a preboot in progress
    assert [(r["version"], r["status"]) for r in lab.json("releases", "-a", app)] == \
        [(2, "succeeded")] + [(r["version"], r["status"]) for r in releases]
    assert_releases_without_gaps(lab, app)
    assert lab.json("config", "-a", app) == config
    assert_nothing_lost(lab, {app: {"web": 2}}, timeout=10)
    assert orphan_problems(lab) == []


# -- 50 concurrent calls on two apps ------------------------------------------------------------------------------
def _ops(apps: list[str], n: int, seed: int = 7) -> list[dict[str, Any]]:
    import random

    rng = random.Random(seed)
    ops = []
    for i in range(n):
        app = apps[i % 2]
        kind = ("scale", "restart", "stop", "config")[rng.randrange(4)]
        if kind == "scale":
            ops.append({"kind": kind, "app": app, "method": "PATCH", "path": f"/apps/{app}/formation",
                        "body": {"args": [f"web={rng.randint(0, 3)}"]}})
        elif kind == "restart":
            path = rng.choice([f"/apps/{app}/dynos/web.1", f"/apps/{app}/dynos", f"/apps/{app}/formations/web"])
            ops.append({"kind": kind, "app": app, "method": "DELETE", "path": path, "body": None})
        elif kind == "stop":
            ops.append({"kind": kind, "app": app, "method": "POST",
                        "path": f"/apps/{app}/dynos/web.{rng.randint(1, 2)}/actions/stop", "body": None})
        else:
            ops.append({"kind": kind, "app": app, "method": "PATCH", "path": f"/apps/{app}/config-vars",
                        "body": {f"K{i}": f"v{i}-{rng.randint(0, 999)}"}})
    return ops


def _call(lab: str, op: dict[str, Any]) -> dict[str, Any]:
    c = Client(lab, timeout=240)
    try:
        r = requests.request(op["method"], c.base + op["path"], json=op["body"], headers=c.headers, timeout=240)
    except requests.RequestException as err:
        return {**op, "status": None, "answer": f"no answer: {err}"}
    try:
        answer = r.json()
    except ValueError:
        answer = r.text
    return {**op, "status": r.status_code, "answer": answer}


def _last_scaled(lab: Lab, app: str) -> int:
    """The web quantity of the last ``Scaled to`` line of the app's log (the last scale the controller applied)."""
    rows = Client(lab.name).get(f"/apps/{app}/log-lines", n=1500)
    scaled = [r["msg"] for r in rows if r["msg"].startswith("Scaled to ")]
    assert scaled, f"no 'Scaled to' line in {app}'s log"
    m = re.search(r"\bweb@(\d+):", scaled[-1])
    assert m, scaled[-1]
    return int(m.group(1))


def test_fifty_concurrent_calls_on_two_apps(lab: Lab, app_name: str):
    space = f"s{app_name[1:]}"
    lab.ok("spaces:create", space)
    apps = [deployed(lab, f"{app_name}-cr"), deployed(lab, f"{app_name}-ps", space)]
    try:
        ops = _ops(apps, 50)
        with ThreadPoolExecutor(max_workers=50) as pool:
            results = list(pool.map(lambda op: _call(lab.name, op), ops))
        print("statuses:", sorted(Counter((r["kind"], r["status"]) for r in results).items(), key=str))
        bad = [r for r in results if r["status"] is None or r["status"] >= 500
               or (400 <= r["status"] < 500 and not (isinstance(r["answer"], dict) and r["answer"].get("message")))]
        assert not bad, f"calls not answered with 2xx or a clean 4xx: {bad}"
        for r in results:
            if r["kind"] == "config":
                assert r["status"] == 200, f"a valid config:set was refused: {r}"
        for app in apps:
            mine = [r for r in results if r["app"] == app]
            scales = [r for r in mine if r["kind"] == "scale" and r["status"] == 200]
            sets = [r for r in mine if r["kind"] == "config"]
            final = _last_scaled(lab, app) if scales else 1
            if scales:
                assert final in {int(r["body"]["args"][0].split("=")[1]) for r in scales}
            assert formation_of(lab, app) == {"web": final, "worker": 0}, "the formation is what the last scale said"
            versions = assert_releases_without_gaps(lab, app)
            assert versions[-1] == 1 + len(sets), f"{app}: one release per config:set (v1 is the deploy)"
            config = lab.json("config", "-a", app)
            for r in sets:
                for k, v in r["body"].items():
                    assert config.get(k) == v, f"{app}: config var {k} lost"
            assert_nothing_lost(lab, {app: {"web": final}}, timeout=150)
    finally:
        for app in apps:
            lab.cli("apps:destroy", "-a", app)
        lab.cli("spaces:destroy", space)


# -- credentials and isolation ----------------------------------------------------------------------------------
PROBE = r"""
import json, os, socket, sys
targets = json.loads(sys.argv[1])
def gateway():
    for line in open("/proc/net/route").read().splitlines()[1:]:
        f = line.split()
        if f[1] == "00000000":
            return socket.inet_ntoa(bytes.fromhex(f[2])[::-1])
def reach(host, port):
    try:
        socket.create_connection((host, port), timeout=2).close()
        return True
    except OSError:
        return False
gw = gateway()
out = {"docker_sock": [p for p in ("/var/run/docker.sock", "/run/docker.sock") if os.path.exists(p)],
       "gateway": gw,
       "api_via_gateway": reach(gw, targets["api_port"]),
       "api_via_loopback": reach("127.0.0.1", targets["api_port"]),
       "api_via_docker0": reach("172.17.0.1", targets["api_port"]),
       "other_space_dyno": reach(targets["other_ip"], targets["other_port"]),
       "same_space_dyno": reach(targets["same_ip"], targets["same_port"])}
print("PROBE " + json.dumps(out))
"""


def _sandbox_address(lab: Lab, app: str, dyno: str = "web.1") -> tuple[str, int]:
    row = lab.dynos(app)[dyno]
    (sb,) = lab_containers(lab.name, "sandbox", app, instance=row["instance"])
    ip = next(n["IPAddress"] for n in sb.attrs["NetworkSettings"]["Networks"].values() if n.get("IPAddress"))
    return ip, int(row["port"])


def test_api_needs_the_token_and_dynos_are_fenced(lab: Lab, app_name: str):
    space_a, space_b = f"s{app_name[1:]}a", f"s{app_name[1:]}b"
    lab.ok("spaces:create", space_a)
    lab.ok("spaces:create", space_b)
    app_a, app_b = deployed(lab, f"{app_name}-a", space_a), deployed(lab, f"{app_name}-b", space_b)
    try:
        d = LabDir(lab.name)
        base = f"http://127.0.0.1:{d.api()['port']}"
        state = (lab.json("ps:scale", "-a", app_a), lab.json("config", "-a", app_a), lab.json("apps"))
        attempts = [("GET", "/apps", None), ("PATCH", f"/apps/{app_a}/formation", {"args": ["web=3"]}),
                    ("PATCH", f"/apps/{app_a}/config-vars", {"X": "1"}), ("POST", "/apps", {"name": "intruder"}),
                    ("DELETE", f"/apps/{app_a}", None), ("DELETE", f"/apps/{app_a}/dynos", None)]
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Bearer {d.token()}x"},
                        {"Authorization": d.token()}):
            for method, path, body in attempts:
                r = requests.request(method, base + path, json=body, headers=headers, timeout=10)
                assert r.status_code == 401, f"{method} {path} with {headers or 'no token'}: {r.status_code}"
        assert (lab.json("ps:scale", "-a", app_a), lab.json("config", "-a", app_a), lab.json("apps")) == state

        assert os.stat(d.file("token")).st_mode & 0o777 == 0o600
        assert os.stat(d.path).st_mode & 0o777 == 0o700

        other_ip, other_port = _sandbox_address(lab, app_b)
        same_ip, same_port = _sandbox_address(lab, app_a)
        targets = {"api_port": d.api()["port"], "other_ip": other_ip, "other_port": other_port,
                   "same_ip": same_ip, "same_port": same_port}
        r = lab.cli("run", "-a", app_a, "python3", "-c", PROBE, json.dumps(targets))
        assert r.code == 0, r.err + r.out
        probe = json.loads(r.out.split("PROBE ", 1)[1].splitlines()[0])
        assert probe["same_space_dyno"], f"control: a dyno reaches its own space's dynos ({probe})"
        assert probe["docker_sock"] == [], f"the Docker socket is inside a dyno: {probe}"
        assert not probe["api_via_gateway"], f"a dyno reaches the controller's API via the host gateway: {probe}"
        assert not probe["api_via_docker0"], f"a dyno reaches the controller's API via docker0: {probe}"
        assert not probe["api_via_loopback"], f"a dyno reaches the controller's API on its loopback: {probe}"
        assert not probe["other_space_dyno"], f"a dyno in {space_a} reaches a dyno in {space_b}: {probe}"
        assert_nothing_lost(lab, {app_a: {"web": 1}, app_b: {"web": 1}})
    finally:
        for app in (app_a, app_b):
            lab.cli("apps:destroy", "-a", app)
        lab.cli("spaces:destroy", space_a)
        lab.cli("spaces:destroy", space_b)


# -- malformed API bodies and CLI arguments (Hypothesis) -------------------------------------------------------
json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=16)
json_values = st.recursive(json_scalars, lambda kids: st.lists(kids, max_size=3)
                           | st.dictionaries(st.text(max_size=8), kids, max_size=3), max_leaves=6)


def bodies(*keys: str) -> st.SearchStrategy:
    """Any JSON, objects with the endpoint's own keys (any values), and bytes that are not JSON at all."""
    return st.one_of(json_values, st.dictionaries(st.sampled_from(keys) | st.text(max_size=6), json_values,
                                                  max_size=3), st.binary(max_size=24))


class Probe:
    """Sends one body and checks: never a 5xx; a 4xx is a clean JSON error and changes nothing."""

    def __init__(self, lab: Lab, app: str):
        self.lab = lab
        self.app = app
        self.client = Client(lab.name, timeout=60)

    def snapshot(self) -> dict[str, Any]:
        c, app = self.client, self.app
        dynos = c.get(f"/apps/{app}/dynos")
        return {"apps": sorted(a["name"] for a in c.get("/apps")),
                "spaces": sorted(s["name"] for s in c.get("/spaces")),
                "formation": c.get(f"/apps/{app}/formation"), "config": c.get(f"/apps/{app}/config-vars"),
                "releases": [(r["version"], r["description"]) for r in c.get(f"/apps/{app}/releases")],
                "dynos": sorted((d["name"], d["container"], d["size"]) for d in dynos if d["type"] != "run"),
                "runs": sorted(d["name"] for d in dynos if d["type"] == "run")}

    def send(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        r = requests.request(method, self.client.base + path, data=data, timeout=60,
                             headers={**self.client.headers, "Content-Type": "application/json"})
        try:
            return r.status_code, r.json()
        except ValueError:
            return r.status_code, r.text

    def check(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        before = self.snapshot()
        status, answer = self.send(method, path, body)
        assert status < 500, f"{method} {path} {body!r} -> {status} {answer}"
        assert status != 401
        if status >= 400:
            assert isinstance(answer, dict) and isinstance(answer.get("message"), str) and answer["message"], answer
            assert "Traceback" not in answer["message"]
            after = self.snapshot()
            if before["runs"] != after["runs"]:  # one-offs of earlier accepted bodies may finish meanwhile
                assert set(after["runs"]) <= set(before["runs"]), f"rejected {body!r} left a one-off: {after['runs']}"
                before["runs"] = after["runs"]
            assert after == before, f"rejected {method} {path} {body!r} ({status}) changed the state"
        return status, answer

    def settle(self) -> None:
        want = {f["type"]: f["quantity"] for f in self.client.get(f"/apps/{self.app}/formation")}
        assert_nothing_lost(self.lab, {self.app: want}, timeout=60)


@pytest.fixture(scope="module")
def fuzz_app(lab: Lab) -> Iterator[str]:
    app = f"z{uuid.uuid4().hex[:8]}"
    deployed(lab, app)
    yield app
    lab.cli("apps:destroy", "-a", app)


@HYPOTHESIS
@given(body=bodies("args", "sizes"))
@example(body={"args": ["web=1:no-such-size"]})
@example(body={"sizes": {"web": 3}})
def test_fuzz_patch_formation(lab: Lab, fuzz_app: str, body: Any):
    p = Probe(lab, fuzz_app)
    before = p.snapshot()["formation"]
    status, _ = p.check("PATCH", f"/apps/{fuzz_app}/formation", body)
    if status < 300:  # accepted: put the formation back as it was
        p.send("PATCH", f"/apps/{fuzz_app}/formation", {"sizes": {f["type"]: f["size"] for f in before}})
        p.send("PATCH", f"/apps/{fuzz_app}/formation", {"args": [f"{f['type']}={f['quantity']}" for f in before]})
        p.settle()


NO_NUL = st.characters(blacklist_characters="\x00")


@HYPOTHESIS
@given(body=bodies("A_KEY", "B") | st.dictionaries(st.text(max_size=8), st.text(NO_NUL, max_size=12) | st.none(),
                                                   max_size=3))
@example(body={"": "x"})
@example(body={"A-B": "x"})
def test_fuzz_patch_config_vars(lab: Lab, fuzz_app: str, body: Any):
    """Random bodies (values without NUL: see the next test)."""
    if isinstance(body, dict) and any(isinstance(v, str) and "\x00" in v for v in body.values()):
        return
    p = Probe(lab, fuzz_app)
    status, _ = p.check("PATCH", f"/apps/{fuzz_app}/config-vars", body)
    if status < 300:
        p.settle()


def test_config_value_with_nul_is_refused(lab: Lab, fuzz_app: str):
    p = Probe(lab, fuzz_app)
    try:
        status, answer = p.check("PATCH", f"/apps/{fuzz_app}/config-vars", {"NUL_VALUE": "a\x00b"})
        assert status == 422, f"accepted: {status} {str(answer)[:120]}"
    finally:
        p.send("PATCH", f"/apps/{fuzz_app}/config-vars", {"NUL_VALUE": None})
        p.settle()


@HYPOTHESIS
@given(body=bodies("name") | st.fixed_dictionaries({"name": json_values}, optional={"space": st.text(max_size=8)
                                                                                    | st.none()}))
@example(body={"name": "Bad Name"})
@example(body={"name": "abc", "space": "no-such-space"})
def test_fuzz_post_apps(lab: Lab, fuzz_app: str, body: Any):
    """Random bodies; a non-string ``space`` is the next test."""
    if isinstance(body, dict) and not isinstance(body.get("space"), (str, type(None))):
        body = {**body, "space": None}
    p = Probe(lab, fuzz_app)
    status, answer = p.check("POST", "/apps", body)
    if status < 300:
        p.send("DELETE", f"/apps/{answer['name']}", None)


def test_post_apps_with_non_string_space_is_a_clean_4xx(lab: Lab, fuzz_app: str):
    p = Probe(lab, fuzz_app)
    for space in (["x"], {"a": 1}):
        p.check("POST", "/apps", {"name": "okname", "space": space})


@HYPOTHESIS
@given(body=bodies("name"))
def test_fuzz_post_spaces(lab: Lab, fuzz_app: str, body: Any):
    p = Probe(lab, fuzz_app)
    status, answer = p.check("POST", "/spaces", body)
    if status < 300:
        p.send("DELETE", f"/spaces/{answer['name']}", None)


@settings(HYPOTHESIS, max_examples=15)
@given(command=json_values | st.text(max_size=40))
@example(command="")
@example(command="   ")
@example(command="echo a\x00b")
def test_fuzz_run_command_strings(lab: Lab, fuzz_app: str, command: Any):
    """Random ``command`` values: a string runs as a one-off dyno (wrapped in ``timeout 5`` so that a random word
    like ``yes`` cannot run on); anything else is refused and changes nothing."""
    p = Probe(lab, fuzz_app)
    status, answer = p.check("POST", f"/apps/{fuzz_app}/dynos", {
        "command": f"timeout 5 {command}" if isinstance(command, str) and command.strip() else command})
    if status < 300:
        wait_until(lambda: answer["name"] not in {d["name"] for d in lab.dynos(fuzz_app).values()}, 30, 0.3,
                   f"one-off {answer['name']} finished and gone from ps")


def test_run_with_a_bad_size_changes_nothing(lab: Lab, fuzz_app: str):
    p = Probe(lab, fuzz_app)
    try:
        for size in ("no-such-size", ["x"]):
            p.check("POST", f"/apps/{fuzz_app}/dynos", {"command": "true", "size": size})
        lab.ok("ps:restart", "web.1", "-a", fuzz_app)
        assert_nothing_lost(lab, {fuzz_app: {"web": 1}}, timeout=20)
    finally:
        for name, d in lab.dynos(fuzz_app).items():
            if d["type"] == "run":
                lab.cli("ps:stop", name, "-a", fuzz_app)
        p.settle()


def test_malformed_content_length_is_a_clean_4xx(lab: Lab):
    import socket

    d = LabDir(lab.name)
    with socket.create_connection(("127.0.0.1", d.api()["port"]), timeout=10) as s:
        s.sendall(f"PATCH /apps/nosuch/config-vars HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {d.token()}\r\n"
                  "Content-Length: abc\r\nConnection: close\r\n\r\n{}".encode())
        head = s.recv(200).decode(errors="replace")
    status = int(head.split()[1])
    assert 400 <= status < 500, head


CLI_WORDS = ["web", "web.1", "web.0", "web=", "web=-1", "web=2x", "web+", "web=99999", "worker=0", "=x", "A=",
             "a-b=1", "-p", "-d", "--process-type", "--dyno-name", "--json", "-a", "--lab", "--bogus", "web.1.2", "x.y"]


@HYPOTHESIS
@given(command=st.sampled_from(["ps:scale", "config:set", "ps:restart"]),
       args=st.lists(st.sampled_from(CLI_WORDS) | st.text(max_size=10), max_size=4))
@example(command="ps:scale", args=["web=1:no-such-size"])
@example(command="config:set", args=["NOEQUALS"])
@example(command="ps:restart", args=["web.1", "-p", "web"])
def test_fuzz_cli_arguments(lab: Lab, fuzz_app: str, command: str, args: list[str]):
    p = Probe(lab, fuzz_app)
    before = p.snapshot()
    r = cli(command, "-a", fuzz_app, *args, lab=lab.name)
    assert "Traceback" not in r.err + r.out
    assert "internal error" not in r.err, r.err
    if r.code != 0:
        assert r.err.strip(), f"labctl {command} {args} failed ({r.code}) without a word on stderr"
        assert p.snapshot() == before, f"rejected `labctl {command} {args}` changed the state"
    else:
        p.settle()


# -- a state directory that cannot be written -------------------------------------------------------------------
def _chattr(flag: str, paths: list[Path]) -> None:
    r = subprocess.run(["chattr", flag, *map(str, paths)], capture_output=True, text=True)
    assert r.returncode == 0, f"chattr {flag} failed (needs root and a file system with the immutable flag, e.g. " \
                              f"ext4; the state dir is {paths[0].parent}): {r.stderr.strip()}"


def _integrity(db: Path) -> str:
    con = sqlite3.connect(str(db), timeout=30)
    try:
        return con.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        con.close()


def test_read_only_state_database(fresh_lab: Lab):
    """The db and its WAL made immutable (chmod does not stop root): a change fails with one line, and
    after restoring, the database is intact and the lab works again."""
    lab = fresh_lab
    app = deployed(lab, "roapp")
    d = LabDir(lab.name)
    files = [d.file("lab.db"), d.file("lab.db-wal")]  # not the -shm: SQLite maps it, a write fault would be SIGBUS
    assert all(f.exists() for f in files)
    _chattr("+i", files)
    try:
        set_var = lab.cli("config:set", "FOO=bar", "-a", app)
        create = lab.cli("apps:create", "roother")
    finally:
        _chattr("-i", files)
    for r in (set_var, create):
        assert r.code != 0, "a change was accepted while the state database could not be written"
        line = one_error_line(r.err)
        assert re.search(r"read-only|readonly|I/O|not writable|permission|disk", line, re.I), line
    assert _integrity(d.file("lab.db")) == "ok"
    assert "FOO" not in lab.json("config", "-a", app)
    assert "roother" not in {a["name"] for a in lab.json("apps")}
    lab.ok("config:set", "FOO=bar", "-a", app)
    assert lab.json("config", "-a", app)["FOO"] == "bar"
    assert_nothing_lost(lab, {app: {"web": 1}})
    assert_releases_without_gaps(lab, app)


@pytest.fixture
def tiny_state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """LABCTL_STATE_DIR on a 4 MB tmpfs, unmounted afterwards."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(mnt)], capture_output=True,
                       text=True)
    assert r.returncode == 0, f"cannot mount a tmpfs here (needs root/CAP_SYS_ADMIN): {r.stderr.strip()}"
    monkeypatch.setenv("LABCTL_STATE_DIR", str(mnt))
    try:
        yield mnt
    finally:
        if subprocess.run(["umount", str(mnt)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _fill(directory: Path) -> Path:
    """Fill the file system of ``directory`` to the last block (bounded: at most 64 MB written)."""
    filler = directory / "filler"
    with open(filler, "wb", buffering=0) as f:  # unbuffered: nothing left to flush (and fail) on close
        for _ in range(64 * 16):
            try:
                f.write(b"\0" * 65536)
            except OSError:
                break
        for _ in range(64):
            try:
                f.write(b"\0" * 512)
            except OSError:
                break
    return filler


def test_disk_full_state_dir(tiny_state_dir: Path):
    name = f"t{uuid.uuid4().hex[:8]}"
    try:
        r = cli("up", "--timescale", "0.05", "--http-port", "0", "--json", lab=name)
        assert r.code == 0, r.err + r.out
        lab = Lab(name, json.loads(r.out)["router"]["port"])
        lab.ok("apps:create", "fullapp")
        filler = _fill(tiny_state_dir / name)
        try:
            rs = [lab.cli("config:set", f"BIG={'x' * 200_000}", "-a", "fullapp"),
                  lab.cli("apps:create", "fullother")]
        finally:
            filler.unlink()
        for res in rs:
            assert res.code != 0, "a change was accepted on a full disk"
            line = one_error_line(res.err)
            assert re.search(r"full|space|disk|I/O", line, re.I), line
        assert _integrity(LabDir(name).file("lab.db")) == "ok"
        assert "BIG" not in lab.json("config", "-a", "fullapp")
        assert "fullother" not in {a["name"] for a in lab.json("apps")}
        lab.ok("config:set", "SMALL=1", "-a", "fullapp")
        assert lab.json("config", "-a", "fullapp") == {"SMALL": "1"}
    finally:
        down = cli("down", lab=name)
        assert down.code == 0, down.err
        assert not _docker().containers.list(all=True, ignore_removed=True, filters={"label": f"io.labctl.lab={name}"})




# -- the Docker engine restarted under a running lab ---------------------------------------------------------
class PrivateEngine:
    """A second dockerd of the test's own, in a network namespace of its own (own socket, data and exec root,
    containerd, bridges, routes and iptables), so the test can restart "the engine" without touching the main
    one. Every step that talks to the lab over TCP, and every process it spawns (dockerd, the lab's
    controller), runs in that namespace: see ``in_netns``. ``close()`` removes every trace.

    Why a namespace: a second dockerd in the host's namespace breaks the main engine. Started with
    ``--bridge none``, or restarted with ``default-address-pools`` (needed there so its networks do not
    overlap the main engine's), it deletes the host's ``docker0`` (moby's removeDefaultBridgeInterface).
    """

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="labctl-eng-", dir="/tmp"))  # short: socket paths are limited
        self.host = f"unix://{self.root}/docker.sock"
        self.netns = f"labctl-{self.root.name[-8:]}"
        self.driver = _main_storage_driver()  # now, while DOCKER_HOST still names the main engine
        self.proc: subprocess.Popen | None = None
        for cmd in (["ip", "netns", "add", self.netns], ["ip", "netns", "exec", self.netns, "ip", "link", "set",
                                                         "lo", "up"]):
            r = subprocess.run(cmd, capture_output=True, text=True)
            assert r.returncode == 0, f"{' '.join(cmd)}: {r.stderr} (needs root and iproute2)"

    def in_netns(self, fn: Callable[[], Any]) -> Any:
        """``fn()`` in a thread that joined the namespace: its sockets, threads and child processes live there."""
        import ctypes

        out: list[Any] = []
        failed: list[BaseException] = []

        def run() -> None:
            try:
                fd = os.open(f"/var/run/netns/{self.netns}", os.O_RDONLY)
                try:
                    if ctypes.CDLL(None, use_errno=True).setns(fd, 0x40000000) != 0:  # CLONE_NEWNET, this thread
                        raise OSError(ctypes.get_errno(), "setns")
                finally:
                    os.close(fd)
                out.append(fn())
            except BaseException as err:  # noqa: BLE001 - raised again in the caller's thread
                failed.append(err)

        t = threading.Thread(target=run, name=f"in-{self.netns}")
        t.start()
        t.join()
        if failed:
            raise failed[0]
        return out[0]

    def start(self, timeout: float = 90.0) -> None:
        """Start dockerd (call it through ``in_netns``: the daemon inherits the namespace)."""
        dockerd = shutil.which("dockerd") or shutil.which("dockerd", path="/usr/sbin:/usr/bin")
        assert dockerd, "dockerd not found (the Docker engine package)"
        config = {"storage-driver": self.driver, "iptables": False, "ip6tables": False, "ip-masq": False,
                  "log-driver": "json-file"}
        (self.root / "daemon.json").write_text(json.dumps(config))
        log = open(self.root / "dockerd.log", "ab")  # noqa: SIM115 - the child holds it
        self.proc = subprocess.Popen(
            [dockerd, "--config-file", str(self.root / "daemon.json"), "--host", self.host,
             "--data-root", str(self.root / "data"), "--exec-root", str(self.root / "exec"),
             "--pidfile", str(self.root / "docker.pid")],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        log.close()
        deadline = time.time() + timeout
        while time.time() < deadline and self.proc.poll() is None:
            try:
                if self.client().ping():
                    return
            except (docker.errors.DockerException, requests.RequestException):
                time.sleep(0.2)
        raise AssertionError(f"the private dockerd did not answer within {timeout:.0f} s:\n{self.log_tail()}")

    def stop(self, timeout: float = 60.0) -> None:
        """SIGTERM, as systemd stops dockerd (it stops the containers first); SIGKILL after ``timeout``."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        self.proc = None

    def client(self) -> docker.DockerClient:
        return docker.DockerClient(base_url=self.host, timeout=120)

    def load_images(self, *refs: str) -> None:
        """``docker save`` from the main engine piped into ``docker load`` here."""
        env = {**os.environ, "DOCKER_HOST": self.host}
        main_env = {k: v for k, v in os.environ.items() if k != "DOCKER_HOST"}
        save = subprocess.Popen(["docker", "save", *refs], stdout=subprocess.PIPE, env=main_env)
        load = subprocess.run(["docker", "load"], stdin=save.stdout, capture_output=True, text=True, env=env,
                              timeout=600)
        save.stdout.close()  # type: ignore[union-attr]
        assert save.wait(600) == 0 and load.returncode == 0, f"image copy failed: {load.stderr}"

    def log_tail(self) -> str:
        try:
            return "\n".join((self.root / "dockerd.log").read_text(errors="replace").splitlines()[-15:])
        except OSError:
            return ""

    def close(self) -> None:
        """Remove everything on the engine, stop it, delete its namespace (and with it every interface it made),
        and leave no mount or directory behind."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                c = self.client()
                for cont in c.containers.list(all=True, ignore_removed=True):
                    cont.remove(force=True)
            except (docker.errors.DockerException, requests.RequestException):
                pass
        self.stop()
        subprocess.run(["ip", "netns", "delete", self.netns], capture_output=True)
        mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
                  if line.split()[1].startswith(str(self.root))]
        for m in sorted(mounts, key=len, reverse=True):
            subprocess.run(["umount", "-l", m], capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)


def _main_storage_driver() -> str:
    """The main engine's storage driver when the private one can use it (overlay2 or fuse-overlayfs), else vfs."""
    try:
        driver = docker.from_env().info().get("Driver", "")
    except docker.errors.DockerException:
        driver = ""
    return driver if driver in ("overlay2", "fuse-overlayfs") else "vfs"


@pytest.fixture
def private_engine(lab_state: Path) -> Iterator[PrivateEngine]:
    from labctl.engine import images

    main = docker.from_env()
    images.ensure_stack_image(main, lambda _line: None)  # on the main engine, to copy it
    docker0 = _link_index("docker0")
    engine = PrivateEngine()
    try:
        engine.in_netns(engine.start)
        engine.load_images(const.STACK_IMAGE)
        yield engine
    finally:
        engine.close()
        assert _link_index("docker0") == docker0, "the main engine's docker0 was touched"
        assert engine.netns not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert not any(line.split()[1].startswith(str(engine.root))
                       for line in Path("/proc/mounts").read_text().splitlines()), f"mounts left under {engine.root}"
        assert not Path(engine.root).exists(), f"{engine.root} left behind"


def _link_index(name: str) -> int | None:
    try:
        return int(Path(f"/sys/class/net/{name}/ifindex").read_text())
    except OSError:
        return None


def _served_by(lab: Lab, app: str, want: set[str], timeout: float) -> set[str]:
    """Dynos seen answering through the router (bounded: at most ``timeout`` s of requests, 20 per second)."""
    seen: set[str] = set()
    deadline = time.time() + timeout
    while time.time() < deadline and not want <= seen:
        try:
            r = lab.get(app, timeout=3)
            if r.status_code == 200:
                seen.add(r.json()["dyno"])
        except requests.RequestException:
            pass
        time.sleep(0.05)
    return seen


def test_engine_restart_under_a_running_lab_recovers(private_engine: PrivateEngine,
                                                     monkeypatch: pytest.MonkeyPatch):
    """dockerd stopped (SIGTERM: it stops every container) and started again under a running lab, on a private
    engine. The controller keeps running and recovers by itself: dynos restart on their instances (not as
    crashes), sandboxes are replaced, the router is back on the same port and routes to the new addresses,
    its log lines are followed again; nothing lost, nothing left over, the state as it was."""
    main = docker.from_env()
    monkeypatch.setenv("DOCKER_HOST", private_engine.host)  # the CLI and the controller it spawns use it
    name = f"t{uuid.uuid4().hex[:8]}"
    try:
        private_engine.in_netns(lambda: _engine_restart(private_engine, name))
    finally:
        if private_engine.proc is None:  # failed while the engine was away: `down` needs it
            private_engine.in_netns(private_engine.start)
        down = cli("down", lab=name)
        if down.code != 0:
            from labctl.lab import _stop_processes

            _stop_processes(LabDir(name))  # no controller of this lab may outlive the test
        assert down.code == 0, down.err
        assert private_engine.client().containers.list(all=True) == []
        assert not main.containers.list(all=True, filters={"label": f"{const.LABEL_LAB}={name}"}), \
            "nothing of this lab on the main engine"


def _engine_restart(private_engine: PrivateEngine, name: str) -> None:
    """The test's body, in the private engine's network namespace (see ``PrivateEngine.in_netns``)."""
    space, cr_app, ps_app = "engspace", "engapp", "engps"
    r = cli("up", "--timescale", "0.05", "--http-port", "0", "--json", lab=name)
    assert r.code == 0, r.err + r.out
    lab = Lab(name, json.loads(r.out)["router"]["port"])
    lab.ok("spaces:create", space)
    deployed(lab, cr_app, web=2)
    deployed(lab, ps_app, space, web=1)
    want = {cr_app: {"web": 2}, ps_app: {"web": 1}}
    lab.ok("faults:add", "cpu", "--cpus", "0.5", "--dyno", "web.1", "-a", ps_app)  # belongs to the instance
    faults = [{k: v for k, v in f.items() if k != "dynos"} for f in lab.json("faults")]
    assert len(faults) == 1
    assert _served_by(lab, cr_app, {"web.1", "web.2"}, 20) == {"web.1", "web.2"}
    before = {app: lab.dynos(app) for app in want}
    state = {app: (lab.json("releases", "-a", app), lab.json("config", "-a", app), formation_of(lab, app))
             for app in want}
    apps, spaces = lab.json("apps"), lab.json("spaces")
    pid = controller_pid(lab)

    t = time.time()
    private_engine.stop()
    stopped = time.time()
    stop_took = stopped - t
    time.sleep(2)  # the controller sees the engine gone
    away = json.loads(lab.ok("status", "--json"))
    assert (away["controller_pid"], away["engine"], away["router"]["port"]) == (pid, "unreachable", lab.port), \
        f"`labctl status` while the engine is away: {away}"
    private_engine.start()
    back = time.time()

    problems: list[str] = []

    def recovered() -> bool:
        nonlocal problems
        problems = nothing_lost_problems(lab, want)
        for app, old in before.items():
            now = lab.dynos(app)
            same = [n for n in old if n in now and now[n]["container"] == old[n]["container"]]
            if same:
                problems.append(f"{app}: {same} still on the containers the engine stopped")
        return not problems

    try:
        wait_until(recovered, 90, 0.5, "the lab recovering after the engine restart")
    except AssertionError:
        warnings = [line for line in LabDir(name).file("controller.log").read_text().splitlines()
                    if " WARNING " in line or " ERROR " in line]
        raise AssertionError(f"not recovered 90 s after the engine came back: {'; '.join(problems)}\n"
                             + "\n".join(warnings[:12])) from None
    seen = _served_by(lab, cr_app, {"web.1", "web.2"}, 30)
    served = time.time()
    print(f"engine stopped in {stop_took:.1f} s, away {back - stopped:.1f} s; dynos up and served through "
          f"the router {served - back:.1f} s after it answered again")
    assert seen == {"web.1", "web.2"}, f"served through the router on port {lab.port}: {seen}"
    assert _served_by(lab, ps_app, {"web.1"}, 20) == {"web.1"}
    assert controller_pid(lab) == pid, "recovered by the running controller, not by a restart"
    assert json.loads(lab.ok("status", "--json"))["engine"] == "ok"
    assert json.loads(lab.ok("status", "--json"))["router"]["port"] == lab.port, "the router moved port"
    assert lab.dynos(ps_app)["web.1"]["instance"] == before[ps_app]["web.1"]["instance"], \
        "a Private Space dyno comes back on its instance (like a host reboot)"
    for app in want:
        assert (lab.json("releases", "-a", app), lab.json("config", "-a", app), formation_of(lab, app)) \
            == state[app], f"{app}: state changed"
        assert all(d["release"]["version"] == 1 for d in lab.dynos(app).values())
        log = lab.logs(app)
        assert "State changed from up to crashed" not in log, f"{app}: the engine restart counted as a crash"
    assert lab.json("apps") == apps and lab.json("spaces") == spaces
    assert [{k: v for k, v in f.items() if k != "dynos"} for f in lab.json("faults")] == faults, \
        "the instance's fault is kept"
    quota = _docker().containers.get(lab.dynos(ps_app)["web.1"]["container"]).attrs["HostConfig"]["CpuQuota"]
    assert quota == cpu_quota(0.5), "the instance's cpu fault applies to the dyno that came back on it"
    lab.ok("faults:clear", "--all")
    wait_until(lambda: re.search(r"heroku\[router\]: at=info .*status=200",
                                 lab.logs(cr_app).split("Restarting")[-1]),
               10, 0.2, "the router's log lines followed again after the engine restart")
    assert_nothing_lost(lab, want, timeout=10)
    assert orphan_problems(lab, [space]) == []
