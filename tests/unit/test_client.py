"""The controller client (labctl/client.py) against a stand-in API on 127.0.0.1: answers, errors, streams."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from labctl.client import Client
from labctl.errors import ControllerUnavailable, InvalidInput, LabError, NotFound
from labctl.labdir import LabDir
from labctl.settings import Settings

TOKEN_SEEN: list[str] = []


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802
        TOKEN_SEEN.append(self.headers.get("Authorization", ""))
        if self.path.startswith("/echo"):
            self._send(200, json.dumps({"path": self.path}).encode())
        elif self.path == "/missing":
            self._send(404, b'{"id": "not_found", "message": "Couldn\'t find that app."}')
        elif self.path == "/bad":
            self._send(422, b'{"id": "invalid", "message": "Invalid size"}')
        elif self.path == "/plain":
            self._send(500, b"boom\n", "text/plain")
        else:
            self._send(200, b"")

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path == "/stream":
            self.send_response(200)
            self.send_header("Content-Type", "application/x-ndjson")
            self.send_header("Connection", "close")
            self.end_headers()
            for row in ({"line": "one"}, {"line": "two"}, *body.get("then", [])):
                self.wfile.write(json.dumps(row).encode() + b"\n\n")
                self.wfile.flush()
            self.close_connection = True
        else:
            self._send(201, json.dumps({"got": body}).encode())


@pytest.fixture
def api(tmp_path, monkeypatch) -> Iterator[Client]:
    monkeypatch.setenv("LABCTL_STATE_DIR", str(tmp_path))
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    d = LabDir("unit")
    d.create(Settings("unit"))
    d.write_api(server.server_address[1], 1)
    TOKEN_SEEN.clear()
    yield Client("unit", timeout=5)
    server.shutdown()
    server.server_close()


def test_answers_are_json_and_carry_the_token(api: Client):
    assert api.get("/echo", n=3, since=None) == {"path": "/echo?n=3"}  # None is left out, as requests did
    assert TOKEN_SEEN == [f"Bearer {LabDir('unit').token()}"]
    assert api.post("/things", {"a": 1}) == {"got": {"a": 1}}
    assert api.post("/things") == {"got": {}}
    assert api.get("/empty") is None


@pytest.mark.parametrize(
    ("path", "error", "message"),
    [
        ("/missing", NotFound, "Couldn't find that app."),
        ("/bad", InvalidInput, "Invalid size"),
        ("/plain", LabError, "boom"),
    ],
)
def test_error_answers_raise_one_line(api: Client, path: str, error: type, message: str):
    with pytest.raises(error) as info:
        api.get(path)
    assert str(info.value).strip() == message


def test_ndjson_rows_stream_and_an_error_row_raises(api: Client):
    assert [r["line"] for r in api.stream("POST", "/stream", {})] == ["one", "two"]
    rows = api.stream("POST", "/stream", {"then": [{"error": {"id": "x", "message": "build failed"}}]})
    with pytest.raises(LabError, match="build failed"):
        list(rows)
    assert list(api.stream("POST", "/other", {"b": 2})) == [{"result": {"got": {"b": 2}}}]


def test_a_controller_that_is_gone_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("LABCTL_STATE_DIR", str(tmp_path))
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    d = LabDir("gone")
    d.create(Settings("gone"))
    d.write_api(port, 1)
    with pytest.raises(ControllerUnavailable, match="does not answer"):
        Client("gone", timeout=2).get("/lab")
    with pytest.raises(ControllerUnavailable, match="is not up"):
        Client("never")
