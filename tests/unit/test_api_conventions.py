"""The Platform API's conventions on every answer (issue 19 items 1, 2; Heroku's Platform API reference:
"Authentication", "Request-Id", "Rate Limits", "Ranges", "Errors"), checked on the controller's real HTTP layer
over a recording stand-in for the manager. No Docker, no lab.
"""

from __future__ import annotations

import base64
import json
import threading
import uuid
from collections.abc import Iterator
from unittest import mock

import pytest
import requests

from labctl.controller.api import MAX_BODY, Api, make_server
from labctl.controller.faults import FaultManager

TOKEN = "t0ken-for-tests"
ACCEPT = "application/vnd.heroku+json; version=3"


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[str, mock.MagicMock, Api]]:
    manager = mock.MagicMock(name="manager")
    api = Api(manager, lambda: {"lab": "unit"})
    FaultManager.register(mock.MagicMock(name="faults"), api)
    server = make_server(api, TOKEN)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", manager, api
    server.shutdown()
    server.server_close()


@pytest.fixture
def base(served) -> Iterator[str]:
    url, manager, _ = served
    manager.reset_mock(return_value=True, side_effect=True)
    manager.app_name.side_effect = lambda ident: ident
    manager.dyno_name.side_effect = lambda app, ident: ident
    yield url


@pytest.fixture
def manager(served) -> mock.MagicMock:
    return served[1]


def call(method: str, url: str, auth: str | None = f"Bearer {TOKEN}", **kw) -> requests.Response:
    headers = {"Accept": ACCEPT, **({"Authorization": auth} if auth else {}), **kw.pop("headers", {})}
    return requests.request(method, url, headers=headers, timeout=10, **kw)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def assert_common_headers(r: requests.Response) -> None:
    uuid.UUID(r.headers["Request-Id"].split(",")[-1])
    assert 0 <= int(r.headers["RateLimit-Remaining"]) <= 4500
    assert r.headers["Content-Type"].startswith("application/json")


def assert_error(r: requests.Response, status: int, error_id: str) -> dict:
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert set(body) == {"id", "message"} and body["id"] == error_id and body["message"], body
    assert_common_headers(r)
    return body


# -- authentication ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "auth",
    [f"Bearer {TOKEN}", f"bearer {TOKEN}", basic("", TOKEN), basic("someone@example.com", TOKEN)],
    ids=["bearer", "bearer-lowercase", "basic-no-user", "basic-email"],
)
def test_bearer_and_basic_with_the_token_as_password_are_accepted(base, manager, auth):
    manager.account.return_value = {"id": "x"}
    r = call("GET", f"{base}/account", auth=auth)
    assert r.status_code == 200 and r.json() == {"id": "x"}
    assert_common_headers(r)


@pytest.mark.parametrize(
    "auth",
    [None, "Bearer nope", f"Token {TOKEN}", basic(TOKEN, "nope"), "Basic !!!notbase64", f"Bearer {TOKEN}x", TOKEN],
    ids=["none", "wrong-bearer", "other-scheme", "token-as-user", "bad-base64", "longer", "bare"],
)
def test_anything_else_is_401_unauthorized_and_reaches_nothing(base, manager, auth):
    r = call("PATCH", f"{base}/apps/demo", auth=auth, json={"maintenance": True})
    assert_error(r, 401, "unauthorized")
    assert manager.update_app.call_count == 0


# -- headers, media type, errors ---------------------------------------------------------------------------
def test_request_id_is_new_on_every_answer_and_a_supplied_one_is_kept(base, manager):
    manager.apps.return_value = []
    ids = {call("GET", f"{base}/apps").headers["Request-Id"] for _ in range(3)}
    assert len(ids) == 3
    r = call("GET", f"{base}/apps", headers={"Request-Id": "mine-123"})
    assert r.headers["Request-Id"].startswith("mine-123,")


def test_rate_limit_remaining_counts_down_and_matches_the_rate_limits_resource(base, manager):
    manager.apps.return_value = []
    first = int(call("GET", f"{base}/apps").headers["RateLimit-Remaining"])
    second = int(call("GET", f"{base}/apps").headers["RateLimit-Remaining"])
    assert second <= first
    r = call("GET", f"{base}/account/rate-limits")
    assert set(r.json()) == {"remaining"} and 0 < r.json()["remaining"] <= 4500


