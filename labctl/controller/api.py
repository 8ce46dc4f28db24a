"""The controller's HTTP API on 127.0.0.1: Heroku's Platform API v3 for what the lab has (lab-spec §10, issue 19).

The conventions, for every route (the lab's own resources too: ``/lab``, ``/instances``, ``/faults``):
- auth: ``Authorization: Bearer <token>``, or HTTP Basic with the token as the password; else 401 ``unauthorized``
  (the token file is readable by its owner only);
- ``Accept: application/vnd.heroku+json; version=3`` (no Accept, or plain JSON, is served as version 3; another
  version is refused);
- every answer carries ``Request-Id`` and ``RateLimit-Remaining``; errors are ``{"id": ..., "message": ...}``;
- creates answer 201, restarts and stops 202 ``{}``; a body over ``MAX_BODY`` answers 413;
- lists declared with range fields are paged by ``Range``/``Next-Range`` (206 when cut; docs/api.md).
``GET /schema`` describes every route (``controller/schema.py``). Long work streams as Heroku's does: a build's
output through its ``output_stream_url`` (``controller/builds.py``), an attached one-off through its rendezvous
``attach_url`` (``controller/rendezvous.py``). A handler may still answer an iterator of rows, sent as
``application/x-ndjson``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

from labctl.controller import schema
from labctl.controller.builds import Builds
from labctl.controller.manager import Manager
from labctl.controller.rendezvous import Rendezvous
from labctl.controller.schema import Route, TextStream
from labctl.errors import InvalidInput, LabError, MethodNotAllowed, NotFound, TooLarge
from labctl.records import LabStatus

log = logging.getLogger("labctl.api")
MAX_BODY = 1 << 20
MEDIA_TYPE = "application/vnd.heroku+json"
RATE_LIMIT = 4500  # Heroku's per-account budget of calls an hour (heroku-reference §11)
DEFAULT_MAX, MAX_MAX = 200, 1000  # a Range's default and largest ``max`` (Platform API "Ranges")
APP = "/apps/(?P<app>[^/]+)"


class Api:
    """Maps (method, path) to manager calls."""

    def __init__(self, manager: Manager, status: Callable[[], LabStatus]):
        self.m = manager
        self.status = status
        self.routes: list[Route] = []
        self.rate = _Bucket(RATE_LIMIT)
        r = self._route
        # -- the Platform API's resources ---------------------------------------------------------------
        r("GET", "/schema", lambda q, b: schema.document(self.routes), resource="schema", title="Info")
        r("GET", "/account", lambda q, b: self.m.account(), resource="account", title="Info")
        r(
            "GET",
            "/account/rate-limits",
            lambda q, b: {"remaining": self.rate.remaining()},
            resource="rate-limit",
            title="Info",
        )
        r("GET", "/spaces", lambda q, b: self.m.spaces(), resource="space", title="List", ranges=("name", "id"))
        r(
            "POST",
            "/spaces",
            lambda q, b: self.m.create_space(_field(b, "name")),
            status=201,
            resource="space",
            title="Create",
        )
        r("GET", "/spaces/(?P<space>[^/]+)", lambda q, b, space: self.m.space(space), resource="space", title="Info")
        r(
            "DELETE",
            "/spaces/(?P<space>[^/]+)",
            lambda q, b, space: self.m.destroy_space(space),
            resource="space",
            title="Delete",
        )
        r("GET", "/apps", lambda q, b: self.m.apps(), resource="app", title="List", ranges=("name", "id"))
        r("POST", "/apps", self._create_app, status=201, resource="app", title="Create")
        r("GET", APP, lambda q, b, app: self.m.app_view(app), resource="app", title="Info")
        r("DELETE", APP, lambda q, b, app: self.m.destroy_app(app), resource="app", title="Delete")
        r("PATCH", APP, self._patch_app, resource="app", title="Update")
        r(
            "GET",
            APP + "/releases",
            lambda q, b, app: self.m.releases(app),
            resource="release",
            title="List",
            ranges=("version", "id"),
        )
        r("POST", APP + "/releases", self._rollback, status=201, resource="release", title="Rollback")
        r(
            "GET",
            APP + "/releases/(?P<release>[^/]+)",
            lambda q, b, app, release: self.m.release(app, release),
            resource="release",
            title="Info",
        )
        r(
            "GET",
            APP + "/releases/(?P<release>[^/]+)/config-vars",
            lambda q, b, app, release: self.m.release_config(app, release),
            resource="config-var",
            title="Info for App Release",
        )
        r(
            "GET",
            APP + "/config-vars",
            lambda q, b, app: self.m.config(app),
            resource="config-var",
            title="Info for App",
        )
        r("PATCH", APP + "/config-vars", self._config, resource="config-var", title="Update")
        r(
            "GET",
            APP + "/formation",
            lambda q, b, app: self.m.formation(app),
            resource="formation",
            title="List",
            ranges=("type", "id"),
        )
        r("PATCH", APP + "/formation", self._formation, resource="formation", title="Batch Update")
        r(
            "GET",
            APP + "/formation/(?P<ptype>[^/]+)",
            lambda q, b, app, ptype: self.m.formation_type(app, ptype),
            resource="formation",
            title="Info",
        )
        r("PATCH", APP + "/formation/(?P<ptype>[^/]+)", self._formation_type, resource="formation", title="Update")
        r(
            "GET",
            APP + "/features",
            lambda q, b, app: self.m.features(app),
            resource="app-feature",
            title="List",
            ranges=("name", "id"),
        )
        r(
            "GET",
            APP + "/features/(?P<feature>[^/]+)",
            lambda q, b, app, feature: self._feature(app, feature),
            resource="app-feature",
            title="Info",
        )
        r("PATCH", APP + "/features/(?P<feature>[^/]+)", self._patch_feature, resource="app-feature", title="Update")
        r("GET", APP + "/dynos", self._dynos, resource="dyno", title="List", ranges=("name", "id"))
        r("POST", APP + "/dynos", self._run, status=201, resource="dyno", title="Create")
        r(
            "DELETE",
            APP + "/dynos",
            lambda q, b, app: _empty(self.m.restart(app)),
            status=202,
            resource="dyno",
            title="Restart all",
        )
        r(
            "GET",
            APP + "/dynos/(?P<dyno>[^/]+)",
            lambda q, b, app, dyno: self.m.dyno(app, dyno),
            resource="dyno",
            title="Info",
        )
        r(
            "DELETE",
            APP + "/dynos/(?P<dyno>[^/]+)",
            lambda q, b, app, dyno: _empty(self.m.restart(app, dyno=dyno)),
            status=202,
            resource="dyno",
            title="Restart",
        )
        r(
            "DELETE",
            APP + "/formations/(?P<ptype>[^/]+)",
            lambda q, b, app, ptype: _empty(self.m.restart(app, ptype=ptype)),
            status=202,
            resource="dyno",
            title="Restart formation",
        )
        r(
            "POST",
            APP + "/dynos/(?P<dyno>[^/]+)/actions/stop",
            lambda q, b, app, dyno: _empty(self.m.stop(app, dyno=dyno)),
            status=202,
            resource="dyno",
            title="Stop",
        )
        r(
            "POST",
            APP + "/formations/(?P<ptype>[^/]+)/actions/stop",
            lambda q, b, app, ptype: _empty(self.m.stop(app, ptype=ptype)),
            status=202,
            resource="dyno",
            title="Stop formation",
        )
        # -- the lab's own resources (same conventions) -------------------------------------------------
        r("GET", "/lab", lambda q, b: self.status(), resource="lab", title="Info")
        r("PATCH", "/lab", self._patch_lab, resource="lab", title="Update")
        r("GET", APP + "/log-lines", self._logs, resource="log-line", title="List")
        r("GET", "/instances", lambda q, b: self.m.instances(), resource="instance", title="List", ranges=("id",))
        # pages served beside the API (the dashboard): ``fn(handler, method, path, query)`` answers and says True
        self.web_handlers: list[Callable[[BaseHTTPRequestHandler, str, str, str], bool]] = []
        self.base_url = "http://127.0.0.1"  # with the port once served (``make_server``)
        self.rendezvous = Rendezvous(manager)  # attached one-offs' attach_url
        Builds(manager, lambda: self.base_url).register(self)  # builds, their output streams

    def add_route(self, method: str, pattern: str, fn: Callable[..., Any], **meta: Any) -> None:
        """Extension point: ``fn(query, body, **groups)``; its return value is the JSON answer. ``meta``: the
        ``Route`` fields ``status``, ``resource``, ``title``, ``ranges``."""
        self._route(method, pattern, fn, **meta)

    def _route(self, method: str, pattern: str, fn: Callable[..., Any], **meta: Any) -> None:
        self.routes.append(Route(method, pattern, re.compile(f"^{pattern}$"), fn, **meta))

    def find(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        """The route answering ``method path`` and its path parameters (decoded; an app or dyno named by its id
        becomes its name, so every handler gets names)."""
        allowed = False
        for route in self.routes:
            match = route.rx.match(path)
            if match:
                allowed = True
                if route.method == method:
                    groups = {k: unquote(v) for k, v in match.groupdict().items()}
                    if "app" in groups:
                        groups["app"] = self.m.app_name(groups["app"])
                        self.m.app_row(groups["app"])  # an unknown app is 404 before its body is read
                        if "dyno" in groups:
                            groups["dyno"] = self.m.dyno_name(groups["app"], groups["dyno"])
                    return route, groups
        if allowed:
            raise MethodNotAllowed(f"Method {method} not allowed on {path}")
        raise NotFound(f"No such endpoint: {method} {path}")

    def is_public(self, method: str, path: str) -> bool:
        """Answered without a token: a route marked ``public`` (a build's output stream)."""
        return any(r.public and r.method == method and r.rx.match(path) for r in self.routes)

    def dispatch(self, method: str, path: str, query: dict[str, str], body: dict[str, Any]) -> Any:
        route, groups = self.find(method, path)
        return route.fn(query, body, **groups)

    def _create_app(self, q: dict[str, str], b: dict[str, Any]) -> Any:
        space = b.get("space")
        if isinstance(space, dict):  # {"id"} or {"name"}, as the Platform API's identity objects
            space = space.get("name", space.get("id", []))
        return self.m.create_app(_field(b, "name"), _opt_str({"space": space}, "space"))

    def _rollback(self, q: dict[str, str], b: dict[str, Any], app: str) -> Any:
        value = b.get("release")
        if isinstance(value, dict) and value:
            value = value.get("id", value.get("version", []))
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, str)) or value == ""):
            raise InvalidInput("'release' must be a release id (or version number)")
        return self.m.rollback(app, value)

    def _dynos(self, q: dict[str, str], b: dict[str, Any], app: str) -> Any:
        return self.m.dynos(app, q.get("all") == "1", q.get("extended") == "true")

    def _feature(self, app: str, feature: str) -> Any:
        for f in self.m.features(app):
            if feature in (f["name"], f["id"]):
                return f
        raise NotFound("Couldn't find that feature.")

    def _patch_feature(self, q: dict[str, str], b: dict[str, Any], app: str, feature: str) -> Any:
        if not isinstance(b.get("enabled"), bool):
            raise InvalidInput("body must have a boolean 'enabled'")
        return self.m.set_feature(app, self._feature(app, feature)["name"], b["enabled"])

    def _formation(self, q: dict[str, str], b: dict[str, Any], app: str) -> Any:
        updates = b.get("updates")
        if not isinstance(updates, list) or not updates:
            raise InvalidInput("body must have a non-empty list 'updates' of {type, quantity, size}")
        return self.m.update_formation(app, updates)

    def _formation_type(self, q: dict[str, str], b: dict[str, Any], app: str, ptype: str) -> Any:
        ptype = self.m.formation_type(app, ptype)["type"]
        return next(e for e in self.m.update_formation(app, [{**b, "type": ptype}]) if e["type"] == ptype)

    def _patch_lab(self, q: dict[str, str], b: dict[str, Any]) -> Any:
        value = b.get("timescale")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.000001 <= value <= 100:
            raise InvalidInput("timescale must be a number between 0.000001 and 100")
        self.m.set_timescale(float(value))
        return self.status()

    def _patch_app(self, q: dict[str, str], b: dict[str, Any], app: str) -> Any:
        maintenance, name = b.get("maintenance"), b.get("name")
        if maintenance in (0, 1) and not isinstance(maintenance, bool):
            maintenance = bool(maintenance)  # the heroku3 client sends 0 and 1 (Heroku's API takes them)
        if maintenance is not None and not isinstance(maintenance, bool):
            raise InvalidInput("'maintenance' must be a boolean")
        if name is not None and not isinstance(name, str):
            raise InvalidInput("'name' must be a string")
        if maintenance is None and name is None:
            raise InvalidInput("body must have a boolean 'maintenance' or a string 'name'")
        return self.m.update_app(app, maintenance=maintenance, name=name)

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

    def _run(self, q: dict[str, str], b: dict[str, Any], app: str) -> Any:
        command = _field(b, "command")
        attach = b.get("attach", False)
        if not isinstance(attach, bool):
            raise InvalidInput("'attach' must be a boolean")
        size = _opt_str(b, "size")
        view = self.m.run(app, command, attach, size)
        if attach:  # the client attaches through the rendezvous service (``controller/rendezvous.py``)
            view = {**view, "attach_url": self.rendezvous.offer(app, dict(view))}
        return view


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


