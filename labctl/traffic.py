"""Client-side traffic through the router (lab-spec §9): a steady request rate, bounded in count and time.

``run_traffic`` sends ``rps × duration`` GET requests to ``http://127.0.0.1:<router port><path>`` with
``Host: <app>.localhost`` (the router on loopback, nothing else), one every ``1/rps`` s, from a thread pool
with one ``requests.Session`` per worker. Each request becomes a record::

    {"t": 1.234, "ts": 1767000000.0, "status": 200, "latency_ms": 12.3, "dyno": "web.1",
     "instance": "i-…", "release": "v3", "code": null, "error": null}

Which dyno answered and why a request failed come, as on Heroku, from the router's log line, not from the
response (the router adds no header of its own): every request carries its own ``X-Request-Id``, and the app's
``heroku[router]`` lines, read every second and once more at the end, give ``dyno`` and ``code`` (Hxx) for that
id; a JSON body naming the ``dyno`` and ``release`` (the sample app's) gives them at once. ``instance`` comes
from the API's dyno list, refreshed every second, so that per-instance figures follow restarts. A request that
gets no answer within the client timeout is an error (``status`` null, ``error`` ``"timeout"``), never a hang;
an answer whose body was cut is one too (``error`` ``"truncated"``, its router line's ``code``: H18).
An error is a 5xx or no answer at all. A request that went out on a keep-alive connection the router closed at
that moment (nginx does on every reload) is sent once more, as a browser would (``stale_keepalive``; the record
says ``"retried": true``).

``summarize`` (pure) turns records into counts, error breakdowns and p50/p95/p99 per dyno and per instance.
"""

from __future__ import annotations

import http.client
import json
import math
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import requests
import urllib3

from labctl.errors import InvalidInput

MAX_RPS = 200.0
MAX_DURATION_S = 3600.0
MAX_WORKERS = 256
WINDOW_S = 5.0  # the live view shows the last few seconds, so a fault shows up at once
NONE = "-"  # the group of requests no dyno answered (router errors before routing, client timeouts)


# -- statistics (pure) ------------------------------------------------------------------------------------
def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile (the smallest value with at least p % of values at or below it)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def is_error(rec: dict[str, Any]) -> bool:
    status = rec.get("status")
    return status is None or status >= 500


def error_label(rec: dict[str, Any]) -> str:
    """``503 H19``, ``500``, ``timeout``, ``truncated H18``: how one error is counted in ``errors``."""
    if rec.get("status") is None:
        base = rec.get("error") or "no answer"
        return f"{base} {rec['code']}" if rec.get("code") else base
    return f"{rec['status']} {rec['code']}" if rec.get("code") else str(rec["status"])