def test_version_3_plain_json_and_no_accept_are_served_another_version_is_refused(base, manager):
    manager.apps.return_value = []
    for accept in (ACCEPT, "application/vnd.heroku+json; version=3.cedar-acm", "application/json", "*/*"):
        assert call("GET", f"{base}/apps", headers={"Accept": accept}).status_code == 200
    r = call("GET", f"{base}/apps", headers={"Accept": "application/vnd.heroku+json; version=2"})
    assert_error(r, 400, "bad_request")


def test_a_body_over_the_limit_is_413_and_reaches_nothing(base, manager):
    r = call("PATCH", f"{base}/apps/demo/config-vars", data=b"{" + b" " * MAX_BODY + b"}")
    assert_error(r, 413, "request_too_large")
    assert manager.update_config.call_count == 0


def test_unknown_path_404_and_wrong_method_405(base):
    assert_error(call("GET", f"{base}/nothing-here"), 404, "not_found")
    assert_error(call("PUT", f"{base}/apps"), 405, "method_not_allowed")


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PATCH", "/apps/demo", {"maintenance": "yes"}),
        ("PATCH", "/apps/demo", {"name": 5}),
        ("PATCH", "/apps/demo/formation", {"updates": "web=2"}),
        ("PATCH", "/apps/demo/features/preboot", {"enabled": 1}),
        ("POST", "/apps/demo/releases", {"release": ["x"]}),
        ("POST", "/apps", {"name": 7}),
        ("PATCH", "/apps/demo/config-vars", {"A": 1}),
        ("POST", "/apps/demo/dynos", {"command": False}),
    ],
)
def test_wrong_types_are_422_invalid_params_and_reach_nothing(base, manager, method, path, body):
    assert_error(call(method, base + path, json=body), 422, "invalid_params")
    touched = {c[0] for c in manager.mock_calls} - {"app_name", "dyno_name", "app_row"}  # lookups only
    assert not touched, touched


def test_maintenance_takes_0_and_1_as_heroku3_sends_them(base, manager):
    manager.update_app.return_value = {"name": "demo"}
    assert call("PATCH", f"{base}/apps/demo", json={"maintenance": 0}).status_code == 200
    manager.update_app.assert_called_once_with("demo", maintenance=False, name=None)
    assert_error(call("PATCH", f"{base}/apps/demo", json={"maintenance": 2}), 422, "invalid_params")


def test_unknown_body_fields_are_ignored(base, manager):
    manager.update_app.return_value = {"name": "demo"}
    r = call("PATCH", f"{base}/apps/demo", json={"maintenance": True, "colour": "blue", "build_stack": "x"})
    assert r.status_code == 200
    manager.update_app.assert_called_once_with("demo", maintenance=True, name=None)


def test_creates_answer_201_restarts_and_stops_202_with_an_empty_object(base, manager):
    manager.create_app.return_value = {"name": "demo"}
    assert call("POST", f"{base}/apps", json={"name": "demo"}).status_code == 201
    for method, path in [
        ("DELETE", "/apps/demo/dynos"),
        ("DELETE", "/apps/demo/dynos/web.1"),
        ("DELETE", "/apps/demo/formations/web"),
        ("POST", "/apps/demo/dynos/web.1/actions/stop"),
        ("POST", "/apps/demo/formations/web/actions/stop"),
    ]:
        r = call(method, base + path)
        assert (r.status_code, r.json()) == (202, {}), (method, path)


# -- ranges ------------------------------------------------------------------------------------------------
def _apps(n: int) -> list[dict]:
    return [{"id": str(uuid.UUID(int=i)), "name": f"app{i:03d}"} for i in range(n)]


def test_a_list_over_200_is_cut_with_206_and_next_range_walks_the_rest(base, manager):
    manager.apps.return_value = _apps(250)
    r = call("GET", f"{base}/apps")
    assert r.status_code == 206 and len(r.json()) == 200
    assert r.headers["Next-Range"] == "name ]app199..; max=200"
    assert r.headers["Content-Range"] == "name app000..app199"
    rest = call("GET", f"{base}/apps", headers={"Range": r.headers["Next-Range"]})
    assert rest.status_code == 200 and [a["name"] for a in rest.json()] == [f"app{i:03d}" for i in range(200, 250)]
    assert "Next-Range" not in rest.headers


