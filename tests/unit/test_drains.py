"""Log drains without Docker: the wire forms (Logplex's), and forwarders over a real store to real receivers on
127.0.0.1 (an HTTP server and a TCP listener in this process): order, once-only delivery, the L10 overflow with
a receiver that stalls, retries, a restart, bad input and a clean stop."""

from __future__ import annotations

import re
import select
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from labctl.controller.drains import DrainManager
from labctl.controller.logsink import LogSink
from labctl.domain import logplex
from labctl.errors import InvalidInput, NotFound
from labctl.store import Store
from tests.conftest import wait_until

FAST = 0.01  # the lab's time scale in these tests: a 5 s request timeout is 50 ms


def split_frames(data: bytes) -> list[str]:
    """RFC 6587 octet-counted frames back into messages (fails on a bad count)."""
    out, i = [], 0
    while i < len(data):
        sp = data.index(b" ", i)
        n = int(data[i:sp])
        msg = data[sp + 1 : sp + 1 + n]
        assert len(msg) == n, f"frame at {i} claims {n} bytes, has {len(msg)}"
        out.append(msg.decode())
        i = sp + 1 + n
    return out


HTTP_LINE = re.compile(r"^<(\d+)>1 (\S+) host (\S+) (\S+) - (.*)$", re.S)
SYSLOG_LINE = re.compile(r"^<(\d+)>1 (\S+) (d\.[0-9a-f-]{36}) (\S+) (\S+) - - (.*)\n$", re.S)


# -- the wire forms ---------------------------------------------------------------------------------------
ROW = {"id": 1, "app": "demo", "ts": 1796637600.5, "source": "app", "dyno": "web.1", "msg": "héllo"}


def test_messages_are_logplex_s():
    assert logplex.http_message(ROW) == "<190>1 2026-12-07T10:00:00.500000+00:00 host app web.1 - héllo"
    token = "d.9173ea1f-6f14-4976-9cf0-7cd0dafdcdbc"
    assert logplex.syslog_message(ROW, token) == (
        f"<190>1 2026-12-07T10:00:00.500000+00:00 {token} app web.1 - - héllo\n"
    )
    router = {**ROW, "source": "heroku", "dyno": "router"}
    assert logplex.http_message(router).startswith("<158>1 ")
    assert logplex.http_message({**ROW, "source": "heroku"}).startswith("<45>1 ")
    assert logplex.http_message({**ROW, "dyno": "api"}).startswith("<45>1 ")


def test_frames_count_bytes_not_characters():
    assert logplex.frame("héllo") == b"6 h\xc3\xa9llo"
    assert split_frames(logplex.frame("a b") + logplex.frame("")) == ["a b", ""]


def test_the_l10_notice_reads_as_logplex_writes_it():
    row = logplex.overflow_row(13, 1796637600.0, 1796637700.0)
    assert logplex.http_message(row) == (
        "<172>1 2026-12-07T10:01:40.000000+00:00 host heroku logplex - "
        "Error L10 (output buffer overflow): 13 messages dropped since 2026-12-07T10:00:00+00:00."
    )
    assert logplex.overflow_log_line("d.x", 2, 1796637600.0) == (
        "Error L10 (output buffer overflow): drain 'd.x' dropped 2 messages since 2026-12-07T10:00:00.000000+00:00."
    )


@pytest.mark.parametrize(
    ("url", "connect", "port"),
    [
        ("syslog://127.0.0.1:5140", "127.0.0.1", 5140),
        ("syslog+tls://logs.localhost", "127.0.0.1", 6514),
        ("https://user:pass@drain.localhost/logs?x=1", "127.0.0.1", 443),
        ("http://localhost:8080/", "127.0.0.1", 8080),
        ("http://[::1]:9000/in", "::1", 9000),
        ("syslog://127.0.0.2:514", "127.0.0.2", 514),
    ],
)
def test_receivers_on_this_machine_are_accepted(url: str, connect: str, port: int):
    target = logplex.parse_drain_url(url)
    assert (target.connect_host, target.port) == (connect, port)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("syslog://logs.example.com:514", "is not on this machine"),
        ("https://10.0.0.1/logs", "is not on this machine"),
        ("http://localhost.example.com/", "is not on this machine"),
        ("ftp://127.0.0.1/x", "unsupported scheme"),
        ("127.0.0.1:514", "unsupported scheme"),
        ("syslog://127.0.0.1:99999", "invalid port"),
        ("http:///path", "has no host"),
        ("", "non-empty string 'url'"),
        (5, "non-empty string 'url'"),
    ],
)
def test_other_urls_are_refused_with_one_line(url: Any, says: str):
    with pytest.raises(InvalidInput, match=says) as info:
        logplex.parse_drain_url(url)
    assert "\n" not in str(info.value)


