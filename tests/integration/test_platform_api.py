"""The Platform API v3 against a running lab, written from Heroku's Platform API reference (issue 19 items 1, 2,
6, 7): each resource's fields (the property names of Heroku's published schema for account, rate-limit, app,
space, dyno, formation, release, config-var, app-feature) and status codes (201 create, 202 restart/stop, 200
otherwise; errors ``{"id", "message"}``), lookups by name and by id, ranges, bad bodies, a walk of ``GET /schema``
and 50 concurrent formation updates on one app.

Calls go through ``requests`` with the Heroku headers, as an existing Heroku API client would send them.
"""

from __future__ import annotations

import re
import tarfile
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import Lab, deploy_sample, wait_until
from tests.integration.helpers import assert_nothing_lost, formation_of

pytestmark = [pytest.mark.docker, pytest.mark.xdist_group("test_platform_api")]  # module fixtures: one worker

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
# The properties of each object in Heroku's Platform API reference (its JSON schema's definitions).
REFERENCE = {
    "account": "allow_tracking beta country_of_residence created_at default_organization default_team delinquent_at "
    "email federated id identity_provider last_login name sms_number suspended_at two_factor_authentication "
    "updated_at verified",
    "rate-limit": "remaining",
    "app": "acm archived_at build_stack buildpack_provided_description created_at generation git_url id "
    "internal_routing maintenance name organization owner region released_at repo_size slug_size space stack team "
    "updated_at web_url",
    "space": "cidr created_at data_cidr generation id name organization region shield state team updated_at",
    "dyno": "app attach_url command created_at id name release size state type updated_at",
    "formation": "app command created_at dyno_size id quantity size type updated_at",
    "release": "addon_plan_names app artifacts created_at current description eligible_for_rollback id "
    "output_stream_url slug status updated_at user version",
    "app-feature": "created_at description display_name doc_url enabled feedback_email id name state updated_at",
}


class Api:
    """A Heroku-style API client of the lab: base URL and token, as ``status --json`` and ``auth:token`` give."""

    def __init__(self, lab: Lab):
        self.base = lab.json("status")["api"]["url"]
        token = lab.ok("auth:token").strip()
        self.headers = {"Authorization": f"Bearer {token}", "Accept": "application/vnd.heroku+json; version=3"}

    def __call__(self, method: str, path: str, body: Any = None, **headers: str) -> requests.Response:
        r = requests.request(method, self.base + path, json=body, headers={**self.headers, **headers}, timeout=120)
        assert r.status_code < 500, f"{method} {path} {body!r}: {r.status_code} {r.text[:300]}"
        assert r.headers.get("Request-Id") and r.headers.get("RateLimit-Remaining", "").isdigit()
        return r

    def ok(self, method: str, path: str, body: Any = None, status: int = 200, **headers: str) -> Any:
        r = self(method, path, body, **headers)
        assert r.status_code == status, f"{method} {path} {body!r}: {r.status_code} {r.text[:300]}, not {status}"
        return r.json()

    def error(self, method: str, path: str, body: Any, status: int, error_id: str) -> str:
        r = self(method, path, body)
        assert r.status_code == status, f"{method} {path} {body!r}: {r.status_code} {r.text[:300]}, not {status}"
        answer = r.json()
        assert set(answer) == {"id", "message"} and answer["id"] == error_id, answer
        return answer["message"]


def has_reference_fields(kind: str, obj: dict[str, Any]) -> None:
    missing = set(REFERENCE[kind].split()) - set(obj)
    assert not missing, f"{kind} lacks the reference's {sorted(missing)}: {obj}"
    if "id" in obj and kind != "rate-limit":
        uuid.UUID(obj["id"])
    for key in ("created_at", "updated_at"):
        if key in obj:
            assert ISO.match(obj[key]), f"{kind}.{key} = {obj[key]!r}"


@pytest.fixture(scope="module")
def api(lab: Lab) -> Api:
    return Api(lab)


@pytest.fixture(scope="module")
def deployed(lab: Lab) -> Iterator[str]:
    app = deploy_sample(lab, f"p{uuid.uuid4().hex[:8]}")
    yield app
    lab.cli("apps:destroy", "-a", app)


