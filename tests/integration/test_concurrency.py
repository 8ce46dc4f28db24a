"""Reliability (issue 7): 50 concurrent API calls on two apps; each is answered (2xx or a clean 4xx), the state is
what the accepted calls made it, nothing is lost."""

from __future__ import annotations

import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from labctl.client import Client
from tests.conftest import Lab, deploy_sample
from tests.integration.helpers import assert_nothing_lost, assert_releases_without_gaps, formation_of

pytestmark = pytest.mark.docker


# -- 50 concurrent calls on two apps ------------------------------------------------------------------------------
def _ops(apps: list[str], n: int, seed: int = 7) -> list[dict[str, Any]]:
    import random

    rng = random.Random(seed)
    ops = []
    for i in range(n):
        app = apps[i % 2]
        kind = ("scale", "restart", "stop", "config")[rng.randrange(4)]
        if kind == "scale":
            ops.append(
                {
                    "kind": kind,
                    "app": app,
                    "method": "PATCH",
                    "path": f"/apps/{app}/formation",
                    "body": {"updates": [{"type": "web", "quantity": rng.randint(0, 3)}]},
                }
            )
        elif kind == "restart":
            path = rng.choice([f"/apps/{app}/dynos/web.1", f"/apps/{app}/dynos", f"/apps/{app}/formations/web"])
            ops.append({"kind": kind, "app": app, "method": "DELETE", "path": path, "body": None})
        elif kind == "stop":
            ops.append(
                {
                    "kind": kind,
                    "app": app,
                    "method": "POST",
                    "path": f"/apps/{app}/dynos/web.{rng.randint(1, 2)}/actions/stop",
                    "body": None,
                }
            )
        else:
            ops.append(
                {
                    "kind": kind,
                    "app": app,
                    "method": "PATCH",
                    "path": f"/apps/{app}/config-vars",
                    "body": {f"K{i}": f"v{i}-{rng.randint(0, 999)}"},
                }
            )
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
    apps = [deploy_sample(lab, f"{app_name}-cr"), deploy_sample(lab, f"{app_name}-ps", space=space)]
    try:
        ops = _ops(apps, 50)
        with ThreadPoolExecutor(max_workers=50) as pool:
            results = list(pool.map(lambda op: _call(lab.name, op), ops))
        print("statuses:", sorted(Counter((r["kind"], r["status"]) for r in results).items(), key=str))
        bad = [
            r
            for r in results
            if r["status"] is None
            or r["status"] >= 500
            or (400 <= r["status"] < 500 and not (isinstance(r["answer"], dict) and r["answer"].get("message")))
        ]
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
                assert final in {r["body"]["updates"][0]["quantity"] for r in scales}
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
