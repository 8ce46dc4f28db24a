"""The live dashboard (issue 21): one page in the browser, served by the controller on its own 127.0.0.1 port.

Logging in: ``labctl dashboard`` asks the API (``POST /lab/dashboard-links``, token auth) for a one-time link
``/dashboard/login?code=…``. Opening it trades the code (single use, ``LINK_TTL`` seconds) for a session cookie
(``HttpOnly; SameSite=Strict; Path=/dashboard``, a random id unrelated to the API token) and redirects to the
clean ``/dashboard/``. A wrong, used or expired code, and any dashboard URL without a live session, answer 401
with a page that says to run ``labctl dashboard`` again. Requests must name the controller's own address in
``Host`` (no DNS rebinding); state-changing ones must come from the page's own ``Origin``.

The page (``labctl/dashboard_static``: plain HTML, CSS and JS) reads one server-sent event stream
(``/dashboard/events``): a JSON snapshot of the lab built from the store every ``TICK`` seconds (sent when it
changed) — runtimes, instances (with faults), dynos, apps (releases, preboot), the router log's tail and per-dyno
traffic from the ``heroku[router]`` lines the routers' log followers already write. Actions go through
``POST /dashboard/call`` to the same API routes the CLI calls (``Api.dispatch``), from a fixed list of routes.

A traffic generator can run in the controller (``POST``/``DELETE /apps/{app}/traffic``): ``labctl.traffic``'s
runner against the common router on 127.0.0.1, with a client that calls the API in-process.
"""

from __future__ import annotations

import hashlib
import json
import logging
import mimetypes
import re
import secrets
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

from labctl.controller import views
from labctl.controller.faults import describe
from labctl.engine.router_log import parse_router_fields
from labctl.errors import Conflict, InvalidInput, LabError, NotFound
from labctl.store import Store
from labctl.traffic import percentile, run_traffic

log = logging.getLogger("labctl.dashboard")

PREFIX = "/dashboard"
LINK_TTL = 300.0  # seconds a one-time link stays valid
SESSION_TTL = 12 * 3600.0  # a browser session's life (the controller forgets sessions when it restarts)
TICK = 0.25  # how often the snapshot is rebuilt (sent only when it changed)
IDLE_TICK = 1.0  # how often the router's lines are read while no page is open and no generator runs
HISTORY_S = 60  # seconds of per-dyno traffic kept (the sparklines' width)
WINDOW_S = 10  # the figures beside a sparkline: the last few seconds
TAIL = 40  # router log lines on the page
_INSTANCE_SHOWN = {"id", "runtime", "state", "created_at", "ready_at", "dynos", "faults"}
ERRORS_KEPT = 8  # router lines with an H-code, listed apart
STATIC = Path(__file__).resolve().parents[1] / "dashboard_static"
MAX_GENERATOR_S = 600.0
MAX_GENERATOR_RPS = 50.0