def _empty(done: object) -> dict[str, Any]:
    """Restarts and stops answer 202 with an empty object, as the Platform API's ``empty`` links."""
    return {}


class _Bucket:
    """Heroku's rate limit as a token bucket (refilled over the hour); the lab counts calls, and answers what
    remains in ``RateLimit-Remaining``, but never refuses one (docs/api.md)."""

    def __init__(self, size: int):
        self.size = size
        self.tokens = float(size)
        self.at = time.monotonic()
        self.lock = threading.Lock()

    def _refill(self) -> None:
        now = time.monotonic()
        self.tokens = min(self.size, self.tokens + (now - self.at) * self.size / 3600)
        self.at = now

    def take(self) -> int:
        with self.lock:
            self._refill()
            self.tokens = max(0.0, self.tokens - 1)
            return int(self.tokens)

    def remaining(self) -> int:
        with self.lock:
            self._refill()
            return int(self.tokens)


_RANGE_RX = re.compile(
    r"^\s*(?P<field>[\w-]+)\s*(?P<ex>\]?)(?P<start>[^;]*?)\.\.(?P<end>[^;]*?)\s*(?:;\s*(?P<params>.*))?$"
)


@dataclass
class Page:
    rows: list[Any]
    headers: dict[str, str]
    partial: bool


