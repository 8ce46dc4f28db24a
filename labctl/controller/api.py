"""The controller's HTTP API on 127.0.0.1, shaped like Heroku's Platform API (lab-spec §10).

Every request needs ``Authorization: Bearer <token>``; the token file is readable by its owner only.
Errors are JSON ``{"id": ..., "message": ...}`` with a 4xx/5xx status; no traceback leaves the process.
Long work (builds, attached one-offs) answers ``application/x-ndjson``: ``{"line": …}`` rows, then one
``{"result": …}`` or ``{"error": …}`` row.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from labctl.controller.manager import Manager
from labctl.errors import InvalidInput, LabError, NotFound
from labctl.records import DynoView, LabStatus

log = logging.getLogger("labctl.api")
Route = tuple[str, re.Pattern[str], Callable[..., Any]]
MAX_BODY = 1 << 20


class Api:
    """Maps (method, path) to manager calls."""

    def __init__(self, manager: Manager, status: Callable[[], LabStatus]):
        self.m = manager
        self.status = status
        self.routes: list[Route] = []
        r = self._route
        r("GET", "/lab", lambda q, b: self.status())
        r("PATCH", "/lab", self._patch_lab)
        r("GET", "/spaces", lambda q, b: self.m.store.spaces())
        r("POST", "/spaces", lambda q, b: self.m.create_space(_field(b, "name")))
        r("DELETE", "/spaces/(?P<space>[^/]+)", lambda q, b, space: self.m.destroy_space(space))
        r("GET", "/apps", lambda q, b: [self.m.app_view(a["name"]) for a in self.m.store.apps()])
        r("POST", "/apps", lambda q, b: self.m.create_app(_field(b, "name"), _opt_str(b, "space")))
        r("GET", "/apps/(?P<app>[^/]+)", lambda q, b, app: self.m.app_view(app))
        r("DELETE", "/apps/(?P<app>[^/]+)", lambda q, b, app: self.m.destroy_app(app))
        r("PATCH", "/apps/(?P<app>[^/]+)", self._patch_app)
        r("POST", "/apps/(?P<app>[^/]+)/builds", self._build)
        r("GET", "/apps/(?P<app>[^/]+)/releases", lambda q, b, app: self.m.releases(app))
        r("POST", "/apps/(?P<app>[^/]+)/releases", lambda q, b, app: self.m.rollback(app, _opt_int(b, "release")))
        r(
            "GET",
            "/apps/(?P<app>[^/]+)/releases/(?P<version>[^/]+)",
            lambda q, b, app, version: self.m.release(app, version),
        )
        r("GET", "/apps/(?P<app>[^/]+)/config-vars", lambda q, b, app: self.m.config(app))
        r("PATCH", "/apps/(?P<app>[^/]+)/config-vars", self._config)
        r("GET", "/apps/(?P<app>[^/]+)/formation", lambda q, b, app: self.m.formation(app))
        r("PATCH", "/apps/(?P<app>[^/]+)/formation", self._formation)
        r("GET", "/apps/(?P<app>[^/]+)/dynos", self._dynos)
        r("GET", "/apps/(?P<app>[^/]+)/features", lambda q, b, app: self.m.features(app))
        r(
            "GET",
            "/apps/(?P<app>[^/]+)/features/(?P<feature>[^/]+)",
            lambda q, b, app, feature: self._feature(app, feature),
        )
        r("PATCH", "/apps/(?P<app>[^/]+)/features/(?P<feature>[^/]+)", self._patch_feature)
        r("POST", "/apps/(?P<app>[^/]+)/dynos", self._run)
        r("DELETE", "/apps/(?P<app>[^/]+)/dynos", lambda q, b, app: self.m.restart(app))
        r(
            "DELETE",
            "/apps/(?P<app>[^/]+)/dynos/(?P<dyno>[^/]+)",
            lambda q, b, app, dyno: self.m.restart(app, dyno=dyno),
        )
        r(
            "DELETE",
            "/apps/(?P<app>[^/]+)/formations/(?P<ptype>[^/]+)",
            lambda q, b, app, ptype: self.m.restart(app, ptype=ptype),
        )
        r(
            "POST",
            "/apps/(?P<app>[^/]+)/dynos/(?P<dyno>[^/]+)/actions/stop",
            lambda q, b, app, dyno: self.m.stop(app, dyno=dyno),
        )
        r(
            "POST",
            "/apps/(?P<app>[^/]+)/formations/(?P<ptype>[^/]+)/actions/stop",
            lambda q, b, app, ptype: self.m.stop(app, ptype=ptype),
        )
        r("GET", "/apps/(?P<app>[^/]+)/log-lines", self._logs)
        r("GET", "/instances", lambda q, b: self.m.instances())

    def add_route(self, method: str, pattern: str, fn: Callable[..., Any]) -> None:
        """Extension point: ``fn(query, body, **groups)``; its return value is the JSON answer."""
        self._route(method, pattern, fn)

    def _route(self, method: str, pattern: str, fn: Callable[..., Any]) -> None:
        self.routes.append((method, re.compile(f"^{pattern}$"), fn))

    def dispatch(self, method: str, path: str, query: dict[str, str], body: dict[str, Any]) -> Any:
        allowed = False
        for m, rx, fn in self.routes:
            match = rx.match(path)
            if match:
                allowed = True
                if m == method:
                    return fn(query, body, **match.groupdict())
        if allowed:
            raise InvalidInput(f"Method {method} not allowed on {path}")
        raise NotFound(f"No such endpoint: {method} {path}")

    def _dynos(self, q: dict[str, str], b: dict[str, Any], app: str) -> Any:
        return self.m.dynos(app, q.get("all") == "1", q.get("extended") == "true")

    def _feature(self, app: str, feature: str) -> Any:
        for f in self.m.features(app):
            if f["name"] == feature:
                return f
        raise NotFound("Couldn't find that feature.")

    def _patch_feature(self, q: dict[str, str], b: dict[str, Any], app: str, feature: str) -> Any:
        if not isinstance(b.get("enabled"), bool):
            raise InvalidInput("body must have a boolean 'enabled'")
        return self.m.set_feature(app, feature, b["enabled"])

    def _formation(self, q: dict[str, str], b: dict[str, Any], app: str) -> Any:
        if "sizes" in b:
            sizes = b["sizes"]
            if not isinstance(sizes, dict) or not sizes or not all(isinstance(v, str) for v in sizes.values()):
                raise InvalidInput("'sizes' must map process types to size names")
            return self.m.resize(app, sizes)
        return self.m.scale(app, _str_list(b, "args"))

    def _patch_lab(self, q: dict[str, str], b: dict[str, Any]) -> Any:
        value = b.get("timescale")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.000001 <= value <= 100:
            raise InvalidInput("timescale must be a number between 0.000001 and 100")
        self.m.set_timescale(float(value))
        return self.status()

    def _patch_app(self, q: dict[str, str], b: dict[str, Any], app: str) -> Any:
        if "maintenance" not in b or not isinstance(b["maintenance"], bool):
            raise InvalidInput("body must have a boolean 'maintenance'")
        return self.m.set_maintenance(app, b["maintenance"])

    def _config(self, q: dict[str, str], b: dict[str, Any], app: str) -> Any:
        if not b or not all(isinstance(v, (str, type(None))) for v in b.values()):
            raise InvalidInput("body must map config var names to strings (or null to unset)")
        return self.m.update_config(app, b)

    def _logs(self, q: dict[str, str], b: dict[str, Any], app: str) -> Any:
        try:
            return self.m.logs(
                app,
                int(q.get("after", 0)),
                int(q.get("n", 100)),
                dyno=q.get("dyno"),
                ptype=q.get("ptype"),
                source=q.get("source"),
            )
        except ValueError:
            raise InvalidInput("after and n must be integers") from None

    def _build(self, q: dict[str, str], b: dict[str, Any], app: str) -> Iterator[dict[str, Any]]:
        src = _field(b, "source_dir")
        self.m.app_row(app)
        return _stream(lambda progress: self.m.deploy(app, src, progress))

    def _run(self, q: dict[str, str], b: dict[str, Any], app: str) -> Any:
        command = _field(b, "command")
        attach = bool(b.get("attach", False))
        size = _opt_str(b, "size")
        view = self.m.run(app, command, attach, size)
        if not attach:
            return view
        return self._attached(app, view)

    def _attached(self, app: str, view: DynoView) -> Iterator[dict[str, Any]]:
        """Stream an attached one-off's output; a heartbeat each second notices a client that went away.

        A vanished client gets Heroku's treatment (heroku-reference §1.6): SIGHUP to the dyno's processes,
        and R16 then a stop if it keeps running.
        """
        import queue
        import threading

        cid = view["container"]
        yield {"dyno": view}
        if not cid:
            yield {"result": {"status": None, "dyno": view["name"]}}
            return
        chunks: queue.Queue[str | None] = queue.Queue()

        def pump() -> None:
            for chunk in self.m.rt.engine.output(cid):
                chunks.put(chunk)
            chunks.put(None)

        threading.Thread(target=pump, daemon=True).start()
        finished = False
        try:
            while True:
                try:
                    chunk = chunks.get(timeout=1.0)
                except queue.Empty:
                    yield {"heartbeat": True}
                    continue
                if chunk is None:
                    break
                yield {"output": chunk}
            status = self.m.rt.engine.wait(cid)
            finished = True
        finally:
            if not finished:
                self.m.hang_up(app, view["name"], cid)
            self.m.finish_attached(app, view["name"], cid)
        yield {"result": {"status": status, "dyno": view["name"]}}


def _stream(work: Callable[[Callable[[str], None]], Any]) -> Iterator[dict[str, Any]]:
    """Run ``work`` in a thread and yield its progress lines, then its result or error."""
    import queue
    import threading

    q: queue.Queue[dict[str, Any] | None] = queue.Queue()

    def run() -> None:
        try:
            q.put({"result": work(lambda line: q.put({"line": line}))})
        except LabError as err:
            q.put({"error": {"id": err.id, "message": str(err)}})
        except Exception as err:  # noqa: BLE001 - reported to the client as one line, logged in full
            log.exception("streamed work failed")
            q.put({"error": {"id": "internal", "message": f"internal error: {err}"}})
        q.put(None)

    threading.Thread(target=run, daemon=True).start()
    while (item := q.get()) is not None:
        yield item


def _field(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"body must have a non-empty string {key!r}")
    return value


def _opt_str(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and (not isinstance(value, str) or not value):
        raise InvalidInput(f"{key!r} must be a non-empty string")
    return value


def _opt_int(body: dict[str, Any], key: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{key!r} must be an integer")
    return value


def _str_list(body: dict[str, Any], key: str) -> list[str]:
    value = body.get(key)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise InvalidInput(f"body must have a non-empty list of strings {key!r}")
    return value


def make_server(api: Api, token: str, port: int = 0) -> ThreadingHTTPServer:
    """A threading HTTP server on 127.0.0.1 that checks the token on every request."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt: str, *args: Any) -> None:
            log.debug("api: " + fmt, *args)

        def _handle(self, method: str) -> None:
            url = urlparse(self.path)
            if method == "GET" and url.path == "/health":
                return self._send(200, {"ok": True})
            supplied = self.headers.get("Authorization", "")
            if not hmac.compare_digest(supplied.encode(), f"Bearer {token}".encode()):
                return self._send(401, {"id": "unauthorized", "message": "Invalid credentials provided."})
            try:
                body = self._body()
                query = {k: v[-1] for k, v in parse_qs(url.query).items()}
                result = api.dispatch(method, url.path.rstrip("/") or "/", query, body)
            except LabError as err:
                return self._send(err.http_status, {"id": err.id, "message": str(err)})
            except Exception as err:  # noqa: BLE001 - the boundary: log it, answer one line
                log.exception("API %s %s failed", method, self.path)
                return self._send(500, {"id": "internal", "message": f"internal error: {err}"})
            if isinstance(result, Iterator):
                return self._stream(result)
            return self._send(200, result)

        def _body(self) -> dict[str, Any]:
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                raise InvalidInput("Content-Length must be a whole number") from None
            if length < 0 or length > MAX_BODY:
                raise InvalidInput("request body too large")
            if not length:
                return {}
            try:
                body = json.loads(self.rfile.read(length))
            except (ValueError, UnicodeDecodeError):
                raise InvalidInput("request body is not valid JSON") from None
            if not isinstance(body, dict):
                raise InvalidInput("request body must be a JSON object")
            return body

        def _send(self, status: int, payload: Any) -> None:
            data = json.dumps(payload, default=str).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _stream(self, rows: Iterator[dict[str, Any]]) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/x-ndjson")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            try:
                for row in rows:
                    self.wfile.write(json.dumps(row, default=str).encode() + b"\n")
                    self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                return
            except LabError as err:
                self.wfile.write(json.dumps({"error": {"id": err.id, "message": str(err)}}).encode())
            finally:
                close = getattr(rows, "close", None)
                if close:
                    close()  # a generator's cleanup (e.g. hanging up an attached one-off) runs now

        def do_GET(self) -> None:  # noqa: N802
            self._handle("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._handle("POST")

        def do_PATCH(self) -> None:  # noqa: N802
            self._handle("PATCH")

        def do_DELETE(self) -> None:  # noqa: N802
            self._handle("DELETE")

    server = _Server(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    return server


class _Server(ThreadingHTTPServer):
    # socketserver's default listen backlog is 5: a burst of 50 concurrent CLI/API calls overflowed it and a
    # client could be left without an answer. Each accepted call gets a thread of its own.
    request_queue_size = 128
