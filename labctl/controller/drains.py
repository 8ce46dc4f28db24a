"""Log drains (heroku-reference §11 "Log drains"): the ``log-drains`` routes and one forwarder thread per drain.

A forwarder reads the app's log lines from the store (the lines ``labctl logs`` shows), keeps up to 1024 of them
in a buffer as Logplex does (the oldest are dropped when it is full: Error L10), and delivers them in order:
HTTP(S) drains as ``application/logplex-1`` POSTs, syslog drains as RFC 5424 over TCP (TLS for ``syslog+tls``)
with octet counting. The wire forms are in ``labctl/domain/logplex.py``. Drains are stored, with the id of the
last line given to each, so a restarted controller carries on where it left off.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from labctl.controller.drain_senders import Sender, sender_for
from labctl.controller.logsink import LogSink
from labctl.domain import logplex
from labctl.errors import InvalidInput, NotFound
from labctl.records import DrainRow
from labctl.store import Store

log = logging.getLogger("labctl.drains")
POLL = 0.2  # seconds between looks at the store when a drain has nothing to send
READ_CHUNK = 2000
SYNC_EVERY = 1.0  # seconds: a drain removed with its app stops within this
REPORT_EVERY = 60.0  # platform seconds between two L10 lines of one drain in the app's log (lab choice)


def iso(ts: float) -> str:
    """The Platform API's time form: ``2026-12-07T10:00:00Z``."""
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Forwarder:
    """One drain's delivery loop: store → buffer (1024, oldest dropped) → receiver, in order, with retries."""

    def __init__(
        self,
        drain: DrainRow,
        store: Store,
        sink: LogSink,
        scale: Callable[[float], float],
        sender: Sender,
    ):
        self.drain = drain
        self.store = store
        self.sink = sink
        self.scale = scale
        self.sender = sender
        self.buffer: list[dict[str, Any]] = []
        self.read_cursor = drain["cursor"]
        self.lost = 0  # dropped since the last notice delivered to the drain
        self.lost_since: float | None = None
        self.unreported = 0  # dropped since the last L10 line in the app's log
        self.unreported_since: float | None = None
        self.reported_at = 0.0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True, name=f"drain-{drain['token'][:10]}")

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.sender.close()

    def join(self, timeout: float) -> None:
        self.thread.join(timeout)

    # -- the loop ------------------------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._loop()
        except Exception:  # noqa: BLE001 - a forwarder must not take the controller down; say why
            log.exception("drain %s stopped", self.drain["id"])
        finally:
            self.sender.close()

    def _loop(self) -> None:
        batch: list[dict[str, Any]] = []
        tries = 0
        attempt = 0
        while not self.stopping.is_set():
            self._read()
            self._report_losses()
            if not batch:
                batch = self._take()
                tries = logplex.HTTP_TRIES
                if not batch:
                    self.stopping.wait(POLL)
                    continue
            result = self.sender.send(self._with_notice(batch))
            if result == "ok":
                self._delivered(batch)
                batch, attempt = [], 0
                continue
            tries -= 1
            if result == "perm" or (self.sender.drops_after_tries and tries <= 0):
                self._handed_off(batch)
                self._lose(len(batch))
                batch = []
            attempt += 1
            self._wait(self.sender.backoff(attempt, self.scale))

    def _wait(self, seconds: float) -> None:
        """Back off before a retry, still reading the store meanwhile: a long syslog backoff (30 s to 5 min)
        must not let the store's 1500-line history roll past lines the drain has not counted."""
        deadline = time.monotonic() + seconds
        while not self.stopping.is_set() and (left := deadline - time.monotonic()) > 0:
            self.stopping.wait(min(POLL, left))
            self._read()
            self._report_losses()

    def _read(self) -> None:
        """Everything new in the store into the buffer; past 1024 the oldest line goes (Logplex's displace)."""
        while True:
            rows = self.store.logs_after(self.drain["app"], self.read_cursor, READ_CHUNK)
            for row in rows:
                self.buffer.append(dict(row))
            if rows:
                self.read_cursor = rows[-1]["id"]
            excess = len(self.buffer) - logplex.BUFFER_SIZE
            if excess > 0:
                del self.buffer[:excess]
                self._lose(excess)
            if len(rows) < READ_CHUNK:
                return

    def _take(self) -> list[dict[str, Any]]:
        """The next frame's lines: as many as fit in the target size (one line at least)."""
        size, n = 0, 0
        for row in self.buffer:
            size += len(row["msg"]) + 80
            if n and size > self.sender.target_bytes:
                break
            n += 1
        batch, self.buffer = self.buffer[:n], self.buffer[n:]
        return batch

    def _with_notice(self, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if not self.lost or self.lost_since is None:
            return batch
        return [logplex.overflow_row(self.lost, self.lost_since, time.time()), *batch]

    def _delivered(self, batch: list[dict[str, Any]]) -> None:
        self._handed_off(batch)
        self.lost, self.lost_since = 0, None

    def _handed_off(self, batch: list[dict[str, Any]]) -> None:
        self.store.set_drain_cursor(self.drain["id"], batch[-1]["id"])

    def _lose(self, n: int) -> None:
        now = time.time()
        self.lost += n
        self.unreported += n
        self.lost_since = self.lost_since or now
        self.unreported_since = self.unreported_since or now

    def _report_losses(self) -> None:
        """``heroku[logplex]: Error L10 …`` in the app's log, at most once a (scaled) minute per drain."""
        now = time.time()
        if not self.unreported or self.unreported_since is None:
            return
        if self.reported_at and now - self.reported_at < self.scale(REPORT_EVERY):
            return
        line = logplex.overflow_log_line(self.drain["token"], self.unreported, self.unreported_since)
        self.sink.heroku(self.drain["app"], "logplex", line)
        self.unreported, self.unreported_since, self.reported_at = 0, None, now


class DrainManager:
    """Owns the ``drains`` table and one running forwarder per stored drain."""

    def __init__(self, store: Store, sink: LogSink, scale: Callable[[float], float], ca_file: Path | None = None):
        self.store = store
        self.sink = sink
        self.scale = scale
        self.ca_file = ca_file
        self.forwarders: dict[str, Forwarder] = {}
        self.lock = threading.RLock()
        self.stopping = threading.Event()
        self.syncer: threading.Thread | None = None

    def register(self, api: Any) -> None:
        r = api.add_route
        d = {"resource": "log-drain"}
        r("GET", "/apps/(?P<app>[^/]+)/log-drains", lambda q, b, app: self.list(app), title="List", **d)
        r(
            "POST",
            "/apps/(?P<app>[^/]+)/log-drains",
            lambda q, b, app: self.add(app, b.get("url")),
            status=201,  # Platform API: Log Drain Create answers 201 Created
            title="Create",
            **d,
        )
        r(
            "GET",
            "/apps/(?P<app>[^/]+)/log-drains/(?P<ident>[^/]+)",
            lambda q, b, app, ident: self.info(app, ident),
            title="Info",
            **d,
        )
        r(
            "DELETE",
            "/apps/(?P<app>[^/]+)/log-drains/(?P<ident>[^/]+)",
            lambda q, b, app, ident: self.remove(app, ident),
            title="Delete",
            **d,
        )

    # -- lifecycle ---------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start a forwarder for every stored drain, then keep them equal to the table (an app's removal)."""
        self.sync()
        self.syncer = threading.Thread(target=self._sync_loop, daemon=True, name="drain-sync")
        self.syncer.start()

    def stop(self, timeout: float = 3.0) -> None:
        """Stop every forwarder and wait for its thread (bounded): nothing keeps running after ``down``."""
        self.stopping.set()
        with self.lock:
            forwarders, self.forwarders = list(self.forwarders.values()), {}
        for f in forwarders:
            f.stop()
        deadline = time.time() + timeout
        for f in forwarders:
            f.join(max(0.0, deadline - time.time()))
        if self.syncer:
            self.syncer.join(max(0.0, deadline - time.time()))

    def _sync_loop(self) -> None:
        while not self.stopping.wait(SYNC_EVERY):
            try:
                self.sync()
            except Exception:  # noqa: BLE001 - keep syncing; the next round may succeed
                log.exception("drain sync failed")

    def sync(self) -> None:
        with self.lock:
            if self.stopping.is_set():
                return
            stored = {d["id"]: d for d in self.store.drains()}
            for drain_id in set(self.forwarders) - set(stored):
                self.forwarders.pop(drain_id).stop()
            for drain_id, row in stored.items():
                if drain_id not in self.forwarders:
                    self._start_forwarder(row)

    def _start_forwarder(self, row: DrainRow) -> None:
        sender = sender_for(logplex.parse_drain_url(row["url"]), row["token"], self.scale, self.ca_file)
        forwarder = Forwarder(row, self.store, self.sink, self.scale, sender)
        self.forwarders[row["id"]] = forwarder
        forwarder.start()

    # -- the API -----------------------------------------------------------------------------------------------
    def _app(self, app: str) -> str:
        if self.store.app(app) is None:
            raise NotFound(f"Couldn't find that app: {app}")
        return app

    def view(self, row: DrainRow) -> dict[str, Any]:
        app_row: dict[str, Any] = dict(self.store.app(row["app"]) or {})
        return view(row, app_row.get("id"))

    def list(self, app: str) -> list[dict[str, Any]]:
        return [self.view(d) for d in self.store.drains(self._app(app))]

    def add(self, app: str, url: Any) -> dict[str, Any]:
        """A new drain; it gets the lines logged from now on (as a Heroku drain does)."""
        self._app(app)
        target = logplex.parse_drain_url(url)
        with self.lock:
            if any(d["url"] == target.url for d in self.store.drains(app)):
                raise InvalidInput(f"Url {target.url} has already been added to {app}")
            now = time.time()
            row: DrainRow = {
                "id": str(uuid.uuid4()),
                "app": app,
                "url": target.url,
                "token": f"d.{uuid.uuid4()}",
                "created_at": now,
                "updated_at": now,
                "cursor": self.store.last_log_id(),
            }
            self.store.add_drain(row)
            self._start_forwarder(row)
        return self.view(row)

    def find(self, app: str, ident: str) -> DrainRow:
        """A drain by its id, its token or its URL (``drains:remove URL|TOKEN``)."""
        ident = unquote(ident)
        for d in self.store.drains(self._app(app)):
            if ident in (d["id"], d["token"], d["url"]):
                return d
        raise NotFound(f"Couldn't find that log drain on {app}: {ident}")

    def info(self, app: str, ident: str) -> dict[str, Any]:
        return self.view(self.find(app, ident))

    def remove(self, app: str, ident: str) -> dict[str, Any]:
        with self.lock:
            row = self.find(app, ident)
            self.store.delete_drain(row["id"])
            forwarder = self.forwarders.pop(row["id"], None)
        if forwarder:
            forwarder.stop()
        return self.view(row)


def view(row: DrainRow, app_id: str | None = None) -> dict[str, Any]:
    """Heroku's log-drain object (Platform API reference "Log Drain"); ``app_id``: the app's UUID where the
    store has one."""
    return {
        "addon": None,
        "app": {"id": app_id, "name": row["app"]},
        "created_at": iso(row["created_at"]),
        "id": row["id"],
        "token": row["token"],
        "updated_at": iso(row["updated_at"]),
        "url": row["url"],
    }
