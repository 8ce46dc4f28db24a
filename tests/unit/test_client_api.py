"""The API client's named methods against the controller's real routes, and its error mapping.

The controller's HTTP layer (``labctl.controller.api``: ``Api``, the fault routes, ``make_server``) runs on
127.0.0.1 over a recording stand-in for the manager, so each client method is shown to reach the route and the
manager call it is named after; an error the stand-in raises comes back to the caller as the same class. No
Docker, no lab.
"""

from __future__ import annotations

import ast
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from labctl import errors
from labctl.client import Client, controller_answers
from labctl.controller.api import Api, make_server
from labctl.controller.faults import FaultManager
from labctl.controller.faults_router import RouterFaults
from labctl.labdir import LabDir
from labctl.settings import Settings

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def _served(tmp_path_factory) -> Iterator[tuple[Path, mock.MagicMock, mock.MagicMock]]:
    """One real API server for the module, whose manager (and fault manager) record their calls."""
    state = tmp_path_factory.mktemp("state")
    manager, faults = mock.MagicMock(name="manager"), mock.MagicMock(name="faults")
    api = Api(manager, lambda: {"lab": "unit", "timescale": 1.0})
    FaultManager.register(faults, api)
    RouterFaults.attach(faults, api)  # the router-end routes, recorded by the same mock
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LABCTL_STATE_DIR", str(state))
        d = LabDir("unit")
        d.create(Settings("unit"))
        server = make_server(api, d.token())
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        d.write_api(server.server_address[1], 1)
    yield state, manager, faults
    server.shutdown()
    server.server_close()


@pytest.fixture
def lab(_served, monkeypatch) -> tuple[Client, mock.MagicMock, mock.MagicMock]:
    """A client of that server, with the recorders reset."""
    state, manager, faults = _served
    monkeypatch.setenv("LABCTL_STATE_DIR", str(state))
    for recorder in (manager, faults):
        recorder.reset_mock(return_value=True, side_effect=True)
    manager.app_name.side_effect = lambda ident: ident  # names pass through (ids are resolved by the manager)
    manager.dyno_name.side_effect = lambda app, ident: ident
    manager.app_row.side_effect = lambda app: {"id": "6e1faf6f-0000-4000-8000-000000000001", "name": app}
    manager.run.return_value = {"name": "run.1", "container": None}
    manager.releases.return_value = []
    manager.release.return_value = {"id": "0b5c8f2e-7c1a-4d3e-9f00-000000000003", "version": 3}
    manager.formation.return_value = [{"type": "web"}, {"type": "worker"}]
    manager.features.return_value = [{"name": "preboot", "id": "7a0d3a52-0000-4000-8000-000000000001"}]
    manager.deploy.side_effect = lambda app, src, progress: (progress("building"), {"id": "r-2", "version": 2})[1]
    return Client("unit", timeout=5), manager, faults


def _newest_release(c: Client, app: str) -> Any:
    """``releases:info`` without a version reads the list (empty here: the stand-in has no releases)."""
    with pytest.raises(errors.NotFound, match="has no releases"):
        c.release(app)