EXPIRED_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>labctl dashboard: log in again</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font:18px/1.5 system-ui,sans-serif;margin:3em auto;max-width:40em;padding:0 1em}
code{background:#eee;padding:.1em .3em}</style></head>
<body><h1>This dashboard link is not valid</h1>
<p>{reason}</p>
<p>Run <code>labctl dashboard{lab_opt}</code> again and open the new link it prints (or add <code>--open</code>).</p>
</body></html>
"""

# The API routes the page may call (method, path): the same handlers as the CLI's calls.
ACTIONS = [
    ("DELETE", re.compile(r"^/apps/[^/]+/dynos/[^/]+$")),  # ps:restart -d
    ("POST", re.compile(r"^/apps/[^/]+/dynos/[^/]+/actions/stop$")),  # ps:stop -d
    ("PATCH", re.compile(r"^/apps/[^/]+/formation/[^/]+$")),  # ps:scale TYPE=N
    ("POST", re.compile(r"^/instances/[^/]+/faults$")),  # faults:add --instance
    ("DELETE", re.compile(r"^/instances/[^/]+/faults$")),  # faults:clear --instance
    ("PATCH", re.compile(r"^/apps/[^/]+/features/[^/]+$")),  # features:enable/disable
    ("POST", re.compile(r"^/apps/[^/]+/traffic$")),  # a traffic generator
    ("DELETE", re.compile(r"^/apps/[^/]+/traffic$")),
]


# -- the login: one-time links and sessions (pure; unit-tested) -------------------------------------------------
def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class Sessions:
    """One-time login codes and the sessions they open. Only digests are kept; every code is used once."""

    def __init__(self, clock: Callable[[], float] = time.time, link_ttl: float = LINK_TTL):
        self.clock = clock
        self.link_ttl = link_ttl
        self.links: dict[str, float] = {}  # digest of a code -> its expiry
        self.sessions: dict[str, float] = {}  # digest of a session id -> its expiry
        self.lock = threading.Lock()

    def new_link(self) -> tuple[str, float]:
        """A fresh code and when it expires."""
        code = secrets.token_urlsafe(32)
        expires = self.clock() + self.link_ttl
        with self.lock:
            self._prune()
            self.links[_digest(code)] = expires
        return code, expires

    def redeem(self, code: str) -> str | None:
        """A new session id for a valid code (which is then used up), else ``None``."""
        if not code or len(code) > 200:
            return None
        with self.lock:
            expires = self.links.pop(_digest(code), None)
            if expires is None or expires <= self.clock():
                return None
            session = secrets.token_urlsafe(32)
            self.sessions[_digest(session)] = self.clock() + SESSION_TTL
            return session

    def valid(self, session: str | None) -> bool:
        if not session or len(session) > 200:
            return False
        with self.lock:
            expires = self.sessions.get(_digest(session))
            return expires is not None and expires > self.clock()

    def end(self, session: str | None) -> None:
        if session:
            with self.lock:
                self.sessions.pop(_digest(session), None)

    def _prune(self) -> None:
        now = self.clock()
        self.links = {k: v for k, v in self.links.items() if v > now}
        self.sessions = {k: v for k, v in self.sessions.items() if v > now}


def cookie_name(lab: str) -> str:
    """Cookies are shared by every port of 127.0.0.1: one name per lab keeps two labs' sessions apart."""
    return f"labctl_dashboard_{lab.replace('-', '_')}"


def set_cookie(lab: str, session: str) -> str:
    return f"{cookie_name(lab)}={session}; Path={PREFIX}; HttpOnly; SameSite=Strict; Max-Age={int(SESSION_TTL)}"


def session_from(cookie_header: str | None, lab: str) -> str | None:
    """The session id of this lab's cookie in a ``Cookie`` header."""
    want = cookie_name(lab)
    for part in (cookie_header or "").split(";"):
        key, _, value = part.strip().partition("=")
        if key == want:
            return value.strip()
    return None


def host_ok(host: str | None, port: int) -> bool:
    """The request names the controller itself (a rebinding DNS name is refused)."""
    return (host or "").strip().lower() in (f"127.0.0.1:{port}", f"localhost:{port}")


def origin_ok(origin: str | None, port: int) -> bool:
    return (origin or "").strip().lower() in (f"http://127.0.0.1:{port}", f"http://localhost:{port}")


def action_allowed(method: str, path: str) -> bool:
    return any(m == method and rx.match(path) for m, rx in ACTIONS)


# -- traffic from the router's log (pure; unit-tested) ------------------------------------------------------------
def _ms(text: str | None) -> float | None:
    if not text or not text.endswith("ms"):
        return None
    try:
        return float(text[:-2])
    except ValueError:
        return None


class Traffic:
    """Per-dyno requests by second, read from ``heroku[router]`` lines: rps, p50/p95 (connect + service) and errors
    by H-code. Requests no dyno answered count under the app's ``router``."""

    def __init__(self) -> None:
        # (app, dyno) -> second -> [count, latencies, {code: n}]
        self.buckets: dict[tuple[str, str], dict[int, list[Any]]] = {}

    def feed(self, app: str, ts: float, msg: str) -> dict[str, str]:
        fields = parse_router_fields(msg)
        dyno = fields.get("dyno") or ""
        if dyno in ("", "none"):
            dyno = "router"
        sec = int(ts)
        b = self.buckets.setdefault((app, dyno), {}).setdefault(sec, [0, [], {}])
        b[0] += 1
        connect, service = _ms(fields.get("connect")), _ms(fields.get("service"))
        if connect is not None or service is not None:
            b[1].append((connect or 0.0) + (service or 0.0))
        code = fields.get("code")
        status = fields.get("status", "")
        if code or status.startswith("5"):
            label = code or status
            b[2][label] = b[2].get(label, 0) + 1
        return fields

    def prune(self, now: float) -> None:
        oldest = int(now) - HISTORY_S - 1
        for key in list(self.buckets):
            kept = {s: b for s, b in self.buckets[key].items() if s >= oldest}
            if kept:
                self.buckets[key] = kept
            else:
                del self.buckets[key]

    def view(self, app: str, dyno: str, now: float) -> dict[str, Any] | None:
        """The last ``HISTORY_S`` whole seconds (series) and the last ``WINDOW_S`` (figures), or None if silent."""
        secs = self.buckets.get((app, dyno))
        if not secs:
            return None
        end = int(now)  # the current second is still filling: series end with the one before
        rng = range(end - HISTORY_S, end)
        rps = [secs[s][0] if s in secs else 0 for s in rng]
        p95 = [_pct(secs[s][1], 95) if s in secs else None for s in rng]
        window = [secs[s] for s in range(end - WINDOW_S, end) if s in secs]
        lat = [v for b in window for v in b[1]]
        errors: dict[str, int] = {}
        for b in window:
            for k, n in b[2].items():
                errors[k] = errors.get(k, 0) + n
        return {
            "rps_series": rps,
            "p95_series": p95,
            "rps": round(sum(b[0] for b in window) / WINDOW_S, 1),
            "p50": _pct(lat, 50),
            "p95": _pct(lat, 95),
            "errors": dict(sorted(errors.items())),
        }


def _pct(values: list[float], p: float) -> float | None:
    """``labctl.traffic.percentile`` (nearest rank), to a tenth of a millisecond for the page."""
    v = percentile(values, p)
    return round(v, 1) if v is not None else None


# -- traffic generators in the controller ------------------------------------------------------------------------
class _LocalClient:
    """What ``labctl.traffic`` asks of a client, answered by the API in-process."""

    def __init__(self, api: Any):
        self.api = api

    def lab_status(self) -> Any:
        return self.api.status()

    def app_info(self, app: str) -> Any:
        return self.api.dispatch("GET", f"/apps/{quote(app, safe='')}", {}, {})

    def dynos(self, app: str) -> Any:
        return self.api.dispatch("GET", f"/apps/{quote(app, safe='')}/dynos", {}, {})

    def log_lines(self, app: str, n: int = 100, after: int = 0, **filters: str | None) -> Any:
        query = {"n": str(n), "after": str(after), **{k: v for k, v in filters.items() if v}}
        return self.api.dispatch("GET", f"/apps/{quote(app, safe='')}/log-lines", query, {})


class Generators:
    """At most one traffic generator per app, each a thread running ``labctl.traffic.run_traffic``."""

    def __init__(self, api: Any, router_port: Callable[[], int]):
        self.api = api
        self.router_port = router_port
        self.running: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()

    def register(self, api: Any) -> None:
        t = {"resource": "traffic-generator"}
        api.add_route("GET", "/traffic", lambda q, b: self.list(), title="List", **t)
        api.add_route("POST", "/apps/(?P<app>[^/]+)/traffic", self._start, status=201, title="Create", **t)
        api.add_route("DELETE", "/apps/(?P<app>[^/]+)/traffic", lambda q, b, app: self.stop(app), title="Delete", **t)

    def list(self) -> list[dict[str, Any]]:
        with self.lock:
            return [self._view(g) for g in self.running.values()]

    @staticmethod
    def _view(g: dict[str, Any]) -> dict[str, Any]:
        return {
            "app": g["app"],
            "rps": g["rps"],
            "duration": g["duration"],
            "started_at": views.iso(g["started_at"]),
            "elapsed": int(time.time() - g["started_at"]),  # whole seconds: the snapshot changes once a second
            "sent": len(g["records"]),
            "error": g.get("error"),
        }

    def _start(self, q: dict[str, str], b: dict[str, Any], app: str) -> dict[str, Any]:
        rps, duration = b.get("rps", 5), b.get("duration", 120)
        for key, value, top in (("rps", rps, MAX_GENERATOR_RPS), ("duration", duration, MAX_GENERATOR_S)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= top:
                raise InvalidInput(f"{key!r} must be a number more than 0 and at most {top:g}")
        return self.start(app, float(rps), float(duration))

    def start(self, app: str, rps: float, duration: float) -> dict[str, Any]:
        self.api.dispatch("GET", f"/apps/{quote(app, safe='')}", {}, {})  # an unknown app: 404, nothing starts
        with self.lock:
            if app in self.running:
                raise Conflict(f"A traffic generator already runs against {app}. Stop it first.")
            stop = threading.Event()
            g: dict[str, Any] = {
                "app": app,
                "rps": rps,
                "duration": duration,
                "started_at": time.time(),
                "records": [],
                "stop": stop,
            }
            self.running[app] = g

        def run() -> None:
            try:
                run_traffic(
                    app,
                    rps=rps,
                    duration=duration,
                    client=_LocalClient(self.api),
                    router_port=self.router_port(),
                    stop=stop,
                    records=g["records"],
                )
            except Exception as err:  # noqa: BLE001 - a generator's failure is shown, not raised
                log.warning("traffic generator against %s ended: %s", app, err)
            finally:
                with self.lock:
                    if self.running.get(app) is g:
                        del self.running[app]

        threading.Thread(target=run, daemon=True, name=f"traffic-{app}").start()
        log.info("traffic generator started against %s: %g rps for %g s", app, rps, duration)
        return self._view(g)

    def stop(self, app: str) -> dict[str, Any]:
        with self.lock:
            g = self.running.get(app)
            if g is None:
                raise NotFound(f"No traffic generator runs against {app}.")
            g["stop"].set()
            del self.running[app]
        log.info("traffic generator against %s stopped", app)
        return self._view(g)

    def forget_gone(self, apps: set[str]) -> None:
        """Stop the generators of apps that no longer exist (destroyed or renamed)."""
        with self.lock:
            for app in [a for a in self.running if a not in apps]:
                self.running.pop(app)["stop"].set()
                log.info("traffic generator against %s stopped: the app is gone", app)

    def stop_all(self) -> None:
        with self.lock:
            for g in self.running.values():
                g["stop"].set()
            self.running.clear()


# -- the snapshot ------------------------------------------------------------------------------------------------
class Snapshots:
    """Builds the page's JSON from the store every ``TICK`` s while a page listens; hands each new one to the
    event streams."""

    def __init__(self, store: Store, lab: str, generators: Generators, status: Callable[[], Any] | None = None):
        self.store = store
        self.lab = lab
        self.generators = generators
        self.status = status
        self.traffic = Traffic()
        self.tail: list[dict[str, Any]] = []
        self.errors: list[dict[str, Any]] = []  # the last router lines with an H-code (a busy tail hides them)
        self.after = store.last_log_id()
        self.version = 0
        self.text = ""
        self.cond = threading.Condition()
        self.listeners = 0
        self.stopping = False
        self.work = threading.Lock()  # the reader and a rebuild share the traffic and the tail

    def start(self) -> None:
        threading.Thread(target=self._loop, daemon=True, name="dashboard").start()

    def stop(self) -> None:
        with self.cond:
            self.stopping = True
            self.cond.notify_all()

    def _loop(self) -> None:
        while not self.stopping:
            try:
                self._read_router_lines()
                if self.generators.running:
                    self.generators.forget_gone({a["name"] for a in self.store.apps()})
                if self.listeners:
                    self.rebuild()
            except Exception:  # noqa: BLE001 - the page misses one tick, the controller goes on
                log.exception("dashboard snapshot failed")
            if self.listeners or self.generators.running:
                time.sleep(TICK)
            else:  # nobody looks: read the lines less often until a page opens (``_events`` wakes this)
                with self.cond:
                    self.cond.wait_for(lambda: self.listeners > 0 or self.stopping, IDLE_TICK)

    def _read_router_lines(self) -> None:
        with self.work:
            self._read_router_lines_unlocked()

    def _read_router_lines_unlocked(self) -> None:
        for _ in range(20):  # at most 20 000 lines a tick
            rows = self.store.lab_logs_after(self.after, 1000, "heroku", "router")
            for row in rows:
                self.after = row["id"]
                fields = self.traffic.feed(row["app"], row["ts"], row["msg"])
                line = {
                    "id": row["id"],
                    "ts": row["ts"],
                    "app": row["app"],
                    "msg": row["msg"],
                    "code": fields.get("code"),
                    "status": fields.get("status"),
                }
                self.tail.append(line)
                if line["code"]:
                    self.errors.append(line)
            if len(rows) < 1000:
                break
        del self.tail[:-TAIL]
        del self.errors[:-ERRORS_KEPT]
        self.traffic.prune(time.time())

    def rebuild(self) -> None:
        with self.work:
            text = json.dumps(self.build(time.time()), default=str, sort_keys=True)
        if text != self.text:
            with self.cond:
                self.text = text
                self.version += 1
                self.cond.notify_all()

    def wait(self, seen: int, timeout: float) -> tuple[int, str]:
        """The next snapshot after version ``seen`` (or the same one after ``timeout``)."""
        with self.cond:
            self.cond.wait_for(lambda: self.version != seen or self.stopping, timeout)
            return self.version, self.text

    def build(self, now: float) -> dict[str, Any]:
        store = self.store
        apps = store.apps()
        app_space = {a["name"]: a["space"] or "common" for a in apps}
        dynos = store.dynos()
        olds = store.old_dynos()
        instances = store.instances()
        inst_views = {v["id"]: v for v in views.instance_views(instances, dynos)}

        def dyno_item(row: Any, old: bool) -> dict[str, Any]:
            since = row.get("started_at") if old else row.get("updated_at")
            return {
                "app": row["app"],
                "name": row["name"],
                "state": "up" if old else row["state"],
                "release": row["release"],
                "size": row["size"],
                "since": since,
                "one_off": bool(row.get("one_off")),
                "old": old,
                "routed": bool(row.get("routed")) if old else None,
                "instance": row["instance"],
                "traffic": None if old else self.traffic.view(row["app"], row["name"], now),
            }

        placed: dict[str, list[dict[str, Any]]] = {}
        unplaced: dict[str, list[dict[str, Any]]] = {}
        for r in dynos:
            item = dyno_item(r, False)
            # a dyno waiting for its provisioning instance shows in that instance's box
            if r["instance"] and r["instance"] in inst_views:
                placed.setdefault(r["instance"], []).append(item)
            else:
                unplaced.setdefault(app_space.get(r["app"], "common"), []).append(item)
        for o in olds:
            placed.setdefault(o["instance"] or "", []).append(dyno_item(o, True))

        runtimes: list[dict[str, Any]] = [{"id": "common", "name": "Common Runtime", "instances": [], "dynos": []}]
        runtimes += [
            {"id": s["name"], "name": f"Private Space {s['name']}", "instances": [], "dynos": []}
            for s in store.spaces()
        ]
        by_id = {r["id"]: r for r in runtimes}
        for inst in instances:
            v = inst_views[inst["id"]]
            area = by_id.get(inst["runtime"]) or by_id["common"]
            area["instances"].append(
                {
                    "id": inst["id"],
                    "state": v["state"],
                    "created_at": inst["created_at"],
                    "ready_at": inst["ready_at"],
                    "faults": [
                        {
                            "kind": f.get("kind"),
                            "label": describe(f),
                            "expires_at": f.get("expires_at"),
                        }
                        for f in inst["faults"]
                    ],
                    "dynos": placed.get(inst["id"], []),
                    # columns the instances view gains later (a budget's use, #16) are shown as they come
                    "extra": {k: val for k, val in v.items() if k not in _INSTANCE_SHOWN},
                }
            )
        for rid, items in unplaced.items():
            (by_id.get(rid) or by_id["common"])["dynos"].extend(items)
        for area in runtimes:
            area["apps"] = [a["name"] for a in apps if (a["space"] or "common") == area["id"]]
            # the router's own errors (no dyno answered) per app of the runtime
            area["router_traffic"] = {
                a: t for a in area["apps"] if (t := self.traffic.view(a, "router", now)) is not None
            }

        app_items = []
        for a in apps:
            rels = store.releases(a["name"])  # newest first
            done = [r for r in rels if r["status"] != "pending"]
            current = next((r["version"] for r in rels if r["status"] == "succeeded"), None)
            rollout = a["rollout"] or {}
            app_olds = [o for o in olds if o["app"] == a["name"]]
            app_items.append(
                {
                    "name": a["name"],
                    "space": a["space"],
                    "release": current,
                    "maintenance": bool(a["maintenance"]),
                    "formation": [
                        {"type": p.type, "quantity": p.quantity, "size": p.size} for p in views.formation_of(a).values()
                    ],
                    "releases": [
                        {
                            "version": r["version"],
                            "description": r["description"],
                            "status": r["status"],
                            "created_at": r["created_at"],
                            "current": r["version"] == current,
                        }
                        for r in done[:5]
                    ],
                    "preboot": _preboot(a, rollout, app_olds),
                }
            )
        return {
            "lab": self.lab,
            "now": int(now),  # whole seconds: an idle lab's snapshot changes once a second at most
            "runtimes": runtimes,
            "apps": app_items,
            "router_tail": list(self.tail),
            "router_errors": list(self.errors),
            "generators": self.generators.list(),
            "history_s": HISTORY_S,
            "window_s": WINDOW_S,
        }


def _preboot(app_row: Any, rollout: Any, olds: list[Any]) -> dict[str, Any]:
    """Preboot's state: enabled, which generation takes requests, when the switch comes (heroku-reference §4)."""
    enabled = bool(app_row["features"].get("preboot"))
    routed_old = [o for o in olds if o["routed"]]
    kind = rollout.get("kind")
    state = "idle"
    serving = "new"
    if kind == "deploy" and not rollout.get("switched") and routed_old:
        state, serving = "prebooting", "old"
    elif kind in ("deploy", "restart") and olds:
        state, serving = "switching", "both" if routed_old else "new"
    elif kind == "rolling":
        state = "rolling"
    return {
        "enabled": enabled,
        "state": state,
        "serving": serving,
        "old_releases": sorted({o["release"] for o in routed_old}),
        "switch_at": rollout.get("switch_at"),
        "retire_at": min((o["retire_at"] for o in olds if o["retire_at"]), default=None),
        "kind": kind,
    }


# -- the web side ------------------------------------------------------------------------------------------------
class Dashboard:
    """The ``/dashboard`` pages of the controller's HTTP server, and the API route that makes login links."""

    def __init__(self, api: Any, store: Store, lab: str, router_port: Callable[[], int]):
        self.api = api
        self.lab = lab
        self.sessions = Sessions()
        self.generators = Generators(api, router_port)
        self.snapshots = Snapshots(store, lab, self.generators)
        self.port = 0  # the controller's port, once it listens

    def register(self) -> None:
        self.api.add_route(
            "POST",
            "/lab/dashboard-links",
            lambda q, b: self.new_link(),
            status=201,
            resource="dashboard-link",
            title="Create",
        )
        self.generators.register(self.api)
        self.api.web_handlers.append(self.handle)

    def start(self, port: int) -> None:
        self.port = port
        self.snapshots.start()

    def stop(self) -> None:
        self.snapshots.stop()
        self.generators.stop_all()

    def new_link(self) -> dict[str, Any]:
        code, expires = self.sessions.new_link()
        return {
            "url": f"http://127.0.0.1:{self.port}{PREFIX}/login?code={code}",
            "expires_at": views.iso(expires),
            "expires_in": int(LINK_TTL),
        }

    # -- requests ----------------------------------------------------------------------------------------------
    def handle(self, h: BaseHTTPRequestHandler, method: str, path: str, query: str) -> bool:
        """Answer a ``/dashboard`` request; False for any other path (the API's)."""
        if path != PREFIX and not path.startswith(PREFIX + "/"):
            return False
        h.close_connection = True
        if not host_ok(h.headers.get("Host"), self.port):
            _send(h, 403, "text/plain", b"The dashboard answers on 127.0.0.1 and localhost only.\n")
            return True
        if path == PREFIX + "/login" and method == "GET":
            self._login(h, parse_qs(query).get("code", [""])[-1])
            return True
        session = session_from(h.headers.get("Cookie"), self.lab)
        if not self.sessions.valid(session):
            self._expired(h, "You are not logged in, or your session has ended (the controller restarted).")
            return True
        if method == "GET" and path in (PREFIX, PREFIX + "/"):
            return self._static(h, "index.html")
        if method == "GET" and path.startswith(PREFIX + "/static/"):
            return self._static(h, path[len(PREFIX + "/static/") :])
        if method == "GET" and path == PREFIX + "/events":
            self._events(h)
            return True
        if method == "POST" and path in (PREFIX + "/call", PREFIX + "/logout"):
            if not origin_ok(h.headers.get("Origin"), self.port):
                _json(h, 403, {"id": "forbidden", "message": "Actions come from the dashboard's own page only."})
                return True
            if path == PREFIX + "/logout":
                self.sessions.end(session)
                _json(h, 200, {}, cookie=f"{cookie_name(self.lab)}=; Path={PREFIX}; Max-Age=0")
                return True
            self._call(h)
            return True
        _json(h, 404, {"id": "not_found", "message": f"No such dashboard page: {method} {path}"})
        return True

    def _login(self, h: BaseHTTPRequestHandler, code: str) -> None:
        session = self.sessions.redeem(code)
        if session is None:
            self._expired(h, "The link is wrong, was already used, or has expired (links last 5 minutes).")
            return
        h.send_response(303)
        h.send_header("Location", PREFIX + "/")
        h.send_header("Set-Cookie", set_cookie(self.lab, session))
        h.send_header("Referrer-Policy", "no-referrer")
        h.send_header("Cache-Control", "no-store")
        h.send_header("Content-Length", "0")
        h.send_header("Connection", "close")
        h.end_headers()
        log.info("dashboard: a browser logged in")

    def _expired(self, h: BaseHTTPRequestHandler, reason: str) -> None:
        lab_opt = "" if self.lab == "default" else f" --lab {self.lab}"
        page = EXPIRED_PAGE.replace("{reason}", reason).replace("{lab_opt}", lab_opt)
        _send(h, 401, "text/html; charset=utf-8", page.encode())

    def _static(self, h: BaseHTTPRequestHandler, name: str) -> bool:
        if not re.fullmatch(r"[a-z0-9_-]+\.(html|css|js|svg)", name):
            _json(h, 404, {"id": "not_found", "message": "No such file."})
            return True
        f = STATIC / name
        if not f.is_file():
            _json(h, 404, {"id": "not_found", "message": "No such file."})
            return True
        ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
        if ctype.startswith("text/") or ctype.endswith("javascript"):
            ctype += "; charset=utf-8"
        _send(h, 200, ctype, f.read_bytes())
        return True

    def _events(self, h: BaseHTTPRequestHandler) -> None:
        snaps = self.snapshots
        with snaps.cond:
            snaps.listeners += 1
            snaps.cond.notify_all()  # the snapshot loop leaves its idle pace
        try:
            h.send_response(200)
            h.send_header("Content-Type", "text/event-stream")
            h.send_header("Cache-Control", "no-store")
            h.send_header("Connection", "close")
            h.send_header("X-Accel-Buffering", "no")
            h.end_headers()
            h.wfile.write(b"retry: 1000\n\n")
            h.wfile.flush()
            seen = -1
            snaps.rebuild()  # a new page starts from now, not from the last page's snapshot
            while not snaps.stopping:
                version, text = snaps.wait(seen, 15.0)
                if version == seen:
                    h.wfile.write(b": keep-alive\n\n")
                else:
                    h.wfile.write(b"data: " + text.encode() + b"\n\n")
                    seen = version
                h.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, OSError):
            pass
        finally:
            with snaps.cond:
                snaps.listeners -= 1

    def _call(self, h: BaseHTTPRequestHandler) -> None:
        try:
            length = int(h.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 < length <= 65536:
            _json(h, 400, {"id": "invalid_params", "message": "The body must be a JSON object of at most 64 kB."})
            return
        try:
            req = json.loads(h.rfile.read(length))
        except (ValueError, UnicodeDecodeError):
            _json(h, 400, {"id": "invalid_params", "message": "The body is not valid JSON."})
            return
        if not isinstance(req, dict):
            req = {}
        method, path, body = req.get("method"), req.get("path"), req.get("body") or {}
        if not isinstance(method, str) or not isinstance(path, str) or not isinstance(body, dict):
            _json(h, 400, {"id": "invalid_params", "message": "The body must have 'method', 'path' and 'body'."})
            return
        if not action_allowed(method, path):
            _json(h, 403, {"id": "forbidden", "message": f"The dashboard does not call {method} {path}."})
            return
        route_path, _, route_query = path.partition("?")
        query = {k: v[-1] for k, v in parse_qs(route_query).items()}
        log.info("dashboard: %s %s %s", method, path, json.dumps(body, sort_keys=True))
        try:
            result = self.api.dispatch(method, route_path, query, body)
        except LabError as err:
            _json(h, err.http_status, {"id": err.id, "message": str(err)})
            return
        except Exception as err:  # noqa: BLE001 - the boundary: log it, answer one line
            log.exception("dashboard %s %s failed", method, path)
            _json(h, 500, {"id": "internal", "message": f"internal error: {err}"})
            return
        try:
            self.snapshots.rebuild()  # the page sees the change at once (the next tick would too)
        except Exception:  # noqa: BLE001 - the action succeeded; the next tick shows it
            log.exception("dashboard snapshot failed")
        _json(h, 200, result)


def _send(h: BaseHTTPRequestHandler, status: int, ctype: str, data: bytes, cookie: str | None = None) -> None:
    h.send_response(status)
    h.send_header("Content-Type", ctype)
    h.send_header("Content-Length", str(len(data)))
    h.send_header("Cache-Control", "no-store")
    h.send_header("X-Content-Type-Options", "nosniff")
    h.send_header("Referrer-Policy", "no-referrer")
    h.send_header(
        "Content-Security-Policy",
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    )
    h.send_header("X-Frame-Options", "DENY")
    if cookie:
        h.send_header("Set-Cookie", cookie)
    h.send_header("Connection", "close")
    h.end_headers()
    h.wfile.write(data)


def _json(h: BaseHTTPRequestHandler, status: int, payload: Any, cookie: str | None = None) -> None:
    _send(h, status, "application/json; charset=utf-8", json.dumps(payload, default=str).encode(), cookie)