# -- receivers ---------------------------------------------------------------------------------------------
class HttpReceiver:
    """An HTTP drain receiver: records each POST; ``stall`` holds answers until it is set again."""

    def __init__(self, tls: Any = None) -> None:
        self.posts: list[tuple[dict[str, str], list[str]]] = []
        self.open = threading.Event()
        self.open.set()
        self.status = 200
        self.script: list[int] = []  # statuses for the next POSTs, before ``status`` again
        self.arrived = 0  # POSTs read, answered or not
        me = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                me.arrived += 1
                stalled = not me.open.is_set()
                if not me.open.wait(10) or stalled or self._client_gone():
                    self.close_connection = True
                    return  # a POST that came while stalled is never taken (the sender counts it lost)
                status = me.script.pop(0) if me.script else me.status
                if status < 300:
                    me.posts.append((dict(self.headers), split_frames(body)))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _client_gone(self) -> bool:
                readable, _, _ = select.select([self.connection], [], [], 0)
                return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:  # an ssl.SSLContext: an HTTPS receiver
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/logs"

    def lines(self) -> list[str]:
        return [m for _, msgs in list(self.posts) for m in msgs]

    def close(self) -> None:
        self.open.set()
        self.server.shutdown()
        self.server.server_close()


class TcpReceiver:
    """A syslog-over-TCP receiver: everything read from every connection, in order."""

    def __init__(self, tls: Any = None) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.tls = tls  # an ssl.SSLContext: each connection is TLS
        self.data = bytearray()
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        try:
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)  # a failed handshake ends this connection only
            with conn:
                while chunk := conn.recv(65536):
                    with self.lock:
                        self.data += chunk
        except OSError:
            return

    @property
    def url(self) -> str:
        return f"syslog://127.0.0.1:{self.sock.getsockname()[1]}"

    def lines(self) -> list[str]:
        with self.lock:
            return split_frames(bytes(self.data))

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "lab.db")
    yield s
    s.close()


@pytest.fixture
def http_receiver() -> Iterator[HttpReceiver]:
    r = HttpReceiver()
    yield r
    r.close()


@pytest.fixture
def tcp_receiver() -> Iterator[TcpReceiver]:
    r = TcpReceiver()
    yield r
    r.close()


@pytest.fixture
def drains(store: Store) -> Iterator[DrainManager]:
    m = DrainManager(store, LogSink(store), lambda s: s * FAST)
    m.start()
    yield m
    m.stop()
    assert not [t.name for t in threading.enumerate() if t.name.startswith("drain")]


def _app(store: Store, name: str = "demo") -> None:
    if store.app(name) is None:
        store.add_app(name, None)


def _log(store: Store, n: int, start: int = 0, dyno: str = "web.1") -> list[str]:
    msgs = [f"line {i}" for i in range(start, start + n)]
    for m in msgs:
        store.add_log("demo", "app", dyno, m)
    return msgs


def _msgs(lines: list[str], pattern: re.Pattern[str]) -> list[str]:
    return [pattern.match(line).group(pattern.groups) for line in lines]  # type: ignore[union-attr]