def test_range_max_and_order_desc(base, manager):
    manager.apps.return_value = _apps(30)
    r = call("GET", f"{base}/apps", headers={"Range": "name ..; max=10, order=desc"})
    assert r.status_code == 206 and [a["name"] for a in r.json()] == [f"app{i:03d}" for i in range(29, 19, -1)]
    assert r.headers["Next-Range"] == "name ]app020..; max=10, order=desc"
    nxt = call("GET", f"{base}/apps", headers={"Range": r.headers["Next-Range"]})
    assert [a["name"] for a in nxt.json()] == [f"app{i:03d}" for i in range(19, 9, -1)]
    semi = call("GET", f"{base}/apps", headers={"Range": "name ..; order=desc,max=10;"})  # as heroku3 sends it
    assert semi.status_code == 206 and semi.json() == r.json()
    whole = call("GET", f"{base}/apps", headers={"Range": "id ..; max=1000;"})
    assert whole.status_code == 200 and len(whole.json()) == 30


def test_releases_range_by_version_is_numeric(base, manager):
    manager.releases.return_value = [{"id": str(uuid.UUID(int=v)), "version": v} for v in range(1, 13)]
    r = call("GET", f"{base}/apps/demo/releases", headers={"Range": "version 9..; max=2"})
    assert r.status_code == 206 and [x["version"] for x in r.json()] == [9, 10]
    assert r.headers["Next-Range"] == "version ]10..; max=2"


@pytest.mark.parametrize(
    "bad", ["colour ..", "name ..; max=0", "name ..; max=1001", "name ..; order=sideways", "nonsense"]
)
def test_a_bad_range_is_400(base, manager, bad):
    manager.apps.return_value = _apps(3)
    assert_error(call("GET", f"{base}/apps", headers={"Range": bad}), 400, "bad_request")


# -- the schema --------------------------------------------------------------------------------------------
def test_schema_lists_every_route_of_the_table(base, served):
    _, _, api = served
    doc = call("GET", f"{base}/schema").json()
    links = {(link["method"], link["href"]) for d in doc["definitions"].values() for link in d["links"]}
    from labctl.controller.schema import href

    for route in api.routes:
        if route.resource:
            assert (route.method, href(route.pattern)) in links, route.pattern
    app_links = {(x["method"], x["title"], x["status"]) for x in doc["definitions"]["app"]["links"]}
    assert app_links >= {("POST", "Create", 201), ("GET", "List", 200), ("PATCH", "Update", 200)}
    assert json.dumps(doc)  # plain JSON throughout


def test_every_route_the_controller_serves_is_in_the_schema():
    """The controller's whole route table (daemon.py registers these parts): nothing outside GET /schema."""
    from labctl.controller import schema
    from labctl.controller.dashboard import Dashboard, Generators
    from labctl.controller.drains import DrainManager
    from labctl.controller.faults_router import RouterFaults
    from labctl.controller.logsessions import LogSessions

    api = Api(mock.MagicMock(name="manager"), lambda: {"lab": "unit"})
    FaultManager.register(mock.MagicMock(), api)
    RouterFaults.attach(mock.MagicMock(), api)
    DrainManager.register(mock.MagicMock(), api)
    LogSessions.register(mock.MagicMock(), api)
    Dashboard.register(
        mock.MagicMock(api=api, generators=mock.MagicMock(register=lambda a: Generators.register(mock.MagicMock(), a)))
    )
    unlisted = [(r.method, r.pattern) for r in api.routes if not r.resource and not r.public]
    assert unlisted == []
    doc = schema.document(api.routes)
    assert {"fault", "fault-support", "log-drain", "log-session", "traffic-generator", "dashboard-link"} <= set(
        doc["definitions"]
    )
    links = {(x["method"], x["href"]) for d in doc["definitions"].values() for x in d["links"]}
    assert (
        "POST",
        "/apps/{(#/definitions/app/definitions/identity)}/dynos/{(#/definitions/dyno/definitions/identity)}/faults",
    ) in links


def test_only_a_build_output_stream_answers_without_a_token(base, api_routes):
    public = [r.pattern for r in api_routes if r.public]
    assert public == ["/build-output/(?P<build>[^/]+)"]
    r = call("GET", f"{base}/build-output/{uuid.uuid4()}", auth=None)
    assert_error(r, 404, "not_found")  # looked up (no such build), not refused for want of a token


@pytest.fixture
def api_routes(served) -> list:
    return served[2].routes