def paginate(rows: list[Any], header: str | None, fields: tuple[str, ...]) -> Page:
    """One page of a list, as the Platform API's ``Range: <field> [start]..[end][; max=N, order=asc|desc]``.

    Without a Range header the list keeps its own order and is cut at ``DEFAULT_MAX``; with one, it is sorted
    by the field. A cut list answers 206 with ``Next-Range: <field> ]<last>..; max=N[, order=desc]``."""
    field, order, limit = fields[0], "asc", DEFAULT_MAX
    start = end = ""
    exclusive = False
    headers = {"Accept-Ranges": ", ".join(fields)}
    if header:
        m = _RANGE_RX.match(header)
        if not m or m["field"] not in fields:
            raise LabError(
                "Range must be `<field> [start]..[end][; max=N, order=asc|desc]` with field one of: "
                + ", ".join(fields)
            )
        field, start, end, exclusive = m["field"], m["start"].strip(), m["end"].strip(), bool(m["ex"])
        # parameters are separated by "," (Heroku's examples) or ";", and a trailing ";" is allowed (heroku3 sends
        # "id ..; max=1000;")
        for param in filter(None, (p.strip() for p in re.split(r"[,;]", m["params"] or ""))):
            key, _, value = param.partition("=")
            key, value = key.strip(), value.strip()
            if key == "max" and value.isdigit() and 1 <= int(value) <= MAX_MAX:
                limit = int(value)
            elif key == "order" and value in ("asc", "desc"):
                order = value
            else:
                raise LabError(f"Range parameter {param!r}: expected max=1..{MAX_MAX} or order=asc|desc")
        rows = sorted(rows, key=lambda r: _sort_key(r.get(field)), reverse=order == "desc")

        def inside(row: dict[str, Any]) -> bool:
            v = _sort_key(row.get(field))
            lo, hi = (end, start) if order == "desc" else (start, end)
            lo_key, hi_key = _bound(lo, v), _bound(hi, v)
            if lo_key is not None and (v < lo_key or (exclusive and order == "asc" and v == lo_key)):
                return False
            if hi_key is not None and (v > hi_key or (exclusive and order == "desc" and v == hi_key)):
                return False
            return True

        rows = [r for r in rows if inside(r)]
    page = rows[:limit]
    if page:
        headers["Content-Range"] = f"{field} {page[0].get(field)}..{page[-1].get(field)}"
    if len(rows) > limit:
        suffix = f"; max={limit}" + (", order=desc" if order == "desc" else "")
        headers["Next-Range"] = f"{field} ]{page[-1].get(field)}..{suffix}"
    return Page(page, headers, len(rows) > limit)