# (what the client is asked, which recorder, the call it must reach)
CALLS: list[tuple[Callable[[Client], Any], str, Any]] = [
    (lambda c: c.spaces(), "m", mock.call.spaces()),
    (lambda c: c.space_create("sp"), "m", mock.call.create_space("sp")),
    (lambda c: c.space_destroy("sp"), "m", mock.call.destroy_space("sp")),
    (lambda c: c.app_create("demo", "sp"), "m", mock.call.create_app("demo", "sp")),
    (lambda c: c.app_info("demo"), "m", mock.call.app_view("demo")),
    (lambda c: c.app_destroy("demo"), "m", mock.call.destroy_app("demo")),
    (lambda c: c.set_maintenance("demo", True), "m", mock.call.update_app("demo", maintenance=True, name=None)),
    (lambda c: c.app_rename("demo", "demo2"), "m", mock.call.update_app("demo", maintenance=None, name="demo2")),
    (lambda c: c.apps(), "m", mock.call.apps()),
    (lambda c: c.account(), "m", mock.call.account()),
    (lambda c: c.dyno("demo", "web.1"), "m", mock.call.dyno("demo", "web.1")),
    (lambda c: c.features("demo"), "m", mock.call.features("demo")),
    (lambda c: c.set_feature("demo", "preboot", False), "m", mock.call.set_feature("demo", "preboot", False)),
    (lambda c: c.releases("demo"), "m", mock.call.releases("demo")),
    (lambda c: c.release("demo", 3), "m", mock.call.release("demo", "3")),
    (lambda c: c.release("demo", "x"), "m", mock.call.release("demo", "x")),
    (lambda c: _newest_release(c, "demo"), "m", mock.call.releases("demo")),
    (lambda c: c.rollback("demo"), "m", mock.call.rollback("demo", None)),
    (lambda c: c.rollback("demo", 3), "m", mock.call.rollback("demo", "0b5c8f2e-7c1a-4d3e-9f00-000000000003")),
    (lambda c: c.config("demo"), "m", mock.call.config("demo")),
    (
        lambda c: c.config_set("demo", {"A": "1", "B": None}),
        "m",
        mock.call.update_config("demo", {"A": "1", "B": None}),
    ),
    (lambda c: c.formation("demo"), "m", mock.call.formation("demo")),
    (
        lambda c: c.scale("demo", ["web=2", "worker+1:standard-2x"]),
        "m",
        mock.call.update_formation(
            "demo", [{"type": "web", "quantity": "2"}, {"type": "worker", "quantity": "+1", "size": "standard-2x"}]
        ),
    ),
    (
        lambda c: c.resize("demo", {"*": "standard-2x"}),
        "m",
        mock.call.update_formation(
            "demo", [{"type": "web", "size": "standard-2x"}, {"type": "worker", "size": "standard-2x"}]
        ),
    ),
    (lambda c: c.dynos("demo"), "m", mock.call.dynos("demo", False, False)),
    (lambda c: c.dynos("demo", include_old=True), "m", mock.call.dynos("demo", True, False)),
    (lambda c: c.dynos("demo", extended=True), "m", mock.call.dynos("demo", False, True)),
    (lambda c: c.restart("demo"), "m", mock.call.restart("demo")),
    (lambda c: c.restart("demo", dyno="web.1"), "m", mock.call.restart("demo", dyno="web.1")),
    (lambda c: c.restart("demo", ptype="web"), "m", mock.call.restart("demo", ptype="web")),
    (lambda c: c.stop("demo", dyno="web.1"), "m", mock.call.stop("demo", dyno="web.1")),
    (lambda c: c.stop("demo", ptype="worker"), "m", mock.call.stop("demo", ptype="worker")),
    (lambda c: c.run_detached("demo", "sleep 1", "basic"), "m", mock.call.run("demo", "sleep 1", False, "basic")),
    (lambda c: list(c.run("demo", "true")), "m", mock.call.run("demo", "true", True, None)),
    (lambda c: list(c.build("demo", str(REPO))), "m", mock.call.deploy("demo", str(REPO), mock.ANY)),
    (
        lambda c: c.log_lines("demo", n=5, dyno="web.1"),
        "m",
        mock.call.logs("demo", 0, 5, dyno="web.1", ptype=None, source=None),
    ),
    (
        lambda c: c.log_lines("demo", after=7, n=1500, source="app"),
        "m",
        mock.call.logs("demo", 7, 1500, dyno=None, ptype=None, source="app"),
    ),
    (lambda c: c.instances(), "m", mock.call.instances()),
    (lambda c: c.faults(), "f", mock.call.list_faults(None)),
    (lambda c: c.faults("demo"), "f", mock.call.list_faults("demo")),
    (lambda c: c.faults_add({"kind": "cpu"}, instance="i-1"), "f", mock.call.add("i-1", {"kind": "cpu"})),
    (
        lambda c: c.faults_add({"kind": "loss"}, app="demo", dyno="web.1"),
        "f",
        mock.call.add(mock.ANY, {"kind": "loss"}),
    ),
    (lambda c: c.faults_clear(), "f", mock.call.clear(None, None)),
    (lambda c: c.faults_clear(kind="cpu"), "f", mock.call.clear(None, "cpu")),
    (lambda c: c.faults_clear(instance="i-1"), "f", mock.call.clear("i-1", None)),
    (lambda c: c.faults_clear(app="demo", dyno="web.1", kind="loss"), "f", mock.call.clear(mock.ANY, "loss")),
    (
        lambda c: c.faults_add({"kind": "loss", "to_instance": "i-1"}, router="common"),
        "f",
        mock.call.add("common", {"kind": "loss", "to_instance": "i-1"}),
    ),
    (lambda c: c.faults_clear(router="sp", kind="loss"), "f", mock.call.clear("sp", "loss")),
]


@pytest.mark.parametrize(("ask", "who", "expected"), CALLS, ids=[str(c[2]).removeprefix("call.") for c in CALLS])
def test_each_method_reaches_its_route(lab, ask, who: str, expected: Any):
    client, manager, faults = lab
    ask(client)
    recorder = manager if who == "m" else faults
    assert expected in recorder.mock_calls, recorder.mock_calls


def test_lab_status_timescale_and_a_dyno_s_faults(lab):
    client, manager, faults = lab
    assert client.lab_status() == {"lab": "unit", "timescale": 1.0}
    assert client.set_timescale(0.5) == {"lab": "unit", "timescale": 1.0}
    manager.set_timescale.assert_called_once_with(0.5)
    faults.dyno_instance.return_value = "i-9"
    client.faults_add({"kind": "cpu"}, app="demo", dyno="web.1")
    faults.dyno_instance.assert_called_with("demo", "web.1")
    faults.add.assert_called_with("i-9", {"kind": "cpu"})
    assert controller_answers("unit")
    assert not controller_answers("never-up")


