"""The JSON the CLI prints (issue 15 item 6), pinned: the exact key sets and value types of ``ps --json`` (current
and, with ``--all``, old dynos), ``apps:info --json``, ``instances --json`` (with a fault), ``releases --json`` and
``status --json``. Scripts and the scenario runner read these; a refactor must not change them by accident: a new
key, a lost key or a value of another type fails here, and changing a shape on purpose means changing this file.

One app on the session lab: web=1 and worker=1, a cpu fault on web.1's instance, preboot on and a restart of web.1,
so that ``ps --all`` shows an old dyno beside the new one.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import Lab, deploy_sample

pytestmark = [pytest.mark.docker, pytest.mark.xdist_group("test_json_shapes")]  # module fixtures: one worker

NONE = type(None)
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")  # what the views' _iso() writes

DYNO = {
    "app": dict,
    "attach": bool,
    "attach_url": NONE,
    "created_at": (str, NONE),
    "id": str,
    "command": str,
    "container": (str, NONE),
    "crashes": int,
    "cycle_at": (str, NONE),
    "instance": (str, NONE),
    "name": str,
    "next_start": (str, NONE),
    "port": (int, NONE),
    "release": dict,
    "size": str,
    "state": str,
    "type": str,
    "updated_at": (str, NONE),
}
OLD_DYNO = {
    "app": dict,
    "attach": bool,
    "attach_url": NONE,
    "created_at": (str, NONE),
    "id": str,
    "command": str,
    "container": (str, NONE),
    "instance": (str, NONE),
    "name": str,
    "old": bool,
    "port": (int, NONE),
    "release": dict,
    "retire_at": (str, NONE),
    "routed": bool,
    "size": str,
    "state": str,
    "type": str,
    "updated_at": (str, NONE),
}
APP_INFO = {
    "acm": bool,
    "archived_at": NONE,
    "build_stack": dict,
    "buildpack_provided_description": NONE,
    "created_at": str,
    "features": dict,
    "formation": list,
    "generation": dict,
    "git_url": NONE,
    "id": str,
    "internal_routing": (bool, NONE),
    "maintenance": bool,
    "name": str,
    "organization": NONE,
    "owner": dict,
    "region": dict,
    "release": (int, NONE),
    "released_at": (str, NONE),
    "repo_size": NONE,
    "slug_size": NONE,
    "space": (dict, NONE),
    "stack": dict,
    "team": NONE,
    "updated_at": str,
    "web_url": NONE,
}
FORMATION = {
    "app": dict,
    "command": str,
    "created_at": str,
    "dyno_size": dict,
    "id": str,
    "quantity": int,
    "size": str,
    "type": str,
    "updated_at": str,
}
INSTANCE = {
    "budget": (dict, NONE),
    "created_at": str,
    "dedicated_to": (str, NONE),
    "dynos": list,
    "faults": list,
    "id": str,
    "limit": (dict, NONE),
    "ready_at": (str, NONE),
    "runtime": str,
    "state": str,
    "usage": (dict, NONE),
}
BUDGET = {"cpus": float, "memory_mb": int, "enforced": bool}
LIMIT = {"cpus": float, "memory_mb": int}
USAGE = {"cpus": (float, NONE), "memory_mb": float}
CPU_FAULT = {"cpus": float, "created_at": float, "expires_at": (float, NONE), "id": str, "kind": str}
RELEASE = {
    "addon_plan_names": list,
    "app": dict,
    "artifacts": list,
    "config": dict,
    "created_at": str,
    "current": bool,
    "description": str,
    "eligible_for_rollback": bool,
    "id": str,
    "image": (str, NONE),
    "output_stream_url": NONE,
    "procfile": dict,
    "slug": (dict, NONE),
    "status": str,
    "updated_at": str,
    "user": dict,
    "version": int,
}
STATUS = {
    "api": dict,
    "apps": int,
    "controller_pid": int,
    "dynos": int,
    "engine": str,
    "instances": int,
    "lab": str,
    "placement": str,
    "pool_size": int,
    "provision_time": (int, float),
    "router": dict,
    "routers": list,
    "spaces": int,
    "state_dir": str,
    "swarm_nodes": list,
    "timescale": float,
    "uptime_s": float,
}
ROUTER_ROW = {"address": str, "container": str, "runtime": str, "state": str}
ROUTER = {
    "app_url": str,
    "ca_cert": str,
    "https_app_url": str,
    "https_port": int,
    "https_url": str,
    "port": int,
    "url": str,
}


def assert_shape(what: str, value: Any, shape: dict[str, type | tuple[type, ...]]) -> None:
    """``value`` is a dict with exactly ``shape``'s keys, each of one of its types (exactly: a bool is no int)."""
    assert isinstance(value, dict), f"{what}: not an object: {value!r}"
    assert sorted(value) == sorted(shape), (
        f"{what}: keys changed: extra {sorted(set(value) - set(shape))}, missing {sorted(set(shape) - set(value))}"
    )
    for key, types in shape.items():
        allowed = types if isinstance(types, tuple) else (types,)
        assert type(value[key]) in allowed, (
            f"{what}.{key}: {type(value[key]).__name__} {value[key]!r}, expected {[t.__name__ for t in allowed]}"
        )


