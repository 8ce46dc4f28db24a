"""Is the traffic through the router healthy, and since when? (pure; docs/drills.md "Grading").

Shared by the drills (time to mitigate) and ``scenario compare`` (time to recover). A request counts in the
window in which it *finished* (``ts`` + latency): a request still hanging is not counted yet, and a window in which
too few requests finished is unhealthy (everything hangs). A window is healthy when enough requests finished, at
most ``max_error_rate`` of them failed (5xx or no answer) and their p95 is at most ``p95_ms``.

A drill of a release incident also watches the formation (``formation``): in a Private Space a release that never
boots (R10) stalls its rolling deploy at the first batch while the other dynos keep serving the old release, so the
traffic can stay healthy while a web dyno crashes again and again. There a window in which a web dyno was crashed
shows the trouble too, and a window is healthy only if every web dyno was up throughout.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from labctl.traffic import is_error, percentile

WINDOW_S = 3.0
STEP_S = 0.5
HOLD_S = 4.0  # healthy this long, to the end of what was measured, counts as mitigated
MAX_ERROR_RATE = 0.05
MIN_P95_MS = 500.0  # a shared, busy machine answers a healthy p95 of 300-400 ms at times
P95_FACTOR = 3.0


@dataclass(frozen=True)
class Thresholds:
    p95_ms: float
    max_error_rate: float = MAX_ERROR_RATE
    min_share: float = 0.5  # of the requests sent in a window that must have finished in it

    def to_json(self) -> dict[str, Any]:
        return {"p95_ms": round(self.p95_ms, 1), "max_error_rate": self.max_error_rate}


def thresholds(baseline: list[dict[str, Any]]) -> Thresholds:
    """p95 at most max(500 ms, 3 × the healthy p50), errors at most 5 %. The healthy *median*: a few slow
    answers while the machine is busy (other labs on it) must not lift the bar for the whole run."""
    lat = [r["latency_ms"] for r in baseline if r.get("latency_ms") is not None and not is_error(r)]
    base = percentile(lat, 50) or 0.0
    return Thresholds(max(MIN_P95_MS, P95_FACTOR * base))


def done_at(rec: dict[str, Any]) -> float:
    return float(rec["t"]) + (rec.get("latency_ms") or 0.0) / 1000.0


@dataclass(frozen=True)
class Formation:
    """One look at the app's web dynos: ``whole`` when every one is up, ``broken`` when one has crashed."""

    t: float
    whole: bool
    broken: bool


def formation(timeline: list[dict[str, Any]], t0: float) -> list[Formation]:
    """The web dynos of a drill's ``timeline.jsonl`` rows (``{"ts", "dynos": {name: {"state", "container"}}}``),
    in time order. A crash shows as ``crashed``, or, when the look every half second missed that state (a dyno
    is restarted at once after its first crash), as a new container for a dyno that was not up before it."""
    out = []
    last: dict[str, tuple[str | None, str | None]] = {}  # dyno -> (container, state) at the previous look
    for row in sorted(timeline, key=lambda r: float(r["ts"])):
        webs = {n: d for n, d in (row.get("dynos") or {}).items() if n.startswith("web.")}
        broken = False
        for name, d in webs.items():
            cid, state = d.get("container"), d.get("state")
            before_cid, before_state = last.get(name, (None, None))
            if state == "crashed" or (before_cid and cid and cid != before_cid and before_state != "up"):
                broken = True
            last[name] = (cid, state)
        whole = bool(webs) and not broken and all(d.get("state") == "up" for d in webs.values())
        out.append(Formation(float(row["ts"]) - t0, whole, broken))
    return out


@dataclass(frozen=True)
class Window:
    start: float
    end: float
    count: int
    errors: int
    p95: float | None
    healthy: bool
    troubled: bool | None = None  # the trouble shows in it (None: not healthy); see ``windows``' formation

    @property
    def trouble(self) -> bool:
        return not self.healthy if self.troubled is None else self.troubled

    def to_json(self) -> dict[str, Any]:
        return {
            "start": round(self.start, 2),
            "end": round(self.end, 2),
            "count": self.count,
            "errors": self.errors,
            "p95": self.p95,
            "healthy": self.healthy,
        }


def windows(
    records: list[dict[str, Any]],
    since: float,
    until: float,
    rps: float,
    thr: Thresholds,
    width: float = WINDOW_S,
    formation: list[Formation] | None = None,
) -> list[Window]:
    """Sliding windows ``[e - width, e]`` for e = since + width, + STEP_S, … ≤ until.

    With ``formation`` (a release incident), a window shows trouble when its traffic is unhealthy or a web dyno
    was crashed in it, and is healthy only when its traffic is and every web dyno was up in it."""
    finished = sorted(((done_at(r), r) for r in records if r.get("t") is not None), key=lambda x: x[0])
    out: list[Window] = []
    need = max(3, int(thr.min_share * rps * width))
    e = since + width
    while e <= until + 1e-9:
        rs = [r for d, r in finished if e - width <= d < e]
        errors = sum(1 for r in rs if is_error(r))
        lat = [r["latency_ms"] for r in rs if r.get("latency_ms") is not None]
        p95 = percentile(lat, 95)
        healthy = len(rs) >= need and errors <= thr.max_error_rate * len(rs) and (p95 or 0.0) <= thr.p95_ms
        troubled = None
        if formation is not None:
            looks = [f for f in formation if e - width <= f.t < e]
            troubled = not healthy or any(f.broken for f in looks)
            healthy = healthy and all(f.whole for f in looks)
        out.append(Window(e - width, e, len(rs), errors, round(p95, 1) if p95 is not None else None, healthy, troubled))
        e += STEP_S
    return out


def first_unhealthy(ws: list[Window]) -> float | None:
    """When the trouble first showed (the end of the first unhealthy window), or None."""
    return next((w.end for w in ws if w.trouble), None)


def recovered_at(ws: list[Window], hold: float = HOLD_S) -> float | None:
    """The start of the healthy stretch that lasts to the end — if it follows trouble and lasts ``hold`` seconds.

    The start is that of the stretch's first window: the moment after which nothing bad finished."""
    i = len(ws)
    while i > 0 and ws[i - 1].healthy:
        i -= 1
    if i == len(ws) or (len(ws) - i - 1) * STEP_S < hold or not any(w.trouble for w in ws[:i]):
        return None
    return ws[i].start


def budget(records: list[dict[str, Any]], since: float, until: float, rps: float, thr: Thresholds) -> dict[str, Any]:
    """The error budget from ``since`` on: failed requests, p95, time to recover (None: not recovered)."""
    after = [r for r in records if r["t"] >= since]
    lat = [r["latency_ms"] for r in after if r.get("latency_ms") is not None]
    ws = windows(records, since, until, rps, thr)
    back = recovered_at(ws)
    hurt = first_unhealthy(ws)
    return {
        "requests": len(after),
        "failed": sum(1 for r in after if is_error(r)),
        "p95_ms": percentile(lat, 95),
        "trouble_at": hurt,
        "recovered_at": back,
        "time_to_recover_s": round(back - since, 2) if back is not None else None,
        "thresholds": thr.to_json(),
    }
