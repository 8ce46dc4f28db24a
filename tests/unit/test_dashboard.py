"""The dashboard's login (issue 21 item 1) and its traffic figures, without Docker: one-time links, the session
cookie, the Host and Origin checks and the routes the page may call, then the whole login over the controller's
real HTTP layer (a recording stand-in for the manager)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from unittest import mock
from urllib.parse import urlsplit

import pytest
import requests

from labctl.controller import dashboard as dash
from labctl.controller.api import Api, make_server

TOKEN = "t0ken-for-dashboard-tests"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- one-time links and sessions ---------------------------------------------------------------------------------
def test_a_link_opens_one_session_once():
    s = dash.Sessions()
    code, _ = s.new_link()
    session = s.redeem(code)
    assert session and session != code and s.valid(session)
    assert s.redeem(code) is None  # used up


def test_an_expired_or_wrong_link_opens_nothing():
    clock = Clock()
    s = dash.Sessions(clock=clock, link_ttl=60)
    code, expires = s.new_link()
    assert expires == 1060
    clock.now = 1060.5
    assert s.redeem(code) is None
    for bad in ("", "x", code[:-1], "a" * 500):
        assert s.redeem(bad) is None


def test_sessions_end_and_expire():
    clock = Clock()
    s = dash.Sessions(clock=clock)
    a = s.redeem(s.new_link()[0])
    b = s.redeem(s.new_link()[0])
    assert a and b and a != b
    s.end(a)
    assert not s.valid(a) and s.valid(b)
    clock.now += dash.SESSION_TTL + 1
    assert not s.valid(b)
    assert not s.valid(None) and not s.valid("") and not s.valid("nope")


def test_only_digests_are_kept():
    s = dash.Sessions()
    code, _ = s.new_link()
    assert code not in repr(s.links)
    session = s.redeem(code)
    assert session not in repr(s.sessions)


def test_the_cookie_is_httponly_samesite_strict_and_per_lab():
    header = dash.set_cookie("my-lab", "abc")
    parts = [p.strip() for p in header.split(";")]
    assert parts[0] == "labctl_dashboard_my_lab=abc"
    assert {"HttpOnly", "SameSite=Strict", "Path=/dashboard"} <= set(parts)
    assert dash.session_from("x=1; labctl_dashboard_my_lab=abc; y=2", "my-lab") == "abc"
    assert dash.session_from("labctl_dashboard_other=abc", "my-lab") is None
    assert dash.session_from(None, "my-lab") is None


def test_host_and_origin_must_be_the_controller_itself():
    assert dash.host_ok("127.0.0.1:5000", 5000) and dash.host_ok("localhost:5000", 5000)
    for bad in (None, "", "127.0.0.1:5001", "evil.example:5000", "127.0.0.1"):
        assert not dash.host_ok(bad, 5000)
    assert dash.origin_ok("http://127.0.0.1:5000", 5000)
    for bad in (None, "null", "http://evil.example:5000", "https://127.0.0.1:5000"):
        assert not dash.origin_ok(bad, 5000)


@pytest.mark.parametrize(
    "method,path",
    [
        ("DELETE", "/apps/a/dynos/web.1"),
        ("POST", "/apps/a/dynos/web.1/actions/stop"),
        ("PATCH", "/apps/a/formation/web"),
        ("POST", "/instances/i-0123/faults"),
        ("DELETE", "/instances/i-0123/faults"),
        ("PATCH", "/apps/a/features/preboot"),
        ("POST", "/apps/a/traffic"),
        ("DELETE", "/apps/a/traffic"),
    ],
)
def test_the_page_calls_its_actions(method, path):
    assert dash.action_allowed(method, path)


@pytest.mark.parametrize(
    "method,path",
    [
        ("DELETE", "/apps/a"),
        ("POST", "/lab/dashboard-links"),
        ("PATCH", "/lab"),
        ("GET", "/apps/a/config-vars"),
        ("POST", "/apps/a/dynos"),
        ("DELETE", "/apps/a/dynos"),
        ("DELETE", "/spaces/s"),
        ("POST", "/apps/a/dynos/web.1/actions/stop/x"),
    ],
)
def test_the_page_calls_nothing_else(method, path):
    assert not dash.action_allowed(method, path)


# -- traffic from router lines -----------------------------------------------------------------------------------
def _line(dyno: str, service: int, status: int = 200, code: str = "") -> str:
    head = f'at=error code={code} desc="x" ' if code else "at=info "
    return (
        head + f'method=GET path="/" host=a.localhost request_id=r fwd="1.2.3.4" dyno={dyno} connect=1ms '
        f"service={service}ms status={status} bytes=10 protocol=http"
    )


def test_traffic_by_dyno_from_router_lines():
    t = dash.Traffic()
    now = 2000.0
    for i in range(20):  # 2 requests a second for the last 10 s on web.1
        t.feed("a", now - 10 + i / 2, _line("web.1", 10 * (i + 1)))
    t.feed("a", now - 2, _line("web.2", 5, 503, "H12"))
    t.feed("a", now - 2, _line("none", 0, 503, "H14"))
    v = t.view("a", "web.1", now)
    assert v is not None
    assert v["rps"] == 2.0
    assert len(v["rps_series"]) == dash.HISTORY_S and v["rps_series"][-10:] == [2] * 10
    assert v["p50"] == 101.0 and v["p95"] == 191.0  # connect 1 ms + service
    assert v["errors"] == {}
    assert t.view("a", "web.2", now)["errors"] == {"H12": 1}
    assert t.view("a", "router", now)["errors"] == {"H14": 1}  # no dyno answered
    assert t.view("a", "web.3", now) is None
    t.prune(now + dash.HISTORY_S + 5)
    assert t.view("a", "web.1", now + dash.HISTORY_S + 5) is None


# -- the login over HTTP ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def served() -> Iterator[tuple[str, dash.Dashboard]]:
    manager = mock.MagicMock(name="manager")
    api = Api(manager, lambda: {"lab": "unit"})
    board = dash.Dashboard(api, mock.MagicMock(name="store"), "unit", lambda: 0)
    board.register()
    server = make_server(api, TOKEN)
    board.port = server.server_address[1]
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield f"http://127.0.0.1:{board.port}", board
    server.shutdown()
    server.server_close()


def _link(base: str) -> str:
    r = requests.post(f"{base}/lab/dashboard-links", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["url"].startswith(f"{base}/dashboard/login?code=") and body["expires_in"] == dash.LINK_TTL
    return body["url"]


def test_a_link_needs_the_token(served):
    base, _ = served
    assert requests.post(f"{base}/lab/dashboard-links", timeout=10).status_code == 401


def test_login_sets_the_cookie_and_redirects_to_a_clean_url(served):
    base, _ = served
    url = _link(base)
    code = url.split("code=", 1)[1]
    r = requests.get(url, allow_redirects=False, timeout=10)
    assert r.status_code == 303
    assert r.headers["Location"] == "/dashboard/"
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/dashboard" in cookie
    session = cookie.split(";", 1)[0].split("=", 1)[1]
    assert session not in (code, TOKEN)
    page = requests.get(f"{base}/dashboard/", cookies={"labctl_dashboard_unit": session}, timeout=10)
    assert page.status_code == 200 and "<!doctype html>" in page.text
    assert code not in page.text and TOKEN not in page.text and session not in page.text
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    js = requests.get(f"{base}/dashboard/static/app.js", cookies={"labctl_dashboard_unit": session}, timeout=10)
    assert js.status_code == 200 and "javascript" in js.headers["Content-Type"]
    assert urlsplit(page.url).query == ""


def test_a_used_wrong_or_missing_login_gets_401_saying_what_to_do(served):
    base, _ = served
    url = _link(base)
    assert requests.get(url, allow_redirects=False, timeout=10).status_code == 303
    for bad in (url, f"{base}/dashboard/login?code=nope", f"{base}/dashboard/login", f"{base}/dashboard/"):
        r = requests.get(bad, allow_redirects=False, timeout=10)
        assert r.status_code == 401, bad
        assert "labctl dashboard --lab unit" in r.text and r.headers["Content-Type"].startswith("text/html")
    r = requests.get(f"{base}/dashboard/", cookies={"labctl_dashboard_unit": "forged"}, timeout=10)
    assert r.status_code == 401


def test_actions_need_the_pages_origin_and_an_allowed_route(served):
    base, board = served
    session = board.sessions.redeem(board.sessions.new_link()[0])
    jar = {"labctl_dashboard_unit": session}
    body = {"method": "DELETE", "path": "/apps/a/dynos/web.1", "body": {}}
    r = requests.post(f"{base}/dashboard/call", json=body, cookies=jar, timeout=10)
    assert r.status_code == 403  # no Origin
    r = requests.post(f"{base}/dashboard/call", json=body, cookies=jar, headers={"Origin": "http://evil"}, timeout=10)
    assert r.status_code == 403
    origin = {"Origin": base}
    r = requests.post(
        f"{base}/dashboard/call",
        json={"method": "DELETE", "path": "/apps/a", "body": {}},
        cookies=jar,
        headers=origin,
        timeout=10,
    )
    assert r.status_code == 403 and "does not call" in r.json()["message"]
    r = requests.post(f"{base}/dashboard/call", data=b"{", cookies=jar, headers=origin, timeout=10)
    assert r.status_code == 400


def test_an_action_is_the_apis_own_call_and_its_error_is_the_apis(served):
    base, board = served
    manager = board.api.m
    manager.reset_mock(return_value=True, side_effect=True)
    manager.app_name.side_effect = lambda ident: ident
    manager.dyno_name.side_effect = lambda app, ident: ident
    session = board.sessions.redeem(board.sessions.new_link()[0])
    jar, origin = {"labctl_dashboard_unit": session}, {"Origin": base}
    restart = {"method": "DELETE", "path": "/apps/demo/dynos/web.1", "body": {}}
    r = requests.post(f"{base}/dashboard/call", json=restart, cookies=jar, headers=origin, timeout=10)
    assert r.status_code == 200 and r.json() == {}
    manager.restart.assert_called_once_with("demo", dyno="web.1")
    from labctl.errors import NotFound

    manager.restart.side_effect = NotFound("Couldn't find that dyno.")
    r = requests.post(f"{base}/dashboard/call", json=restart, cookies=jar, headers=origin, timeout=10)
    assert r.status_code == 404 and r.json() == {"id": "not_found", "message": "Couldn't find that dyno."}


def test_an_other_host_name_is_refused(served):
    base, board = served
    session = board.sessions.redeem(board.sessions.new_link()[0])
    r = requests.get(
        f"{base}/dashboard/",
        cookies={"labctl_dashboard_unit": session},
        headers={"Host": f"rebound.example:{board.port}"},
        timeout=10,
    )
    assert r.status_code == 403


def test_the_static_files_are_small():
    total = sum(f.stat().st_size for f in dash.STATIC.iterdir())
    assert {"index.html", "app.js", "app.css"} <= {f.name for f in dash.STATIC.iterdir()}
    assert total < 300_000


# -- the snapshot, from a real store ---------------------------------------------------------------------------
def _dyno_row(app: str, name: str, instance: str | None, state: str = "up") -> dict:
    return {
        "app": app,
        "name": name,
        "type": "web",
        "size": "Private-S",
        "command": "x",
        "release": 1,
        "instance": instance,
        "state": state,
        "updated_at": 100.0,
        "container": "c" if instance else None,
        "port": 5000,
        "crashes": 0,
        "next_start": None,
        "boot_deadline": None,
        "up_since": None,
        "cycle_at": None,
        "one_off": 0,
        "attach": 0,
    }


def test_the_snapshot_puts_dynos_in_their_instance_boxes(tmp_path):
    from labctl.store import Store

    store = Store(tmp_path / "lab.db")
    try:
        store.add_space("sp")
        store.add_app("demo", "sp")
        store.add_app("cr", None)
        store.add_release("demo", 1, "img", {"web": "x"}, {}, "Deploy abc", "succeeded")
        store.add_instance("i-aaa", "sp")
        store.add_instance("i-bbb", "sp", ready_at=10**12)  # provisioning
        store.add_instance("i-ccc", "common")
        store.update_instance("i-aaa", faults=[{"id": "f-1", "kind": "cpu", "cpus": 0.05, "created_at": 1.0}])
        store.add_dyno(_dyno_row("demo", "web.1", "i-aaa"))
        store.add_dyno(_dyno_row("demo", "web.2", "i-bbb", "starting"))
        store.add_dyno(_dyno_row("demo", "web.3", None, "crashed"))
        snaps = dash.Snapshots(store, "unit", dash.Generators(mock.MagicMock(), lambda: 0))
        now = int(time.time()) + 0.2
        store.add_log("demo", "heroku", "router", _line("web.1", 20), ts=now - 1)
        snaps._read_router_lines()
        snap = snaps.build(now)
        areas = {a["id"]: a for a in snap["runtimes"]}
        assert list(areas) == ["common", "sp"] and areas["sp"]["apps"] == ["demo"] and areas["common"]["apps"] == ["cr"]
        boxes = {i["id"]: i for i in areas["sp"]["instances"]}
        assert [d["name"] for d in boxes["i-aaa"]["dynos"]] == ["web.1"]
        assert [f["label"] for f in boxes["i-aaa"]["faults"]] == ["cpu 0.05 CPU"]
        assert boxes["i-bbb"]["state"] == "provisioning" and [d["name"] for d in boxes["i-bbb"]["dynos"]] == ["web.2"]
        assert [d["name"] for d in areas["sp"]["dynos"]] == ["web.3"]  # on no instance
        assert [i["id"] for i in areas["common"]["instances"]] == ["i-ccc"]
        web1 = boxes["i-aaa"]["dynos"][0]
        assert web1["traffic"]["rps_series"][-1] == 1 and web1["release"] == 1 and web1["size"] == "Private-S"
        assert [line["app"] for line in snap["router_tail"]] == ["demo"]
        app = next(a for a in snap["apps"] if a["name"] == "demo")
        assert app["release"] == 1 and app["releases"][0]["description"] == "Deploy abc"
        assert app["preboot"] == {
            "enabled": False,
            "state": "idle",
            "serving": "new",
            "old_releases": [],
            "switch_at": None,
            "retire_at": None,
            "kind": None,
        }
    finally:
        store.close()


def test_preboot_says_which_generation_serves_and_when_it_switches():
    on = {"features": {"preboot": True}}
    old = {"routed": 1, "release": 3, "retire_at": 300.0}
    before = dash._preboot(on, {"kind": "deploy", "release": 4, "switch_at": 200.0, "switched": False}, [old])
    assert before["state"] == "prebooting" and before["serving"] == "old" and before["old_releases"] == [3]
    assert before["switch_at"] == 200.0
    after = dash._preboot(on, {"kind": "deploy", "release": 4, "switch_at": 200.0, "switched": True}, [old])
    assert after["state"] == "switching" and after["serving"] == "both" and after["retire_at"] == 300.0
    retiring = dash._preboot(on, {"kind": "restart"}, [{**old, "routed": 0}])
    assert retiring["state"] == "switching" and retiring["serving"] == "new"
    assert dash._preboot({"features": {}}, {}, [])["state"] == "idle"


def test_generators_of_gone_apps_stop():
    gens = dash.Generators(mock.MagicMock(), lambda: 0)
    stop = threading.Event()
    gens.running["gone"] = {"app": "gone", "stop": stop}
    gens.forget_gone({"other"})
    assert stop.is_set() and gens.running == {}