# -- delivery ----------------------------------------------------------------------------------------------
def test_an_http_drain_gets_every_line_once_in_order_framed_as_logplex(store, drains, http_receiver):
    _app(store)
    _log(store, 5)  # before the drain: not sent (a drain gets what is logged from now on)
    drain = drains.add("demo", http_receiver.url)
    assert re.fullmatch(r"d\.[0-9a-f-]{36}", drain["token"])
    sent = _log(store, 300, start=5)
    wait_until(lambda: len(http_receiver.lines()) >= 300, 10, 0.05, "300 lines at the receiver")
    time.sleep(0.3)  # nothing more may come
    lines = http_receiver.lines()
    assert _msgs(lines, HTTP_LINE) == sent
    first = HTTP_LINE.match(lines[0])
    assert first is not None and first.group(1) == "190" and first.group(3) == "app" and first.group(4) == "web.1"
    for headers, msgs in http_receiver.posts:
        assert headers["Content-Type"] == "application/logplex-1"
        assert headers["Logplex-Msg-Count"] == str(len(msgs))
        assert headers["Logplex-Drain-Token"] == drain["token"]
        assert re.fullmatch(r"[0-9A-F]{32}", headers["Logplex-Frame-Id"])
    frame_ids = [h["Logplex-Frame-Id"] for h, _ in http_receiver.posts]
    assert len(set(frame_ids)) == len(frame_ids)


def test_a_syslog_drain_gets_rfc5424_with_the_token_as_host(store, drains, tcp_receiver):
    _app(store)
    drain = drains.add("demo", tcp_receiver.url)
    sent = _log(store, 50) + _log(store, 3, 50, dyno="router")
    wait_until(lambda: len(tcp_receiver.lines()) >= 53, 10, 0.05, "53 lines at the receiver")
    lines = tcp_receiver.lines()
    assert _msgs(lines, SYSLOG_LINE) == sent
    assert {SYSLOG_LINE.match(x).group(3) for x in lines} == {drain["token"]}  # type: ignore[union-attr]


def test_a_receiver_that_stalls_gets_l10_and_nothing_twice(store, http_receiver):
    """Logplex's buffer holds 1024 lines: while the receiver does not answer, frames are tried three times and
    dropped, older lines give way to new ones; the app's log says L10, and the first frame the receiver takes
    afterwards starts with the count of what it missed."""
    _app(store)
    slower = DrainManager(store, LogSink(store), lambda s: s * 0.1)  # 0.5 s request timeouts: a loaded machine
    slower.start()  # answers in time once the receiver takes POSTs again
    try:
        slower.add("demo", http_receiver.url)
        http_receiver.open.clear()
        sent = _log(store, 1500)
        wait_until(
            lambda: [r for r in store.logs("demo", limit=1500) if r["dyno"] == "logplex"], 20, 0.05, "an L10 line"
        )
        l10 = [r for r in store.logs("demo", limit=1500) if r["dyno"] == "logplex"]
        assert l10[0]["source"] == "heroku"
        assert re.fullmatch(
            r"Error L10 \(output buffer overflow\): drain 'd\.[0-9a-f-]{36}' dropped \d+ messages since \S+\.",
            l10[0]["msg"],
        )
        http_receiver.open.set()
        wait_until(lambda: store.drains()[0]["cursor"] == store.last_log_id(), 20, 0.05, "every line handed off")
        time.sleep(0.3)
        got = _msgs(http_receiver.lines(), HTTP_LINE)
        notices = [m for m in got if m.startswith("Error L10 (output buffer overflow): ") and "drain '" not in m]
        assert notices, got[:3]
        dropped = sum(int(m.split(": ")[1].split()[0]) for m in notices)
        delivered = [m for m in got if m not in notices]
        assert len(delivered) == len(set(delivered))  # nothing twice
        everything = sent + [r["msg"] for r in store.logs_after("demo", 0, 5000) if r["dyno"] == "logplex"]
        assert [m for m in delivered if m.startswith("line ")] == [m for m in sent if m in set(delivered)]  # in order
        assert len(delivered) + dropped == len(everything)  # every line arrived or was counted as dropped
    finally:
        slower.stop()