@pytest.fixture(scope="module")
def shaped_app(lab: Lab) -> Iterator[str]:
    app = deploy_sample(lab, "jsonshapes")
    lab.ok("ps:scale", "worker=1", "-a", app)
    lab.wait_up(app, ["web.1", "worker.1"])
    instance = lab.dynos(app)["web.1"]["instance"]
    lab.ok("faults:add", "cpu", "--cpus", "0.5", "--dyno", "web.1", "-a", app)
    lab.ok("features:enable", "preboot", "-a", app)
    lab.ok("ps:restart", "web.1", "-a", app)  # preboot: the old web.1 serves on, `ps --all` shows it
    try:
        yield app
    finally:
        lab.cli("faults:clear", "--instance", instance)
        lab.ok("apps:destroy", "-a", app)


def test_ps_all_json_adds_the_old_dynos(lab: Lab, shaped_app: str):
    rows = lab.json("ps", "--all", "-a", shaped_app)
    old = [d for d in rows if "old" in d]
    assert [d["name"] for d in old] == ["web.1"], f"one old web.1 while preboot overlaps: {rows}"
    assert_shape("ps --all old web.1", old[0], OLD_DYNO)
    app_id = lab.json("apps:info", "-a", shaped_app)["id"]
    v1 = lab.json("releases", "-a", shaped_app)[-1]["id"]
    assert old[0]["old"] is True and old[0]["app"] == {"id": app_id, "name": shaped_app}
    assert old[0]["release"] == {"id": v1, "version": 1}
    for d in rows:
        if "old" not in d:
            assert_shape(f"ps --all {d['name']}", d, DYNO)


def test_ps_json(lab: Lab, shaped_app: str):
    rows = lab.json("ps", "-a", shaped_app)
    assert sorted(d["name"] for d in rows) == ["web.1", "worker.1"]
    for d in rows:
        assert_shape(f"ps {d['name']}", d, DYNO)
        assert d["app"]["name"] == shaped_app and d["release"]["version"] == 1 and d["release"]["id"]
        assert all(d[k] is None or ISO.match(d[k]) for k in ("cycle_at", "next_start", "updated_at")), d
    by_name = {d["name"]: d for d in rows}
    assert type(by_name["web.1"]["port"]) is int and by_name["worker.1"]["port"] is None


def test_apps_info_json(lab: Lab, shaped_app: str):
    info = lab.json("apps:info", "-a", shaped_app)
    assert_shape("apps:info", info, APP_INFO)
    assert ISO.match(info["created_at"]) and info["features"] == {"preboot": True}
    assert [f["type"] for f in info["formation"]] == ["web", "worker"]
    for f in info["formation"]:
        assert_shape(f"apps:info formation {f['type']}", f, FORMATION)


def test_instances_json(lab: Lab, shaped_app: str):
    rows = lab.json("instances")
    assert rows, "the pool's instances"
    for i in rows:
        assert_shape(f"instance {i['id']}", i, INSTANCE)
        assert ISO.match(i["created_at"]) and all(type(d) is str for d in i["dynos"])
        assert_shape(f"instance {i['id']} budget", i["budget"], BUDGET)
        assert_shape(f"instance {i['id']} limit", i["limit"], LIMIT)
        if i["usage"] is not None:  # None where the budgets are not enforced (no writable cgroup v1)
            assert_shape(f"instance {i['id']} usage", i["usage"], USAGE)
    faulty = [i for i in rows if i["faults"]]
    assert len(faulty) == 1 and len(faulty[0]["faults"]) == 1, rows
    assert_shape("instances fault", faulty[0]["faults"][0], CPU_FAULT)
    assert faulty[0]["faults"][0]["kind"] == "cpu"


def test_releases_json(lab: Lab, shaped_app: str):
    rows = lab.json("releases", "-a", shaped_app)
    assert [r["version"] for r in rows] == [1]
    assert_shape("release v1", rows[0], RELEASE)
    assert rows[0]["app"]["name"] == shaped_app and rows[0]["status"] == "succeeded" and rows[0]["current"]
    assert all(type(k) is str and type(v) is str for k, v in rows[0]["procfile"].items())


def test_status_json(lab: Lab, shaped_app: str):
    s = lab.json("status")
    assert_shape("status", s, STATUS)
    assert_shape("status router", s["router"], ROUTER)
    assert s["routers"] and s["routers"][0]["runtime"] == "common"
    for row in s["routers"]:
        assert_shape("status routers", row, ROUTER_ROW)
    assert s["lab"] == lab.name and s["router"]["port"] == lab.port and s["engine"] == "ok"
    assert (s["placement"], s["swarm_nodes"]) == ("spread", [])  # the defaults: least-loaded, one engine