def test_account_and_rate_limits(api: Api):
    account = api.ok("GET", "/account")
    has_reference_fields("account", account)
    assert api.ok("GET", "/account") == account  # one stable account
    limits = api.ok("GET", "/account/rate-limits")
    has_reference_fields("rate-limit", limits)
    assert type(limits["remaining"]) is int


def test_http_basic_with_the_token_as_password(api: Api, lab: Lab):
    token = lab.ok("auth:token").strip()
    r = requests.get(
        api.base + "/apps", auth=("me@example.com", token), headers={"Accept": api.headers["Accept"]}, timeout=30
    )
    assert r.status_code == 200 and isinstance(r.json(), list)
    r = requests.get(api.base + "/apps", auth=(token, "x"), timeout=30)
    assert r.status_code == 401 and r.json()["id"] == "unauthorized"


def test_spaces_create_info_by_name_and_id_list_delete(api: Api):
    name = f"s{uuid.uuid4().hex[:8]}"
    created = api.ok("POST", "/spaces", {"name": name, "team": "ignored"}, status=201)
    has_reference_fields("space", created)
    assert created["name"] == name
    assert api.ok("GET", f"/spaces/{name}") == api.ok("GET", f"/spaces/{created['id']}") == created
    assert name in {s["name"] for s in api.ok("GET", "/spaces")}
    app = api.ok("POST", "/apps", {"name": f"a{name[1:]}", "space": name}, status=201)
    assert app["space"] == {"id": created["id"], "name": name, "shared": False}
    api.error("DELETE", f"/spaces/{name}", None, 409, "conflict")
    api.ok("DELETE", f"/apps/{app['id']}")
    assert api.ok("DELETE", f"/spaces/{created['id']}")["id"] == created["id"]
    api.error("GET", f"/spaces/{name}", None, 404, "not_found")
    api.error("POST", "/spaces", {"name": 5}, 422, "invalid_params")


def test_apps_create_info_by_name_and_id_update_rename_delete(api: Api):
    name = f"a{uuid.uuid4().hex[:8]}"
    app = api.ok("POST", "/apps", {"name": name, "region": "us", "stack": "heroku-24"}, status=201)
    has_reference_fields("app", app)
    assert app["name"] == name and app["space"] is None and app["maintenance"] is False
    assert api.ok("GET", f"/apps/{name}") == api.ok("GET", f"/apps/{app['id']}")
    assert app["id"] in {a["id"] for a in api.ok("GET", "/apps")}
    api.error("POST", "/apps", {"name": name}, 409, "conflict")
    on = api.ok("PATCH", f"/apps/{app['id']}", {"maintenance": True})
    assert on["maintenance"] is True and on["id"] == app["id"]
    renamed = api.ok("PATCH", f"/apps/{name}", {"name": f"{name}-r"})
    assert renamed["name"] == f"{name}-r" and renamed["id"] == app["id"] and renamed["maintenance"] is True
    api.error("GET", f"/apps/{name}", None, 404, "not_found")
    api.error("PATCH", f"/apps/{name}-r", {"maintenance": "on"}, 422, "invalid_params")
    api.error("PATCH", f"/apps/{name}-r", {"name": "Bad Name"}, 422, "invalid_params")
    gone = api.ok("DELETE", f"/apps/{app['id']}")
    assert gone["id"] == app["id"] and gone["name"] == f"{name}-r"
    api.error("GET", f"/apps/{app['id']}", None, 404, "not_found")


def test_rename_through_the_cli(lab: Lab, api: Api):
    name = f"a{uuid.uuid4().hex[:8]}"
    lab.ok("apps:create", name)
    try:
        out = lab.ok("apps:rename", f"{name}-n", "-a", name)
        assert out.strip() == f"Renaming ⬢ {name} to ⬢ {name}-n... done"
        assert lab.json("apps:info", "-a", f"{name}-n")["name"] == f"{name}-n"
    finally:
        lab.cli("apps:destroy", "-a", f"{name}-n")
        lab.cli("apps:destroy", "-a", name)


