"""Reliability (issue 7): the API refuses calls without the lab's token, and a dyno reaches neither the Docker
socket, nor the controller's API, nor a dyno of another Private Space."""

from __future__ import annotations

import json
import os

import pytest
import requests

from labctl.labdir import LabDir
from tests.conftest import Lab, deploy_sample
from tests.integration.helpers import assert_nothing_lost, lab_containers

pytestmark = pytest.mark.docker


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
    app_a, app_b = (
        deploy_sample(lab, f"{app_name}-a", space=space_a),
        deploy_sample(lab, f"{app_name}-b", space=space_b),
    )
    try:
        d = LabDir(lab.name)
        base = f"http://127.0.0.1:{d.api()['port']}"
        state = (lab.json("ps:scale", "-a", app_a), lab.json("config", "-a", app_a), lab.json("apps"))
        attempts = [
            ("GET", "/apps", None),
            ("PATCH", f"/apps/{app_a}/formation", {"updates": [{"type": "web", "quantity": 3}]}),
            ("PATCH", f"/apps/{app_a}/config-vars", {"X": "1"}),
            ("POST", "/apps", {"name": "intruder"}),
            ("DELETE", f"/apps/{app_a}", None),
            ("DELETE", f"/apps/{app_a}/dynos", None),
        ]
        for headers in (
            {},
            {"Authorization": "Bearer wrong"},
            {"Authorization": f"Bearer {d.token()}x"},
            {"Authorization": d.token()},
        ):
            for method, path, body in attempts:
                r = requests.request(method, base + path, json=body, headers=headers, timeout=10)
                assert r.status_code == 401, f"{method} {path} with {headers or 'no token'}: {r.status_code}"
        assert (lab.json("ps:scale", "-a", app_a), lab.json("config", "-a", app_a), lab.json("apps")) == state

        assert os.stat(d.file("token")).st_mode & 0o777 == 0o600
        assert os.stat(d.path).st_mode & 0o777 == 0o700

        other_ip, other_port = _sandbox_address(lab, app_b)
        same_ip, same_port = _sandbox_address(lab, app_a)
        targets = {
            "api_port": d.api()["port"],
            "other_ip": other_ip,
            "other_port": other_port,
            "same_ip": same_ip,
            "same_port": same_port,
        }
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