def test_4xx_drops_a_frame_and_5xx_retries_it(store, drains, http_receiver):
    _app(store)
    drains.add("demo", http_receiver.url)
    http_receiver.script = [503, 503]  # two tries fail, the third (the last) is taken
    _log(store, 1)
    wait_until(lambda: http_receiver.lines(), 10, 0.05, "the retried frame")
    assert _msgs(http_receiver.lines(), HTTP_LINE) == ["line 0"]
    before = http_receiver.arrived
    http_receiver.script = [400]  # the next POST is refused for good: its frame is dropped, not retried
    _log(store, 1, start=1)
    wait_until(lambda: http_receiver.arrived > before and not http_receiver.script, 10, 0.05, "the 400")
    _log(store, 1, start=2)
    wait_until(lambda: len(http_receiver.lines()) >= 2, 10, 0.05, "the next frame")
    got = _msgs(http_receiver.lines(), HTTP_LINE)
    assert got[0] == "line 0" and got[-1] == "line 2" and "line 1" not in got
    assert re.fullmatch(r"Error L10 \(output buffer overflow\): 1 messages dropped since \S+\.", got[1])


def test_a_restarted_controller_carries_on_where_it_left_off(store, tcp_receiver):
    _app(store)
    first = DrainManager(store, LogSink(store), lambda s: s * FAST)
    first.start()
    first.add("demo", tcp_receiver.url)
    sent = _log(store, 20)
    wait_until(lambda: len(tcp_receiver.lines()) >= 20, 10, 0.05, "20 lines")
    first.stop()
    sent += _log(store, 20, start=20)  # while the controller is away
    second = DrainManager(store, LogSink(store), lambda s: s * FAST)
    second.start()
    try:
        sent += _log(store, 5, start=40)
        wait_until(lambda: len(tcp_receiver.lines()) >= 45, 10, 0.05, "45 lines")
        time.sleep(0.3)
        assert _msgs(tcp_receiver.lines(), SYSLOG_LINE) == sent
    finally:
        second.stop()


def test_bad_input_changes_nothing(store, drains, http_receiver):
    _app(store)
    for url in ("syslog://logs.example.com:514", "gopher://127.0.0.1/", "https://192.168.1.1/"):
        with pytest.raises(InvalidInput):
            drains.add("demo", url)
    with pytest.raises(NotFound, match="Couldn't find that app"):
        drains.add("nope", http_receiver.url)
    assert store.drains() == [] and drains.forwarders == {}
    drain = drains.add("demo", http_receiver.url)
    with pytest.raises(InvalidInput, match="already been added"):
        drains.add("demo", http_receiver.url)
    with pytest.raises(NotFound, match="Couldn't find that log drain"):
        drains.remove("demo", "syslog://127.0.0.1:1")
    assert [d["id"] for d in drains.list("demo")] == [drain["id"]]


@pytest.mark.parametrize("key", ["url", "token", "id"])
def test_a_drain_is_removed_by_url_token_or_id(store, drains, http_receiver, key: str):
    from urllib.parse import quote

    _app(store)
    drain = drains.add("demo", http_receiver.url)
    assert drains.info("demo", quote(drain[key], safe="")) == drain
    assert drains.remove("demo", quote(drain[key], safe="")) == drain
    assert drains.list("demo") == [] and drains.forwarders == {}


def test_the_drain_object_has_heroku_s_fields(store, drains, http_receiver):
    _app(store)
    drain = drains.add("demo", http_receiver.url)
    assert set(drain) == {"addon", "app", "created_at", "id", "token", "updated_at", "url"}
    assert drain["addon"] is None and drain["url"] == http_receiver.url
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", drain["created_at"])
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}", drain["id"])


def test_a_drain_stops_with_its_app(store, drains, tcp_receiver):
    _app(store)
    drains.add("demo", tcp_receiver.url)
    store.delete_app("demo")
    assert store.drains() == []
    wait_until(lambda: drains.forwarders == {}, 5, 0.05, "the forwarder gone")


