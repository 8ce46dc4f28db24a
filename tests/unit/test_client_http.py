"""The API client's transport (labctl/client_http.py) against a raw socket on 127.0.0.1 that answers exactly the
bytes a test gives it: what it sends, how it finds the body's end, and that every bad answer is an OSError."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from labctl import client_http


class _Raw:
    """Accepts one connection at a time, records the request's head and body, answers ``answer`` and closes."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.answer = b""
        self.hold = threading.Event()  # set: close only when the test says so
        self.release = threading.Event()
        self.requests: list[bytes] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, _, body = data.partition(b"\r\n\r\n")
                sizes = [int(h.split(b":")[1]) for h in head.split(b"\r\n") if h.startswith(b"Content-Length")]
                length = sizes[0] if sizes else 0
                while len(body) < length:
                    body += conn.recv(65536)
                self.requests.append(head + b"\r\n\r\n" + body)
                conn.sendall(self.answer)
                if self.hold.is_set():
                    self.release.wait(5)


@pytest.fixture
def raw() -> Iterator[_Raw]:
    server = _Raw()
    yield server
    server.release.set()
    server.sock.close()


def test_a_json_answer_and_what_is_sent(raw: _Raw):
    raw.answer = b'HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 9\r\n\r\n{"a": 1}\nEXTRA'
    resp = client_http.request("127.0.0.1", raw.port, "POST", "/apps?x=1", {"Accept": "v3"}, b'{"n": 2}', 5)
    assert (resp.status, resp.getheader("content-type")) == (201, "application/json")
    assert resp.getheader("X-None", "-") == "-"
    assert resp.read() == b'{"a": 1}\n'  # the Content-Length, not what follows
    resp.close()
    head, _, body = raw.requests[0].partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /apps?x=1 HTTP/1.1"
    assert {f"Host: 127.0.0.1:{raw.port}", "Connection: close", "Accept: v3", "Content-Length: 8"} <= set(lines)
    assert body == b'{"n": 2}'


def test_a_post_without_a_body_says_length_0_and_a_get_says_nothing(raw: _Raw):
    raw.answer = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    for method in ("POST", "GET"):
        client_http.request("127.0.0.1", raw.port, method, "/", timeout=5).close()
    assert b"Content-Length: 0" in raw.requests[0]
    assert b"Content-Length" not in raw.requests[1]


def test_a_stream_is_read_line_by_line_until_the_connection_closes(raw: _Raw):
    raw.answer = b'HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n\r\n{"line": 1}\n\n{"line": 2}'
    resp = client_http.request("127.0.0.1", raw.port, "GET", "/s", timeout=5)
    assert [resp.readline() for _ in range(4)] == [b'{"line": 1}\n', b"\n", b'{"line": 2}', b""]
    resp.close()


def test_lines_of_a_sized_body_stop_at_its_length(raw: _Raw):
    raw.answer = b"HTTP/1.0 404 Not Found\r\nContent-Length: 6\r\n\r\nab\ncd\nef\n"
    resp = client_http.request("127.0.0.1", raw.port, "GET", "/", timeout=5)
    assert [resp.readline() for _ in range(3)] == [b"ab\n", b"cd\n", b""]
    assert resp.status == 404
    resp.close()


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        (b"", "closed before the answer"),
        (b"SSH-2.0-OpenSSH\r\n\r\n", "not an HTTP answer"),
        (b"HTTP/1.1 2000 OK\r\n\r\n", "not an HTTP answer"),
        (b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n", "not a header line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n", "closed before the answer"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "Content-Length '-1'"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", "chunked"),
        (b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 101 + b"\r\n", "more than 100 headers"),
        (b"HTTP/1.1 200 OK\r\nX: " + b"y" * 70000 + b"\r\n\r\n", "too long"),
    ],
)
def test_a_bad_answer_is_an_os_error_that_says_why(raw: _Raw, answer: bytes, why: str):
    raw.answer = answer
    with pytest.raises(client_http.BadAnswer, match=why) as caught:
        client_http.request("127.0.0.1", raw.port, "GET", "/", timeout=5)
    assert isinstance(caught.value, OSError)


def test_a_body_cut_short_is_a_bad_answer(raw: _Raw):
    raw.answer = b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{}"
    resp = client_http.request("127.0.0.1", raw.port, "GET", "/", timeout=5)
    with pytest.raises(client_http.BadAnswer, match="cut short: 2 of 50"):
        resp.read()
    resp.close()


def test_silence_is_a_timeout_and_no_listener_is_refused(raw: _Raw):
    raw.answer = b"HTTP/1.1 200 OK\r\n"
    raw.hold.set()
    with pytest.raises(TimeoutError):
        client_http.request("127.0.0.1", raw.port, "GET", "/", timeout=0.2)
    free = socket.create_server(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()
    with pytest.raises(ConnectionRefusedError):
        client_http.request("127.0.0.1", port, "GET", "/", timeout=1)
