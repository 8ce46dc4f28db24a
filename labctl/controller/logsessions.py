"""Log sessions (Platform API "Log Session"): ``POST /apps/{app}/log-sessions`` answers a ``logplex_url``; a GET
on it streams the app's log lines as ``heroku logs`` reads them (heroku-reference §8).

The URL points at a small server of its own on 127.0.0.1 (Heroku's is another host, logplex.heroku.com); the
session's random id in the URL is its credential, as in Heroku's. A session can be opened for 5 minutes after it
is made and a tail lasts an hour at most ("Sessions remain available for about 5 minutes after creation or about
one hour after connecting"). What the stream carries follows the ``Accept`` header: ``text/event-stream`` (the
current Heroku CLI reads logs through EventSource) sends each line as an event; ``application/x-ndjson`` (labctl's
own client) sends the log rows as JSON; anything else gets plain lines, as Logplex's chunked answer.
"""

from __future__ import annotations

import json
import logging
import re
import select
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlparse

from labctl.domain import logplex
from labctl.errors import InvalidInput, NotFound
from labctl.store import Store

log = logging.getLogger("labctl.logsessions")
SESSION_TTL = 300.0  # seconds a session can be opened after it is made
TAIL_LIMIT = 3600.0  # seconds a tail streams at most
POLL = 0.2  # seconds between two looks at the store while tailing
MAX_LINES = 1500  # Logplex keeps the last 1500 lines (heroku-reference §8)
SESSION_PATH = re.compile(r"^/sessions/([0-9a-f-]{36})$")


@dataclass(frozen=True)
class Session:
    id: str
    app: str
    lines: int
    dyno: str | None
    ptype: str | None
    source: str | None
    tail: bool
    created_at: float


class LogSessions:
    """The sessions made through the API, and the server their ``logplex_url`` points at."""

    def __init__(self, store: Store):
        self.store = store
        self.sessions: dict[str, Session] = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.server: ThreadingHTTPServer | None = None

    def register(self, api: Any) -> None:
        api.add_route(
            "POST",
            "/apps/(?P<app>[^/]+)/log-sessions",
            lambda q, b, app: self.create(app, b),
            status=201,  # Platform API: Log Session Create answers 201 Created
            resource="log-session",
            title="Create",
        )

    def start(self) -> None:
        self.server = _Server(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True).start()

    def stop(self) -> None:
        self.stopping.set()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    # -- the API -------------------------------------------------------------------------------------------
    def create(self, app: str, body: dict[str, Any]) -> dict[str, Any]:
        if self.store.app(app) is None:
            raise NotFound(f"Couldn't find that app: {app}")
        session = Session(
            id=str(uuid.uuid4()),
            app=app,
            lines=_lines(body.get("lines")),
            dyno=_opt_str(body, "dyno"),
            ptype=_opt_str(body, "type"),
            source=_opt_str(body, "source"),
            tail=_opt_bool(body, "tail"),
            created_at=time.time(),
        )
        now = session.created_at
        with self.lock:
            self.sessions = {k: s for k, s in self.sessions.items() if now - s.created_at < SESSION_TTL}
            self.sessions[session.id] = session
        assert self.server is not None, "log sessions are served once started"
        port = self.server.server_address[1]
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
        return {
            "created_at": stamp,
            "id": session.id,
            "logplex_url": f"http://127.0.0.1:{port}/sessions/{session.id}?srv={int(now)}",
            "updated_at": stamp,
        }

    def session(self, session_id: str) -> Session | None:
        with self.lock:
            s = self.sessions.get(session_id)
        if s is None or time.time() - s.created_at >= SESSION_TTL or self.store.app(s.app) is None:
            return None
        return s

    # -- the stream ------------------------------------------------------------------------------------------
    def rows(self, s: Session, gone: Any) -> Iterator[dict[str, Any]]:
        """The last ``lines`` matching lines, then (``tail``) each new one until the client goes."""
        cursor = self.store.last_log_id()
        history = self.store.logs(s.app, 0, s.lines, dyno=s.dyno, ptype=s.ptype, source=s.source) if s.lines else []
        yield from (dict(r) for r in history)
        if not s.tail:
            return
        cursor = max([cursor, *(r["id"] for r in history)])
        until = time.time() + TAIL_LIMIT
        while not self.stopping.is_set() and time.time() < until and not gone():
            rows = self.store.logs(s.app, cursor, MAX_LINES, dyno=s.dyno, ptype=s.ptype, source=s.source)
            for r in rows:
                cursor = r["id"]
                yield dict(r)
            if not rows:
                self.stopping.wait(POLL)


def _lines(value: Any) -> int:
    if value is None:
        return 100
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_LINES:
        raise InvalidInput(f"'lines' must be a whole number from 0 to {MAX_LINES}")
    return value


def _opt_str(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise InvalidInput(f"{key!r} must be a string")
    return value or None


def _opt_bool(body: dict[str, Any], key: str) -> bool:
    value = body.get(key, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise InvalidInput(f"{key!r} must be true or false")
    return value


def _formats(accept: str) -> tuple[str, Any]:
    """The content type of the answer and how one row is written in it."""
    if "text/event-stream" in accept:
        return "text/event-stream", lambda r: f"data: {logplex.session_line(r)}\n\n".encode()
    if "application/x-ndjson" in accept:
        return "application/x-ndjson", lambda r: json.dumps(r).encode() + b"\n"
    return "text/plain; charset=utf-8", lambda r: (logplex.session_line(r) + "\n").encode()


def _handler(sessions: LogSessions) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt: str, *args: Any) -> None:
            log.debug("logplex: " + fmt, *args)

        def do_GET(self) -> None:  # noqa: N802
            match = SESSION_PATH.match(urlparse(self.path).path)
            s = sessions.session(match.group(1)) if match else None
            if s is None:
                return self._plain(404, "Not found\n")
            ctype, write = _formats(self.headers.get("Accept", ""))
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            try:
                for row in sessions.rows(s, self._gone):
                    self.wfile.write(write(row))
                    self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                return

        def _gone(self) -> bool:
            """The client hung up (a tail that nobody reads any more ends)."""
            try:
                readable, _, _ = select.select([self.connection], [], [], 0)
                return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
            except OSError:
                return True

        def _plain(self, status: int, text: str) -> None:
            data = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


class _Server(ThreadingHTTPServer):
    request_queue_size = 64
