"""Log sessions and the drains commands without Docker: the controller's real API server, a real store, and the
CLI in-process (``labctl logs``, ``drains``…) against them."""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from unittest import mock
from urllib.parse import urlsplit

import pytest

from labctl import errors
from labctl.client import Client
from labctl.controller import logsessions
from labctl.controller.api import Api, make_server
from labctl.controller.drains import DrainManager
from labctl.controller.logsessions import LogSessions
from labctl.controller.logsink import LogSink
from labctl.domain import logplex
from labctl.labdir import LabDir
from labctl.settings import Settings
from labctl.store import Store
from tests.conftest import cli, wait_until


@pytest.fixture
def served(tmp_path: Path, monkeypatch) -> Iterator[Store]:
    """An API server whose log-sessions and log-drains routes are the real ones, over a store with app demo."""
    monkeypatch.setenv("LABCTL_STATE_DIR", str(tmp_path / "state"))
    store = Store(tmp_path / "lab.db")
    store.add_app("demo", None)
    manager = mock.MagicMock(name="manager")  # the routes under test do not use it, but the API may resolve
    manager.app_name.side_effect = lambda app: app  # an app's id to its name, and check it exists, through it

    def app_row(app: str) -> object:
        if store.app(app) is None:
            raise errors.NotFound(f"Couldn't find that app: {app}")
        return store.app(app)

    manager.app_row.side_effect = app_row
    api = Api(manager, lambda: {"lab": "unit"})
    drains = DrainManager(store, LogSink(store), lambda s: s * 0.01)
    sessions = LogSessions(store)
    for part in (drains, sessions):
        part.register(api)
        part.start()
    d = LabDir("unit")
    d.create(Settings("unit"))
    server = make_server(api, d.token())
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    d.write_api(server.server_address[1], 1)
    yield store
    server.shutdown()
    server.server_close()
    sessions.stop()
    drains.stop()
    store.close()


def _rows(store: Store) -> None:
    for source, dyno, msg in [
        ("app", "web.1", "one"),
        ("heroku", "router", "at=info path=/"),
        ("app", "web.2", "two"),
        ("heroku", "web.1", "State changed from starting to up"),
        ("app", "api", "Release v2 created by user lab"),
        ("app", "worker.1", "three"),
    ]:
        store.add_log("demo", source, dyno, msg)


def _get(url: str, accept: str | None = None) -> tuple[int, str, str]:
    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname or "", u.port, timeout=5)
    conn.request("GET", f"{u.path}?{u.query}", headers={"Accept": accept} if accept else {})
    resp = conn.getresponse()
    body = resp.read().decode()
    conn.close()
    return resp.status, resp.getheader("Content-Type") or "", body


def test_a_session_has_heroku_s_fields_and_streams_logplex_lines(served: Store):
    _rows(served)
    session = Client("unit").log_session("demo", lines=3)
    assert set(session) == {"id", "logplex_url", "created_at", "updated_at"}
    assert session["logplex_url"].startswith("http://127.0.0.1:")
    assert f"/sessions/{session['id']}?srv=" in session["logplex_url"]
    status, ctype, body = _get(session["logplex_url"])
    assert status == 200 and ctype.startswith("text/plain")
    want = [logplex.session_line(r) for r in served.logs("demo", limit=3)]
    assert body.splitlines() == want
    assert want[1].endswith(" app[api]: Release v2 created by user lab") and "+00:00 " in want[1]
    status, ctype, body = _get(session["logplex_url"], accept="text/event-stream")  # the Heroku CLI's EventSource
    assert status == 200 and ctype == "text/event-stream"
    assert body == "".join(f"data: {line}\n\n" for line in want)


@pytest.mark.parametrize(
    ("ask", "dynos"),
    [
        ({"dyno": "web"}, ["web.1", "web.2", "web.1"]),  # heroku[web.1] too
        ({"dyno": "web.1"}, ["web.1", "web.1"]),
        ({"dyno": "router"}, ["router"]),
        ({"source": "heroku"}, ["router", "web.1"]),
        ({"source": "app", "dyno": "api"}, ["api"]),
        ({"ptype": "worker"}, ["worker.1"]),
        ({"lines": 2}, ["api", "worker.1"]),
    ],
)
def test_a_session_s_filters(served: Store, ask: dict, dynos: list[str]):
    _rows(served)
    c = Client("unit")
    rows = list(c.log_session_rows(c.log_session("demo", **ask)["logplex_url"]))
    assert [r["dyno"] for r in rows] == dynos