def test_a_syslog_tls_drain_checks_the_receiver_against_the_lab_s_ca(store, tmp_path: Path):
    """``syslog+tls://logs.localhost``: TLS to 127.0.0.1, the certificate checked for the name as written, against
    the lab's CA (a receiver with a certificate from ``labctl certs`` is trusted; the lab's router certificate
    names ``*.localhost`` apps, here ``logs.localhost``)."""
    import ssl

    from labctl.engine import tls

    files = tls.ensure_ca(tmp_path / "ca", ["logs.localhost"])
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(files.router_cert), str(files.router_key))
    raw = TcpReceiver(tls=ctx)
    _app(store)
    trusting = DrainManager(store, LogSink(store), lambda s: s * 0.1, ca_file=files.ca_cert)  # time to shake hands
    trusting.start()
    try:
        drain = trusting.add("demo", f"syslog+tls://logs.localhost:{raw.sock.getsockname()[1]}")
        sent = _log(store, 10)
        wait_until(lambda: len(raw.lines()) >= 10, 10, 0.05, "10 lines over TLS")
        assert _msgs(raw.lines(), SYSLOG_LINE) == sent
        assert {SYSLOG_LINE.match(x).group(3) for x in raw.lines()} == {drain["token"]}  # type: ignore[union-attr]
    finally:
        trusting.stop()
    doubting = DrainManager(store, LogSink(store), lambda s: s * 0.1)  # without the lab's CA
    doubting.start()
    try:
        untrusted = doubting.add("demo", f"syslog+tls://logs.localhost:{raw.sock.getsockname()[1]}/")
        _log(store, 3, start=10)
        time.sleep(0.5)
        assert untrusted["token"] not in "".join(raw.lines())  # the certificate was refused: nothing sent
    finally:
        doubting.stop()
        raw.close()


def test_an_https_drain_with_basic_auth(store, tmp_path: Path):
    import base64
    import ssl

    from labctl.engine import tls

    files = tls.ensure_ca(tmp_path / "ca", ["drain.localhost"])
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(files.router_cert), str(files.router_key))
    receiver = HttpReceiver(tls=ctx)
    _app(store)
    m = DrainManager(store, LogSink(store), lambda s: s * 0.1, ca_file=files.ca_cert)
    m.start()
    try:
        port = receiver.server.server_address[1]
        m.add("demo", f"https://user:s%40cret@drain.localhost:{port}/in?x=1")
        sent = _log(store, 5)
        wait_until(lambda: len(receiver.lines()) >= 5, 10, 0.05, "5 lines over HTTPS")
        assert _msgs(receiver.lines(), HTTP_LINE) == sent
        headers = receiver.posts[0][0]
        assert headers["Authorization"] == "Basic " + base64.b64encode(b"user:s@cret").decode()
        assert headers["Host"] == f"drain.localhost:{port}"
    finally:
        m.stop()
        receiver.close()


def test_stop_does_not_wait_for_a_stalled_receiver(store, http_receiver):
    """At Heroku's real timings (a 5 s request timeout) a forwarder blocked on a receiver that does not answer
    still stops at once: `labctl down` is not held up by a drain."""
    _app(store)
    m = DrainManager(store, LogSink(store), lambda s: s)
    m.start()
    http_receiver.open.clear()
    m.add("demo", http_receiver.url)
    _log(store, 1)
    wait_until(lambda: http_receiver.arrived, 5, 0.05, "a POST waiting for its answer")
    began = time.monotonic()
    m.stop()
    assert time.monotonic() - began < 1.0
    assert not [t.name for t in threading.enumerate() if t.name.startswith("drain")]


def test_the_host_header_names_the_receiver_as_written():
    from labctl.controller.drain_senders import HttpSender

    def host(url: str) -> str:
        return HttpSender(logplex.parse_drain_url(url), "d.x", lambda s: s, None).headers(1)["Host"]

    assert host("http://[::1]:9000/in") == "[::1]:9000"
    assert host("https://logs.localhost/in") == "logs.localhost"
    assert host("http://127.0.0.1:8080/") == "127.0.0.1:8080"


def test_a_syslog_drain_keeps_counting_while_it_backs_off(store):
    """At Heroku's real timings a refused syslog drain waits 30 s before it connects again; meanwhile it keeps
    reading the app's log, so lines that overflow its buffer are counted (and said in the log) at once."""
    _app(store)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here now: connecting is refused
    m = DrainManager(store, LogSink(store), lambda s: s)
    m.start()
    try:
        m.add("demo", f"syslog://127.0.0.1:{port}")
        _log(store, 1)
        time.sleep(0.5)  # the first try is refused: the drain backs off for 30 s
        _log(store, 1100, start=1)
        wait_until(
            lambda: [r for r in store.logs("demo", limit=1500) if r["dyno"] == "logplex"], 3, 0.05, "an L10 line"
        )
    finally:
        m.stop()