def test_dynos_list_info_by_name_and_id_with_release_reference(api: Api, deployed: str):
    dynos = api.ok("GET", f"/apps/{deployed}/dynos")
    web = next(d for d in dynos if d["name"] == "web.1")
    has_reference_fields("dyno", web)
    assert web["type"] == "web" and web["state"] == "up" and web["size"] and web["command"]
    app = api.ok("GET", f"/apps/{deployed}")
    assert web["app"] == {"id": app["id"], "name": deployed}
    release = api.ok("GET", f"/apps/{deployed}/releases/{web['release']['version']}")
    assert web["release"] == {"id": release["id"], "version": release["version"]}
    by_id = api.ok("GET", f"/apps/{app['id']}/dynos/{web['id']}")
    assert by_id == api.ok("GET", f"/apps/{deployed}/dynos/web.1")
    api.error("GET", f"/apps/{deployed}/dynos/web.9", None, 404, "not_found")


def test_one_off_detached_restart_and_stop(api: Api, lab: Lab, deployed: str):
    run = api.ok("POST", f"/apps/{deployed}/dynos", {"command": "sleep 60", "attach": False, "env": {}}, status=201)
    has_reference_fields("dyno", run)
    assert run["type"] == "run" and run["attach_url"] is None and run["command"] == "sleep 60"
    wait_until(lambda: api.ok("GET", f"/apps/{deployed}/dynos/{run['name']}")["state"] == "up", 60, 0.5, "run up")
    assert api.ok("POST", f"/apps/{deployed}/dynos/{run['id']}/actions/stop", status=202) == {}
    wait_until(
        lambda: run["name"] not in {d["name"] for d in api.ok("GET", f"/apps/{deployed}/dynos")}, 60, 0.5, "stopped"
    )
    before = lab.dynos(deployed)["web.1"]["container"]
    assert api.ok("DELETE", f"/apps/{deployed}/dynos/web.1", status=202) == {}
    wait_until(
        lambda: (
            lab.dynos(deployed)["web.1"]["container"] not in (before, None)
            and lab.dynos(deployed)["web.1"]["state"] == "up"
        ),
        90,
        0.5,
        "web.1 restarted",
    )
    assert api.ok("DELETE", f"/apps/{deployed}/dynos", status=202) == {}
    assert_nothing_lost(lab, {deployed: {"web": 1}}, timeout=120)


def test_formation_list_info_update_and_batch(api: Api, lab: Lab, deployed: str):
    rows = api.ok("GET", f"/apps/{deployed}/formation")
    assert sorted(f["type"] for f in rows) == ["web", "worker"]
    for f in rows:
        has_reference_fields("formation", f)
    web = next(f for f in rows if f["type"] == "web")
    assert api.ok("GET", f"/apps/{deployed}/formation/web") == api.ok("GET", f"/apps/{deployed}/formation/{web['id']}")
    one = api.ok("PATCH", f"/apps/{deployed}/formation/worker", {"quantity": 1})
    assert (one["type"], one["quantity"], one["id"]) == (
        "worker",
        1,
        next(f["id"] for f in rows if f["type"] == "worker"),
    )
    batch = api.ok(
        "PATCH",
        f"/apps/{deployed}/formation",
        {"updates": [{"type": "worker", "quantity": 0}, {"type": "web", "quantity": "1", "size": "standard-2x"}]},
    )
    assert {(f["type"], f["quantity"]) for f in batch} == {("worker", 0), ("web", 1)}
    assert next(f for f in batch if f["type"] == "web")["dyno_size"]["name"] == "Standard-2X"
    back = api.ok("PATCH", f"/apps/{deployed}/formation", {"updates": [{"type": "web", "size": web["size"]}]})
    assert next(f for f in back if f["type"] == "web")["size"] == web["size"]
    before = formation_of(lab, deployed)
    api.error(
        "PATCH",
        f"/apps/{deployed}/formation",
        {"updates": [{"type": "web", "quantity": "lots"}]},
        422,
        "invalid_params",
    )
    api.error(
        "PATCH", f"/apps/{deployed}/formation", {"updates": [{"type": "nope", "quantity": 1}]}, 422, "invalid_params"
    )
    api.error("PATCH", f"/apps/{deployed}/formation/web", {"quantity": 1, "size": "huge"}, 422, "invalid_params")
    api.error("GET", f"/apps/{deployed}/formation/nope", None, 404, "not_found")
    assert formation_of(lab, deployed) == before
    assert_nothing_lost(lab, {deployed: {"web": 1, "worker": 0}}, timeout=120)