def _sort_key(value: Any) -> tuple[int, Any]:
    if isinstance(value, bool) or value is None:
        return (0, 0)
    if isinstance(value, (int, float)):
        return (1, value)
    return (2, str(value))


def _bound(text: str, like: tuple[int, Any]) -> tuple[int, Any] | None:
    if not text:
        return None
    if like[0] == 1:
        try:
            return (1, float(text))
        except ValueError:
            return (2, text)
    return (2, text)


def authorized(header: str, token: str) -> bool:
    """``Bearer <token>``, or HTTP Basic whose password is the token (any user name, as ``heroku`` clients send
    their e-mail); compared in constant time."""
    scheme, _, value = header.strip().partition(" ")
    supplied = value.strip()
    if scheme.lower() == "basic":
        try:
            supplied = base64.b64decode(supplied, validate=True).decode().partition(":")[2]
        except (binascii.Error, UnicodeDecodeError):
            return False
    elif scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(supplied.encode(), token.encode())


def check_accept(header: str | None) -> None:
    """``application/vnd.heroku+json; version=3`` (or a variant ``3.x``, no version, plain JSON, ``*/*``): version 3
    only."""
    for part in (header or "").split(","):
        media, *params = (p.strip() for p in part.split(";"))
        if media.lower() != MEDIA_TYPE:
            continue
        for param in params:
            key, _, value = param.partition("=")
            version = value.strip()
            # "3" and its variants ("3.cedar-acm", as the heroku3 client sends) are version 3
            if key.strip().lower() == "version" and version != "3" and not version.startswith("3."):
                raise LabError(f"This lab serves version 3 of the Platform API, not version {value.strip()!r}.")


