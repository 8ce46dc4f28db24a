"""Reliability (issue 7): nothing is lost when the controller is killed, under concurrent calls, with bad
credentials, malformed input, or a state directory that cannot be written.

Every test ends with "nothing lost": the formation is what was asked, every formation dyno is up, every dyno
container of the app(s) is the ``container`` of a dyno in ``ps --json`` (and their counts match), and the
state (releases, config) is what the accepted calls made it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import docker
import pytest
import requests
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from labctl.client import Client
from labctl.labdir import LabDir
from tests.conftest import SAMPLE_APP, Lab, cli, wait_until

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
        r = c.session.request(op["method"], c.base + op["path"], json=op["body"], timeout=240)
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
        print("statuses:", sorted(Counter((r["kind"], r["status"]) for r in results).items()))
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
        r = self.client.session.request(method, self.client.base + path, data=data, timeout=60,
                                        headers={"Content-Type": "application/json"})
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