def test_releases_list_range_info_rollback_and_config_vars(api: Api, lab: Lab, deployed: str):
    changed = api.ok("PATCH", f"/apps/{deployed}/config-vars", {"API_TEST": "one", "UNUSED": None})
    assert changed["API_TEST"] == "one" and "UNUSED" not in changed
    assert api.ok("GET", f"/apps/{deployed}/config-vars") == changed
    rows = api.ok("GET", f"/apps/{deployed}/releases")
    assert [r["version"] for r in rows] == sorted(r["version"] for r in rows) and len(rows) >= 2
    for r in rows:
        has_reference_fields("release", r)
    assert [r["current"] for r in rows][-1] is True
    newest = api.ok("GET", f"/apps/{deployed}/releases", None, 206, Range="version ..; max=1, order=desc")
    assert [r["version"] for r in newest] == [rows[-1]["version"]]
    v1 = rows[0]
    assert api.ok("GET", f"/apps/{deployed}/releases/{v1['id']}") == api.ok("GET", f"/apps/{deployed}/releases/1")
    assert api.ok("GET", f"/apps/{deployed}/releases/{rows[-1]['id']}/config-vars")["API_TEST"] == "one"
    rolled = api.ok("POST", f"/apps/{deployed}/releases", {"release": v1["id"]}, status=201)
    has_reference_fields("release", rolled)
    assert rolled["version"] == rows[-1]["version"] + 1 and rolled["description"] == "Rollback to v1"
    assert "API_TEST" not in api.ok("GET", f"/apps/{deployed}/config-vars")
    api.error("POST", f"/apps/{deployed}/releases", {"release": str(uuid.uuid4())}, 404, "not_found")
    api.error("POST", f"/apps/{deployed}/releases", {"release": [1]}, 422, "invalid_params")
    api.error("PATCH", f"/apps/{deployed}/config-vars", {"A": 1}, 422, "invalid_params")
    assert_nothing_lost(lab, {deployed: {"web": 1}}, timeout=120)


def test_app_features_list_info_update(api: Api, deployed: str):
    rows = api.ok("GET", f"/apps/{deployed}/features")
    assert {"preboot", "log-runtime-metrics"} <= {f["name"] for f in rows}
    for f in rows:
        has_reference_fields("app-feature", f)
    preboot = next(f for f in rows if f["name"] == "preboot")
    assert api.ok("GET", f"/apps/{deployed}/features/{preboot['id']}") == preboot
    on = api.ok("PATCH", f"/apps/{deployed}/features/log-runtime-metrics", {"enabled": True})
    assert on["enabled"] is True
    off = api.ok("PATCH", f"/apps/{deployed}/features/log-runtime-metrics", {"enabled": False, "extra": 1})
    assert off["enabled"] is False
    api.error("PATCH", f"/apps/{deployed}/features/preboot", {"enabled": "yes"}, 422, "invalid_params")
    api.error("GET", f"/apps/{deployed}/features/nope", None, 404, "not_found")


def test_fifty_parallel_formation_updates_end_in_one_of_them(api: Api, lab: Lab, deployed: str):
    wanted = [{"type": "web", "quantity": i % 4, "size": ("standard-1x", "standard-2x")[i % 2]} for i in range(50)]

    def send(update: dict[str, Any]) -> int:
        return api("PATCH", f"/apps/{deployed}/formation", {"updates": [update]}).status_code

    with ThreadPoolExecutor(max_workers=50) as pool:
        statuses = list(pool.map(send, wanted))
    assert set(statuses) <= {200, 409}, statuses  # 409: a preboot would lock the formation (not on here)
    assert statuses.count(200) >= 1
    web = next(f for f in api.ok("GET", f"/apps/{deployed}/formation") if f["type"] == "web")
    requested = {(u["quantity"], u["size"]) for u, s in zip(wanted, statuses, strict=True) if s == 200}
    assert (web["quantity"], web["size"].lower()) in requested, web
    assert_nothing_lost(lab, {deployed: {"web": web["quantity"]}}, timeout=180)
    sizes = {d["size"] for d in lab.dynos(deployed).values() if d["type"] == "web"}
    assert sizes <= {web["size"]}, sizes
    api.ok("PATCH", f"/apps/{deployed}/formation", {"updates": [{"type": "web", "quantity": 1, "size": "standard-1x"}]})
    assert_nothing_lost(lab, {deployed: {"web": 1}}, timeout=120)