def make_server(api: Api, token: str, port: int = 0) -> ThreadingHTTPServer:
    """A threading HTTP server on 127.0.0.1 that checks the token on every request."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt: str, *args: Any) -> None:
            log.debug("api: " + fmt, *args)

        def _handle(self, method: str) -> None:
            supplied_id = (self.headers.get("Request-Id") or "").strip()[:200]
            self.request_id = f"{supplied_id},{uuid.uuid4()}" if supplied_id else str(uuid.uuid4())
            self.extra: dict[str, str] = {}
            url = urlparse(self.path)
            if method == "GET" and url.path == "/health":
                return self._send(200, {"ok": True})
            for web in api.web_handlers:  # the dashboard's pages: their own login (controller/dashboard.py)
                if web(self, method, url.path, url.query):
                    return None
            path = url.path.rstrip("/") or "/"
            if not api.is_public(method, path) and not authorized(self.headers.get("Authorization", ""), token):
                self._drain()
                return self._send(401, {"id": "unauthorized", "message": "Invalid credentials provided."})
            try:
                body = self._body()
                check_accept(self.headers.get("Accept"))
                query = {k: v[-1] for k, v in parse_qs(url.query).items()}
                route, groups = api.find(method, path)
                result = route.fn(query, body, **groups)
                status = route.status
                if route.ranges and isinstance(result, list):
                    page = paginate(result, self.headers.get("Range"), route.ranges)
                    result, self.extra = page.rows, page.headers
                    status = 206 if page.partial else status
            except LabError as err:
                return self._send(err.http_status, {"id": err.id, "message": str(err)})
            except Exception as err:  # noqa: BLE001 - the boundary: log it, answer one line
                log.exception("API %s %s failed", method, self.path)
                return self._send(500, {"id": "internal", "message": f"internal error: {err}"})
            if isinstance(result, TextStream):
                return self._text(result.chunks)
            if isinstance(result, Iterator):
                return self._stream(result)
            return self._send(status, result)

        def _length(self) -> int:
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                self.close_connection = True
                raise InvalidInput("Content-Length must be a whole number") from None
            if length < 0:
                self.close_connection = True
                raise InvalidInput("Content-Length must be a whole number")
            if length > MAX_BODY:
                self.close_connection = True  # the body stays unread: this connection cannot carry another call
                raise TooLarge(f"Request body of {length} bytes is over the limit of {MAX_BODY} bytes.")
            return length

        def _drain(self) -> None:
            """Read (and drop) a refused call's body, so the connection stays in step; an unusable length closes it."""
            try:
                length = self._length()
            except LabError:
                return
            if length:
                self.rfile.read(length)

        def _body(self) -> dict[str, Any]:
            length = self._length()
            if not length:
                return {}
            try:
                body = json.loads(self.rfile.read(length))
            except (ValueError, UnicodeDecodeError):
                raise InvalidInput("request body is not valid JSON") from None
            if not isinstance(body, dict):
                raise InvalidInput("request body must be a JSON object")
            return body

        def _common_headers(self) -> None:
            self.send_header("Request-Id", self.request_id)
            self.send_header("RateLimit-Remaining", str(api.rate.take()))
            for key, value in self.extra.items():
                self.send_header(key, value)

        def _send(self, status: int, payload: Any) -> None:
            data = json.dumps(payload, default=str).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self._common_headers()
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data)

        def _stream(self, rows: Iterator[dict[str, Any]]) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/x-ndjson")
            self.send_header("Connection", "close")
            self._common_headers()
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

        def _text(self, chunks: Iterator[str]) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Connection", "close")
            self._common_headers()
            self.end_headers()
            self.close_connection = True
            try:
                for chunk in chunks:
                    self.wfile.write(chunk.encode())
                    self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                return

        def do_GET(self) -> None:  # noqa: N802
            self._handle("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._handle("POST")

        def do_PATCH(self) -> None:  # noqa: N802
            self._handle("PATCH")

        def do_DELETE(self) -> None:  # noqa: N802
            self._handle("DELETE")

        def do_PUT(self) -> None:  # noqa: N802
            self._handle("PUT")

    server = _Server(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    api.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    return server


class _Server(ThreadingHTTPServer):
    # socketserver's default listen backlog is 5: a burst of 50 concurrent CLI/API calls overflowed it and a
    # client could be left without an answer. Each accepted call gets a thread of its own.
    request_queue_size = 128