def test_a_tail_streams_new_lines_until_the_reader_goes(served: Store):
    _rows(served)
    c = Client("unit")
    rows = c.log_session_rows(c.log_session("demo", lines=1, tail=True)["logplex_url"])
    assert next(rows)["msg"] == "three"
    served.add_log("demo", "app", "web.1", "four")
    assert next(rows)["msg"] == "four"
    rows.close()
    wait_until(lambda: not [t for t in threading.enumerate() if "process_request" in t.name], 5, 0.05, "tail ended")


def test_an_expired_or_unknown_session_is_not_found(served: Store, monkeypatch):
    c = Client("unit")
    url = c.log_session("demo")["logplex_url"]
    monkeypatch.setattr(logsessions, "SESSION_TTL", 0.0)
    assert _get(url)[0] == 404
    with pytest.raises(errors.NotFound, match="expired"):
        list(c.log_session_rows(url))
    assert _get(url.replace(url.split("/sessions/")[1][:8], "00000000"))[0] == 404


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"lines": "10"}, "'lines' must be a whole number"),
        ({"lines": 1501}, "'lines' must be a whole number"),
        ({"lines": True}, "'lines' must be a whole number"),
        ({"tail": "yes"}, "'tail' must be true or false"),
        ({"dyno": 1}, "'dyno' must be a string"),
    ],
)
def test_bad_session_bodies_are_invalid_params(served: Store, body: dict, says: str):
    with pytest.raises(errors.InvalidInput, match=says):
        Client("unit").post("/apps/demo/log-sessions", body)


def test_unknown_app(served: Store):
    with pytest.raises(errors.NotFound, match="Couldn't find that app: nope"):
        Client("unit").log_session("nope")
    with pytest.raises(errors.NotFound, match="Couldn't find that app: nope"):
        Client("unit").log_drains("nope")


# -- the CLI --------------------------------------------------------------------------------------------------
def test_labctl_logs_prints_what_it_printed_before(served: Store):
    _rows(served)
    r = cli("logs", "-a", "demo", "-n", "2", lab="unit")
    assert r.code == 0, r.err
    assert r.out.splitlines() == [logplex.session_line(x) for x in served.logs("demo", limit=2)]
    r = cli("logs", "-a", "demo", "-p", "web", "--json", lab="unit")
    assert [x["msg"] for x in json.loads(r.out)] == ["one", "two", "State changed from starting to up"]
    assert set(json.loads(r.out)[0]) == {"id", "app", "ts", "source", "dyno", "msg"}


def test_drains_commands(served: Store):
    import socket

    listener = socket.create_server(("127.0.0.1", 0))
    url = f"syslog://127.0.0.1:{listener.getsockname()[1]}"
    try:
        assert cli("drains", "-a", "demo", lab="unit").out == ""
        r = cli("drains:add", url, "-a", "demo", lab="unit")
        assert r.code == 0 and r.out == f"Successfully added drain {url}\n"
        token = served.drains()[0]["token"]
        assert cli("drains", "-a", "demo", lab="unit").out == f"=== Drains\n\n{url} ({token})\n"
        listed = json.loads(cli("drains", "-a", "demo", "--json", lab="unit").out)
        assert [(d["url"], d["token"], d["addon"]) for d in listed] == [(url, token, None)]
        r = cli("drains:remove", token, "-a", "demo", lab="unit")
        assert r.code == 0 and r.out == f"Successfully removed drain {url}\n"
        assert served.drains() == []
    finally:
        listener.close()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["drains:add", "syslog://logs.example.com:514"], "is not on this machine"),
        (["drains:add", "udp://127.0.0.1:514"], "unsupported scheme"),
        (["drains:remove", "syslog://127.0.0.1:9"], "Couldn't find that log drain"),
        (["drains", "-a", "nope"], "Couldn't find that app"),
    ],
)
def test_drains_bad_input_is_one_line_and_changes_nothing(served: Store, args: list[str], says: str):
    argv = args if "-a" in args else [*args, "-a", "demo"]
    r = cli(*argv, lab="unit")
    lines = r.err.strip().splitlines()
    assert r.code == 1 and len(lines) == 1 and says in lines[0] and r.out == "", (r.err, r.out)
    assert served.drains() == []