# -- the schema walk ---------------------------------------------------------------------------------------
def _types(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "object"}[type(value)]


def validate(value: Any, schema: dict[str, Any], doc: dict[str, Any], where: str) -> None:
    """The part of JSON Schema the lab's schema uses: $ref, type, properties, required, items."""
    if "$ref" in schema:
        schema = doc["definitions"][schema["$ref"].rsplit("/", 1)[-1]]
    if "type" in schema:
        allowed = set(schema["type"])
        got = _types(value)
        assert got in allowed or (got == "integer" and "number" in allowed), f"{where}: {got} not in {allowed}"
    if isinstance(value, dict):
        for key in schema.get("required", []):
            assert key in value, f"{where}: no {key!r}"
        for key, sub in schema.get("properties", {}).items():
            if key in value:
                validate(value[key], sub, doc, f"{where}.{key}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            validate(item, schema["items"], doc, f"{where}[{i}]")


def test_schema_walk_every_route_answers_as_described(api: Api, lab: Lab, deployed: str):
    doc = api.ok("GET", "/schema")
    space = f"s{uuid.uuid4().hex[:8]}"
    api.ok("POST", "/spaces", {"name": space}, status=201)
    try:
        ids = {
            "app": api.ok("GET", f"/apps/{deployed}")["id"],
            "space": space,
            "dyno": "web.1",
            "formation": "web",
            "release": "1",
            "app-feature": "preboot",
        }
        walked, resources = 0, set()
        for resource, definition in doc["definitions"].items():
            for link in definition["links"]:
                holes = re.findall(r"\{\(#/definitions/([\w-]+)/definitions/identity\)\}", link["href"])
                if any(h not in ids for h in holes):
                    continue
                path = re.sub(r"\{\(#/definitions/([\w-]+)/definitions/identity\)\}", lambda m: ids[m[1]], link["href"])
                where = f"{link['method']} {link['href']}"
                if link["method"] == "GET":
                    r = api("GET", path)
                    assert r.status_code in (link["status"], 206), f"{where}: {r.status_code} {r.text[:200]}"
                    validate(r.json(), link["targetSchema"], doc, where)
                    walked += 1
                    resources.add(resource)
                    continue
                if "app" in holes:  # every call on an app that does not exist: 404, nothing else
                    missing = re.sub(r"^/apps/[^/]+", f"/apps/{uuid.uuid4()}", path)
                    r = api(link["method"], missing, {})
                    assert r.status_code == 404 and r.json()["id"] == "not_found", f"{where}: {r.status_code}"
                    walked += 1
                props = (link.get("schema") or {}).get("properties", {})
                for prop, sub in props.items():  # a value of a type the schema does not allow: 422
                    allowed = set(sub["type"]) | ({"number"} if "integer" in sub["type"] else set())
                    wrong = next(v for v in ({"not": "this"}, 7, "x", True, [1]) if _types(v) not in allowed)
                    r = api(link["method"], path, {prop: wrong})
                    assert r.status_code == 422 and r.json()["id"] == "invalid_params", (
                        f"{where} {prop}={wrong!r}: {r.status_code} {r.text[:200]}"
                    )
                    walked += 1
                    resources.add(resource)
        assert walked >= 30, walked
        # the lab's own resources are walked like Heroku's: faults, drains, log sessions, traffic generators
        assert {"fault", "fault-support", "log-drain", "log-session", "traffic-generator"} <= resources, resources
    finally:
        api("DELETE", f"/spaces/{space}")
    assert_nothing_lost(lab, {deployed: {"web": 1}}, timeout=120)


# -- builds ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tarball(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample app as a GitHub-style tarball: one top-level directory."""
    from tests.conftest import SAMPLE_APP

    out = tmp_path_factory.mktemp("src") / "app.tgz"
    with tarfile.open(out, "w:gz") as tar:
        tar.add(SAMPLE_APP, arcname="sample-app-main")
    return out


def _follow_build(api: Api, app: str, build: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    with requests.get(build["output_stream_url"], stream=True, timeout=300) as r:  # no token: the URL is the secret
        assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/plain")
        output = r.text
    return output, api.ok("GET", f"/apps/{app}/builds/{build['id']}")


def test_build_from_a_file_url_streams_its_output_and_releases(api: Api, lab: Lab, deployed: str, tarball: Path):
    before = api.ok("GET", f"/apps/{deployed}/releases", None, 206, Range="version ..; max=1, order=desc")[0]
    build = api.ok(
        "POST", f"/apps/{deployed}/builds", {"source_blob": {"url": tarball.as_uri(), "version": "v9"}}, status=201
    )
    assert build["status"] == "pending" and build["source_blob"]["version"] == "v9" and build["release"] is None
    uuid.UUID(build["id"])
    output, done = _follow_build(api, deployed, build)
    assert done["status"] == "succeeded", done
    assert output.strip(), "the build's output"
    rel = api.ok("GET", f"/apps/{deployed}/releases/{done['release']['id']}")
    assert rel["version"] == before["version"] + 1 and rel["current"] is True
    assert build["id"] in {b["id"] for b in api.ok("GET", f"/apps/{deployed}/builds")}
    assert_nothing_lost(lab, {deployed: {"web": 1}}, timeout=120)


def test_build_from_a_loopback_http_url(api: Api, lab: Lab, deployed: str, tarball: Path):
    import functools
    import http.server
    import threading

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tarball.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/{tarball.name}"
        build = api.ok("POST", f"/apps/{deployed}/builds", {"source_blob": {"url": url}}, status=201)
        _, done = _follow_build(api, deployed, build)
        assert done["status"] == "succeeded" and done["release"]["id"], done
    finally:
        server.shutdown()
        server.server_close()
    assert_nothing_lost(lab, {deployed: {"web": 1}}, timeout=120)


def test_bad_build_sources(api: Api, deployed: str, tmp_path: Path):
    path = f"/apps/{deployed}/builds"
    api.error("POST", path, {"source_blob": {"url": "http://example.com/app.tgz"}}, 422, "invalid_params")
    api.error("POST", path, {"source_blob": {"url": f"file://{tmp_path}/missing.tgz"}}, 422, "invalid_params")
    api.error("POST", path, {"source_blob": "file:///tmp"}, 422, "invalid_params")
    api.error("POST", path, {"source_blob": {"url": "ftp://127.0.0.1/x"}}, 422, "invalid_params")
    junk = tmp_path / "junk.tgz"
    junk.write_bytes(b"not a tarball")
    build = api.ok("POST", path, {"source_blob": {"url": junk.as_uri()}}, status=201)
    _, done = _follow_build(api, deployed, build)
    assert done["status"] == "failed" and done["error"]["id"] == "invalid_params" and done["release"] is None
    api.error("GET", f"{path}/{uuid.uuid4()}", None, 404, "not_found")


# -- attached one-offs -------------------------------------------------------------------------------------
def test_attached_one_off_through_its_rendezvous_attach_url(api: Api, lab: Lab, deployed: str):
    import socket
    from urllib.parse import urlsplit

    run = api.ok("POST", f"/apps/{deployed}/dynos", {"command": "echo out-line; exit 4", "attach": True}, status=201)
    has_reference_fields("dyno", run)
    url = urlsplit(run["attach_url"])
    assert (url.scheme, url.hostname) == ("rendezvous", "127.0.0.1") and len(url.path) > 20
    with socket.create_connection((url.hostname, url.port), timeout=60) as sock:
        sock.sendall(url.path.lstrip("/").encode() + b"\r\n")
        got = b""
        while chunk := sock.recv(4096):
            got += chunk
    assert got == b"rendezvous\r\nout-line\n" + "\uffff heroku-command-exit-status: 4\n".encode(), got
    wait_until(lambda: run["name"] not in lab.dynos(deployed), 30, 0.3, "the one-off is gone")
    r = lab.cli("run", "-a", deployed, "echo a; echo b; exit 3")
    assert (r.code, r.out) == (3, "a\nb\n"), (r.code, r.out, r.err)
    api.error("POST", f"/apps/{deployed}/dynos", {"command": "true", "attach": "yes"}, 422, "invalid_params")
