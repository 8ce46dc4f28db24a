"""How a log drain's frames reach its receiver: HTTP(S) POSTs or a syslog TCP (or TLS) stream.

Timings are Logplex's (``logplex_http_drain``, ``logplex_tcpsyslog_drain``, ``logplex.app.src``), scaled by the
lab's clock: HTTP connect 3 s, request 5 s, retry after 10 ms × a random slot of 2^1…2^10; syslog send 4 s,
reconnect after 30 s doubling to 300 s. An HTTP answer of 2xx delivers the frame; 4xx (not 429) drops it; anything
else, or no answer, is retried (a frame is sent three times at most).
"""

from __future__ import annotations

import base64
import http.client
import logging
import random
import socket
import ssl
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, Protocol
from urllib.parse import unquote

from labctl.domain import logplex

log = logging.getLogger("labctl.drains")
Result = Literal["ok", "temp", "perm"]
MIN_TIMEOUT = 0.05  # seconds: a scaled timeout never drops below this


class Sender(Protocol):
    target_bytes: int
    drops_after_tries: bool

    def send(self, rows: list[dict[str, Any]]) -> Result: ...

    def backoff(self, attempt: int, scale: Callable[[float], float]) -> float: ...

    def close(self) -> None: ...


def sender_for(
    target: logplex.DrainUrl, token: str, scale: Callable[[float], float], ca_file: Path | None = None
) -> Sender:
    if target.syslog:
        return SyslogSender(target, token, scale, ca_file)
    return HttpSender(target, token, scale, ca_file)


def _tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """The system's trust store plus the lab's own CA (a receiver with a certificate from ``labctl certs``)."""
    ctx = ssl.create_default_context()
    if ca_file and ca_file.exists():
        ctx.load_verify_locations(cafile=str(ca_file))
    return ctx


class HttpSender:
    """POSTs of ``application/logplex-1`` bodies over one kept-alive connection (``logplex_http_drain``)."""

    target_bytes = logplex.HTTP_TARGET_BYTES
    drops_after_tries = True

    def __init__(self, target: logplex.DrainUrl, token: str, scale: Callable[[float], float], ca: Path | None):
        self.target = target
        self.token = token
        self.scale = scale
        self.ca = ca
        self.conn: http.client.HTTPConnection | None = None

    def _connect(self) -> http.client.HTTPConnection:
        t = self.target
        timeout = max(MIN_TIMEOUT, self.scale(5.0))
        if t.tls:
            ctx = _tls_context(self.ca)
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                t.connect_host, t.port, timeout=timeout, context=ctx
            )
        else:
            conn = http.client.HTTPConnection(t.connect_host, t.port, timeout=timeout)
        conn.connect = _connect_as(conn, t.host, max(MIN_TIMEOUT, self.scale(3.0)), timeout)  # type: ignore[method-assign]
        return conn

    def headers(self, count: int) -> dict[str, str]:
        t = self.target
        default_port = logplex.SCHEMES[t.scheme]
        host = f"[{t.host}]" if ":" in t.host else t.host  # an IPv6 address is bracketed in a Host header
        headers = {
            "Host": host if t.port == default_port else f"{host}:{t.port}",
            "Content-Type": "application/logplex-1",
            "Logplex-Msg-Count": str(count),
            "Logplex-Frame-Id": uuid.uuid4().hex.upper(),
            "Logplex-Drain-Token": self.token,
            "User-Agent": "Logplex/labctl",
        }
        if t.userinfo:
            headers["Authorization"] = "Basic " + base64.b64encode(unquote(t.userinfo).encode()).decode()
        return headers

    def send(self, rows: list[dict[str, Any]]) -> Result:
        body = b"".join(logplex.frame(logplex.http_message(r)) for r in rows)
        try:
            conn = self.conn = self.conn or self._connect()
            conn.request("POST", self.target.path, body=body, headers=self.headers(len(rows)))
            resp = conn.getresponse()
            resp.read()
            status = resp.status
            if resp.will_close:
                self.close()
        except (OSError, http.client.HTTPException) as err:
            log.info("drain %s: %s", self.token, err)
            self.close()
            return "temp"
        if 200 <= status < 300:
            return "ok"
        if 400 <= status < 500 and status != 429:
            return "perm"
        self.close()
        return "temp"

    def backoff(self, attempt: int, scale: Callable[[float], float]) -> float:
        slot = (2 ** random.randint(1, min(10, attempt)) - 1) // 2
        return 0.01 * slot

    def close(self) -> None:
        """Close the connection; a send blocked on it (from the forwarder's thread) returns at once."""
        conn, self.conn = self.conn, None
        if conn is not None:
            _shut(conn.sock)
            conn.close()


def _connect_as(conn: http.client.HTTPConnection, server_name: str, connect_timeout: float, timeout: float):  # noqa: ANN202
    """``conn.connect`` that opens the socket with the connect timeout, then uses the request timeout; TLS is
    checked against the name as written (``logs.localhost``), not the loopback address dialled."""

    def connect() -> None:
        sock = socket.create_connection((conn.host, conn.port), connect_timeout)
        sock.settimeout(timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if isinstance(conn, http.client.HTTPSConnection):
            sock = conn._context.wrap_socket(sock, server_hostname=server_name)  # type: ignore[attr-defined]
        conn.sock = sock

    return connect


class SyslogSender:
    """RFC 5424 messages over one TCP (or TLS) stream, octet counted (RFC 6587; ``logplex_tcpsyslog_drain``)."""

    target_bytes = 4096  # tcp_drain_target_bytes
    drops_after_tries = False  # a syslog drain keeps its lines until they go (its buffer drops the oldest)

    def __init__(self, target: logplex.DrainUrl, token: str, scale: Callable[[float], float], ca: Path | None):
        self.target = target
        self.token = token
        self.scale = scale
        self.ca = ca
        self.sock: socket.socket | None = None

    def _connect(self) -> socket.socket:
        t = self.target
        sock = socket.create_connection((t.connect_host, t.port), max(MIN_TIMEOUT, self.scale(3.0)))
        sock.settimeout(max(MIN_TIMEOUT, self.scale(4.0)))
        if t.tls:
            sock = _tls_context(self.ca).wrap_socket(sock, server_hostname=t.host)
        return sock

    def send(self, rows: list[dict[str, Any]]) -> Result:
        data = b"".join(logplex.frame(logplex.syslog_message(r, self.token)) for r in rows)
        try:
            sock = self.sock = self.sock or self._connect()
            sock.sendall(data)
        except OSError as err:
            log.info("drain %s: %s", self.token, err)
            self.close()
            return "temp"
        return "ok"

    def backoff(self, attempt: int, scale: Callable[[float], float]) -> float:
        return scale(min(30.0 * 2 ** (attempt - 1), 300.0))

    def close(self) -> None:
        sock, self.sock = self.sock, None
        _shut(sock)
        if sock is not None:
            sock.close()


def _shut(sock: socket.socket | None) -> None:
    """Shut a socket down both ways: unlike close(), this wakes a thread blocked sending or reading on it."""
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