def stats(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Count, errors (by label, by status, by H-code), latency percentiles and releases of some records."""
    lat = [r["latency_ms"] for r in records if r.get("latency_ms") is not None]
    errors = [r for r in records if is_error(r)]
    out: dict[str, Any] = {
        "count": len(records),
        "errors": len(errors),
        "error_rate": round(len(errors) / len(records), 4) if records else 0.0,
        "statuses": _count(
            str(r["status"]) if r.get("status") is not None else (r.get("error") or "none") for r in records
        ),
        "codes": _count(r["code"] for r in records if r.get("code")),
        "error_kinds": _count(error_label(r) for r in errors),
        "releases": _count(r["release"] for r in records if r.get("release")),
    }
    for p in (50, 95, 99):
        v = percentile(lat, p)
        out[f"p{p}"] = round(v, 1) if v is not None else None
    out["mean"] = round(sum(lat) / len(lat), 1) if lat else None
    out["max"] = round(max(lat), 1) if lat else None
    return out


def _count(items: Iterable[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for item in items:
        counts[item] = counts.get(item, 0) + 1
    return dict(sorted(counts.items()))


def summarize(records: list[dict[str, Any]], since: float | None = None) -> dict[str, Any]:
    """Totals, per dyno and per instance; only records with ``t >= since`` when given (a window)."""
    if since is not None:
        records = [r for r in records if r["t"] >= since]
    by_dyno: dict[str, list[dict[str, Any]]] = {}
    by_instance: dict[str, list[dict[str, Any]]] = {}
    dynos_of: dict[str, set[str]] = {}
    for r in records:
        dyno = r.get("dyno") or NONE
        inst = r.get("instance") or NONE
        by_dyno.setdefault(dyno, []).append(r)
        by_instance.setdefault(inst, []).append(r)
        dynos_of.setdefault(inst, set()).add(dyno)
    per_dyno = {}
    for d, rs in sorted(by_dyno.items(), key=lambda kv: _dyno_sort(kv[0])):
        instances = _count(r.get("instance") or NONE for r in rs)
        per_dyno[d] = {**stats(rs), "instances": instances}
    per_instance = {
        i: {**stats(rs), "dynos": sorted(dynos_of[i], key=_dyno_sort)} for i, rs in sorted(by_instance.items())
    }
    return {"total": stats(records), "by_dyno": per_dyno, "by_instance": per_instance}


def _dyno_sort(name: str) -> tuple[int, str, int]:
    if name == NONE:
        return (1, "", 0)
    kind, _, num = name.partition(".")
    return (0, kind, int(num) if num.isdigit() else 0)


def stale_keepalive(err: requests.ConnectionError) -> bool:
    """The server closed an idle keep-alive connection just as a request went out on it.

    nginx closes its idle client connections on every reload (a preboot switch, a dyno up or down), and a
    request already on its way on such a connection dies with no answer. RFC 9112 §9.3.1 lets a client retry
    an idempotent request then, and browsers do; a refused or failed *new* connection is not this.
    """
    cause = err.args[0] if err.args else None
    return (
        isinstance(cause, urllib3.exceptions.ProtocolError)
        and len(cause.args) > 1
        and isinstance(cause.args[1], http.client.RemoteDisconnected | ConnectionResetError | BrokenPipeError)
    )


# -- the run ---------------------------------------------------------------------------------------------------
@dataclass
class TrafficResult:
    app: str
    url: str
    rps: float
    duration: float
    timeout: float
    started_at: float
    records: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    moves: list[dict[str, Any]] = field(default_factory=list)  # dyno → instance changes seen while running
    interrupted: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "app": self.app,
            "url": self.url,
            "rps": self.rps,
            "duration": self.duration,
            "timeout": self.timeout,
            "started_at": self.started_at,
            "interrupted": self.interrupted,
            "summary": self.summary,
            "moves": self.moves,
            "records": self.records,
        }

    def write_json(self, path: str) -> None:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_json(), f, indent=1, default=str)
            f.write("\n")


@dataclass
class Live:
    """What the live view gets every second."""

    elapsed: float
    duration: float
    sent: int
    done: int
    in_flight: int
    window: dict[str, Any]  # summarize() of the last WINDOW_S seconds
    total: dict[str, Any]  # summarize() of everything so far
    moves: list[dict[str, Any]]


def default_timeout(timescale: float) -> float:
    """Longer than the router's longest wait — the 75 s boot hold before H20 (heroku-reference §3.1), which is
    longer than the 30 s first-byte timeout — times the time scale, so that the router always speaks first."""
    return max(2.0, timescale * 75.0 + 5.0)


def check_params(rps: float, duration: float, timeout: float | None = None) -> None:
    if not 0 < rps <= MAX_RPS:
        raise InvalidInput(f"--rps must be more than 0 and at most {MAX_RPS:g}, not {rps:g}")
    if not 0 < duration <= MAX_DURATION_S:
        raise InvalidInput(f"--duration must be more than 0 and at most {MAX_DURATION_S:g} s, not {duration:g}")
    if timeout is not None and not 0 < timeout <= 120:
        raise InvalidInput(f"--timeout must be more than 0 and at most 120 s, not {timeout:g}")


def run_traffic(
    app: str,
    *,
    rps: float,
    duration: float,
    lab: str | None = None,
    path: str = "/",
    timeout: float | None = None,
    on_tick: Callable[[Live], None] | None = None,
    stop: threading.Event | None = None,
    client: Any = None,
    router_port: int | None = None,
    records: list[dict[str, Any]] | None = None,
    pending: dict[int, float] | None = None,
) -> TrafficResult:
    """Send ``round(rps × duration)`` requests at a steady rate through the lab's router; see the module doc.

    ``client`` (a ``labctl.client.Client``) is made from ``lab`` when not given; it tells the router's port,
    the time scale and, every second, which instance each dyno runs on. ``stop`` ends the run early.
    ``records``: a list the records are appended to as they come (a caller in another thread reads it live);
    ``pending``: a dict holding, while a request is in flight, its start (``time.time()``).
    """
    from labctl import const
    from labctl.client import Client

    check_params(rps, duration, timeout)
    if not path.startswith("/"):
        raise InvalidInput(f"--path must start with '/', not {path!r}")
    api = client or Client(lab or const.DEFAULT_LAB)
    status = api.lab_status()
    port = router_port or int(status["router"]["port"])
    timeout = timeout if timeout is not None else default_timeout(float(status.get("timescale", 1.0)))
    api.app_info(app)  # an unknown app is one clear error before any traffic
    url = f"http://127.0.0.1:{port}{path}"
    total = max(1, int(round(rps * duration)))
    stop = stop or threading.Event()
    result = TrafficResult(app, url, rps, duration, timeout, time.time())
    if records is not None:
        result.records = records
    runner = _Runner(api, app, url, timeout, result, stop)
    if pending is not None:
        runner.pending = pending
    runner.run(total, rps, duration, on_tick)
    result.summary = summarize(result.records)
    return result


class _Runner:
    def __init__(self, api: Any, app: str, url: str, timeout: float, result: TrafficResult, stop: threading.Event):
        self.api = api
        self.app = app
        self.url = url
        self.timeout = timeout
        self.result = result
        self.stop = stop
        self.lock = threading.Lock()
        self.local = threading.local()
        self.sessions: list[requests.Session] = []
        self.instances: dict[str, str] = {}
        self.pending: dict[int, float] = {}  # in flight: id -> start (wall clock)
        self.unexplained: dict[str, dict[str, Any]] = {}  # request id -> record still waiting for its router line
        # router lines read before their request's answer was handled (the line can come first): request id -> fields
        self.early_lines: dict[str, dict[str, str]] = {}
        self.log_after = 0  # the last router log row read
        self.sent = 0
        self.done = 0
        self.t0 = 0.0

    def _session(self) -> requests.Session:
        s = getattr(self.local, "session", None)
        if s is None:
            s = requests.Session()
            s.trust_env = False  # 127.0.0.1 only: never through a proxy from the environment
            s.headers["Host"] = f"{self.app}.localhost"
            s.headers["User-Agent"] = "labctl-traffic/1"
            self.local.session = s
            with self.lock:
                self.sessions.append(s)
        return s

    def _refresh_instances(self) -> None:
        try:
            rows = self.api.dynos(self.app)
        except Exception:  # noqa: BLE001 - a missed refresh keeps the last map; traffic goes on
            return
        fresh = {d["name"]: d["instance"] for d in rows if d.get("instance")}
        now = time.perf_counter() - self.t0
        with self.lock:
            for dyno, inst in fresh.items():
                old = self.instances.get(dyno)
                if old is not None and old != inst:
                    self.result.moves.append({"t": round(now, 3), "dyno": dyno, "from": old, "to": inst})
            self.instances.update(fresh)

    def _one(self) -> None:
        s = self._session()
        start = time.perf_counter()
        rec: dict[str, Any] = {
            "t": round(start - self.t0, 4),
            "ts": round(time.time(), 4),
            "status": None,
            "latency_ms": None,
            "dyno": None,
            "instance": None,
            "release": None,
            "code": None,
            "error": None,
        }
        rid = f"labctl-traffic-{uuid.uuid4().hex}"  # kept by the router (20-200 chars): its log line's request_id
        with self.lock:
            self.pending[id(rec)] = rec["ts"]
        try:
            resp = self._get(s, rec, rid)
            rec["status"] = resp.status_code
            rec["dyno"], rec["release"] = _named_by_body(resp)
            if rec["dyno"] is None or resp.status_code >= 500:
                self._wants_router_line(rec, rid)
        except requests.exceptions.ChunkedEncodingError:
            # The answer began and its body was cut (the dyno closed mid-response, e.g. a limit-data fault): the
            # router's line says which dyno and H18 (heroku-reference §3.2).
            rec["error"] = "truncated"
            self._wants_router_line(rec, rid)
        except requests.Timeout:
            rec["error"] = "timeout"
        except requests.ConnectionError:
            rec["error"] = "connection"
        except requests.RequestException as err:
            rec["error"] = type(err).__name__
        rec["latency_ms"] = round((time.perf_counter() - start) * 1000, 2)
        with self.lock:
            if rec["dyno"]:
                rec["instance"] = self.instances.get(rec["dyno"])
            self.result.records.append(rec)
            self.pending.pop(id(rec), None)
            self.done += 1

    def _wants_router_line(self, rec: dict[str, Any], rid: str) -> None:
        """The record takes its dyno and H-code from its router line: at once if it came, else when it does."""
        with self.lock:
            early = self.early_lines.pop(rid, None)
            if early is None:
                self.unexplained[rid] = rec
            else:
                self._explain(rec, early)

    def _get(self, s: requests.Session, rec: dict[str, Any], rid: str) -> requests.Response:
        """One GET; sent once more (``rec["retried"]``) when it went out on a keep-alive connection the router
        had just closed (``stale_keepalive``), as a browser would. Latency counts from the first try."""
        timeout = (min(self.timeout, 5.0), self.timeout)
        reused = getattr(self.local, "used", False)
        self.local.used = True
        headers = {"X-Request-Id": rid}
        try:
            return s.get(self.url, timeout=timeout, allow_redirects=False, headers=headers)
        except requests.ConnectionError as err:
            if not (reused and stale_keepalive(err)):
                raise
            rec["retried"] = True
            return s.get(self.url, timeout=timeout, allow_redirects=False, headers=headers)

    def _read_router_log(self) -> None:
        """Give records waiting for it the dyno and H-code of their ``heroku[router]`` line (by request id)."""
        from labctl.engine.router_log import parse_router_fields

        try:
            rows = self.api.log_lines(self.app, n=10000, after=self.log_after, dyno="router", source="heroku")
        except Exception:  # noqa: BLE001 - a missed read is made up by the next one
            return
        with self.lock:
            for row in rows:
                self.log_after = max(self.log_after, int(row["id"]))
                fields = parse_router_fields(row["msg"])
                rid = fields.get("request_id", "")
                rec = self.unexplained.pop(rid, None)
                if rec is not None:
                    self._explain(rec, fields)
                elif rid.startswith("labctl-traffic-") and len(self.early_lines) < 10000:
                    self.early_lines[rid] = fields

    def _explain(self, rec: dict[str, Any], fields: dict[str, str]) -> None:
        """A record gets the dyno and H-code of its router line (under ``self.lock``)."""
        rec["dyno"] = rec["dyno"] or fields.get("dyno") or None
        rec["code"] = fields.get("code") or None
        if rec["dyno"]:
            rec["instance"] = self.instances.get(rec["dyno"])

    def _settle_router_log(self) -> None:
        """At the end: wait a little for the router lines of the last requests (they follow the answer)."""
        deadline = time.monotonic() + 3.0
        while True:
            self._read_router_log()
            with self.lock:
                waiting = bool(self.unexplained)
            if not waiting or time.monotonic() > deadline:
                return
            time.sleep(0.2)

    def _ticker(self, duration: float, on_tick: Callable[[Live], None] | None, finished: threading.Event) -> None:
        while not finished.wait(1.0):
            self._refresh_instances()
            self._read_router_log()
            if on_tick is not None:
                on_tick(self.live(duration))

    def live(self, duration: float) -> Live:
        elapsed = time.perf_counter() - self.t0
        with self.lock:
            records = list(self.result.records)
            sent, done, moves = self.sent, self.done, list(self.result.moves)
        return Live(
            elapsed,
            duration,
            sent,
            done,
            sent - done,
            summarize(records, since=elapsed - WINDOW_S),
            summarize(records),
            moves,
        )

    def run(self, total: int, rps: float, duration: float, on_tick: Callable[[Live], None] | None) -> None:
        workers = int(min(MAX_WORKERS, max(4, math.ceil(rps * (self.timeout + 1)))))
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="traffic")
        self.t0 = time.perf_counter()
        self._refresh_instances()
        finished = threading.Event()
        ticker = threading.Thread(target=self._ticker, args=(duration, on_tick, finished), daemon=True)
        ticker.start()
        try:
            for i in range(total):
                delay = self.t0 + i / rps - time.perf_counter()
                if delay > 0 and self.stop.wait(delay):
                    break
                if self.stop.is_set() or time.perf_counter() - self.t0 > duration:
                    break
                pool.submit(self._one)
                with self.lock:
                    self.sent += 1
        except KeyboardInterrupt:  # Ctrl-C: stop sending, keep what was measured
            self.stop.set()
            pool.shutdown(wait=False, cancel_futures=True)
        finally:
            if self.stop.is_set():
                self.result.interrupted = True
            pool.shutdown(wait=True)  # in-flight requests end within the client timeout
            finished.set()
            ticker.join(timeout=5)
            for s in self.sessions:
                s.close()
            self._settle_router_log()
        if on_tick is not None:
            on_tick(self.live(duration))
        with self.lock:
            # a new list in one step: a reader copying it meanwhile never sees it empty (list.sort empties it)
            self.result.records[:] = sorted(self.result.records, key=lambda r: r["t"])


def _named_by_body(resp: requests.Response) -> tuple[str | None, str | None]:
    """``(dyno, release)`` named by a JSON body (the sample app's ``{"dyno": "web.1", "release": "v3", …}``)."""
    if not resp.headers.get("Content-Type", "").startswith("application/json"):
        _ = resp.content
        return None, None
    try:
        body = resp.json()
    except ValueError:
        return None, None
    if not isinstance(body, dict):
        return None, None
    dyno, release = body.get("dyno"), body.get("release")
    return (str(dyno) if dyno else None), (str(release) if release else None)