def test_names_are_one_path_segment(lab):
    client, manager, _ = lab
    client.restart("a b", dyno="web/1")  # quoted whole: the one-dyno route, not another one or none
    assert manager.restart.call_count == 1 and set(manager.restart.call_args.kwargs) == {"dyno"}


def _error_classes(cls: type[errors.LabError] = errors.LabError) -> list[type[errors.LabError]]:
    return [cls, *(sub for direct in cls.__subclasses__() for sub in _error_classes(direct))]


@pytest.mark.parametrize("cls", _error_classes(), ids=lambda c: c.__name__)
def test_an_error_comes_back_as_the_class_the_controller_raised(lab, cls: type[errors.LabError]):
    client, manager, faults = lab
    manager.restart.side_effect = cls("it went wrong")
    with pytest.raises(cls) as info:
        client.restart("demo")
    assert type(info.value) is cls and str(info.value) == "it went wrong"
    manager.deploy.side_effect = cls("the build broke")
    rows = client.build("demo", str(REPO))
    with pytest.raises(cls) as info:
        list(rows)
    assert type(info.value) is cls and str(info.value) == "the build broke"


def test_unknown_routes_and_bad_bodies_are_the_controller_s_errors(lab):
    client, manager, _ = lab
    with pytest.raises(errors.NotFound, match="No such endpoint: GET /nothing"):
        client.get("/nothing")
    manager.update_config.side_effect = AssertionError("never reached")
    with pytest.raises(errors.InvalidInput, match="config var names"):
        client.config_set("demo", {})


class _Fixed(BaseHTTPRequestHandler):
    """Answers every call with the status and body named by its path: /<status>/<body as JSON or text>."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        from urllib.parse import unquote

        _, status, body = self.path.split("/", 2)
        data = unquote(body).encode()
        self.send_response(int(status))
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture(scope="module")
def _fixed_server(tmp_path_factory) -> Iterator[Path]:
    state = tmp_path_factory.mktemp("fixed")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Fixed)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LABCTL_STATE_DIR", str(state))
        d = LabDir("fixed")
        d.create(Settings("fixed"))
        d.write_api(server.server_address[1], 1)
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def fixed(_fixed_server, monkeypatch) -> Client:
    """A client of a server that answers what its path asks for."""
    monkeypatch.setenv("LABCTL_STATE_DIR", str(_fixed_server))
    return Client("fixed", timeout=5)


@pytest.mark.parametrize(
    ("status", "body", "error", "message"),
    [
        (409, {"id": "conflict", "message": "Name is already taken"}, errors.Conflict, "Name is already taken"),
        (503, {"id": "engine_unavailable", "message": "Docker is down"}, errors.EngineUnavailable, "Docker is down"),
        (502, {"id": "engine_error", "message": "refused"}, errors.EngineError, "refused"),
        (422, {"id": "build_failed", "message": "no Procfile"}, errors.BuildFailed, "no Procfile"),
        (404, {"message": "gone"}, errors.NotFound, "gone"),  # no id: by status
        (422, {"id": "something_new", "message": "odd"}, errors.InvalidInput, "odd"),  # an unknown id: by status
        (
            401,
            {"id": "unauthorized", "message": "Invalid credentials provided."},
            errors.LabError,
            "Invalid credentials provided.",
        ),
        (500, {"id": "internal", "message": "internal error: boom"}, errors.LabError, "internal error: boom"),
        (500, "not json at all", errors.LabError, "not json at all"),
    ],
)
def test_error_bodies_map_by_id_then_status(fixed: Client, status, body, error, message):
    from urllib.parse import quote

    text = body if isinstance(body, str) else json.dumps(body)
    with pytest.raises(error) as info:
        fixed.get(f"/{status}/{quote(text, safe='')}")
    assert type(info.value) is error and str(info.value) == message


# -- no API path outside the client ------------------------------------------------------------------------
API_PREFIXES = ("/apps", "/lab", "/spaces", "/instances", "/faults", "/routers", "/health")


def _path_literals(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant):
            text = str(node.values[0].value)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
        else:
            continue
        head = text.split("?", 1)[0]
        if any(head == p or head.startswith(p + "/") for p in API_PREFIXES):
            found.append(f"{path.relative_to(REPO)}:{node.lineno}: {text!r}")
    return found


def test_no_api_path_is_written_outside_the_client():
    files = [*(REPO / "labctl").rglob("*.py"), *(REPO / "bench").rglob("*.py")]
    mine = [
        f
        for f in files
        if f.relative_to(REPO).parts[:2] != ("labctl", "controller") and f != REPO / "labctl" / "client.py"
    ]
    assert [hit for f in mine for hit in _path_literals(f)] == []
    assert len(_path_literals(REPO / "labctl" / "client.py")) >= 20  # the scan does see paths
