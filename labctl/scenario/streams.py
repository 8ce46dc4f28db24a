"""What a scenario run watches besides its steps: named traffic streams and instance faults over time.

A ``Stream`` is ``labctl.traffic.run_traffic`` in a thread of its own; its records are read live by the
conditions (``checks.select``/``checks.evaluate``), with their time converted to the run's clock (seconds since
the run started), the clock of the steps, snapshots and the report's picture. ``FaultSpans`` turns the
controller's fault list, polled with the dyno samples, into ``{instance, kind, start, end}`` spans.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from labctl.errors import LabError


@dataclass
class Stream:
    name: str
    app: str
    path: str
    rps: float
    duration: float
    step: int
    start: float  # run seconds
    wall0: float  # time.time() of the run's t = 0: records carry ``ts`` (wall) → run seconds
    timeout: float = 0.0  # the client timeout (Streams fills in the default)
    end: float | None = None
    status: str = "running"  # running | done | stopped | error
    error: str = ""
    records: list[dict[str, Any]] = field(default_factory=list)  # appended live by the traffic threads
    pending: dict[int, float] = field(default_factory=dict)  # requests in flight: id -> start (wall clock)
    stop_event: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def run_records(self) -> list[dict[str, Any]]:
        """The records so far, each with ``t`` in run seconds (a copy: the threads keep appending)."""
        out = []
        for r in list(self.records):
            out.append({**r, "t": round(r["ts"] - self.wall0, 4)})
        return out

    def settle(self, t_to: float) -> None:
        """Wait until every request started at or before run second ``t_to`` has its answer (or its client
        timeout): a window's slowest requests, and those about to fail, are then part of what it measures."""
        deadline = time.monotonic() + self.timeout + 2.0
        cutoff = self.wall0 + t_to
        while time.monotonic() < deadline:
            if not any(ts <= cutoff for ts in list(self.pending.values())):
                return
            time.sleep(0.05)

    def join(self, timeout: float) -> bool:
        if self.thread is not None:
            self.thread.join(timeout)
        return not self.running

    def to_json(self) -> dict[str, Any]:
        from labctl.traffic import summarize

        records = self.run_records()
        return {
            "name": self.name,
            "app": self.app,
            "path": self.path,
            "rps": self.rps,
            "duration": self.duration,
            "step": self.step,
            "start": self.start,
            "end": self.end,
            "status": self.status,
            "error": self.error or None,
            "summary": summarize(records),
            "records": [
                {k: r.get(k) for k in ("t", "status", "latency_ms", "dyno", "instance", "release", "code", "error")}
                for r in records
            ],
        }


class Streams:
    def __init__(self, lab: str, router_port: int, clock: Any, wall0: float, timescale: float = 1.0):
        from labctl.traffic import default_timeout

        self.default_timeout = default_timeout(timescale)  # a stream's client timeout when it names none
        self.lab = lab
        self.router_port = router_port
        self.clock = clock  # () -> run seconds
        self.wall0 = wall0
        self.by_name: dict[str, Stream] = {}

    def start(
        self, name: str, app: str, *, rps: float, duration: float, path: str, timeout: float | None, step: int
    ) -> Stream:
        from labctl.client import Client
        from labctl.traffic import run_traffic

        s = Stream(name, app, path, rps, duration, step, self.clock(), self.wall0, timeout or self.default_timeout)
        client = Client(self.lab, timeout=10)

        def body() -> None:
            try:
                run_traffic(
                    app,
                    rps=rps,
                    duration=duration,
                    path=path,
                    timeout=s.timeout,
                    stop=s.stop_event,
                    client=client,
                    router_port=self.router_port,
                    records=s.records,
                    pending=s.pending,
                )
                s.status = "stopped" if s.stop_event.is_set() else "done"
            except (LabError, OSError) as err:
                s.status, s.error = "error", str(err)
            except Exception as err:  # noqa: BLE001 - a stream's failure is reported, never a traceback
                s.status, s.error = "error", f"{type(err).__name__}: {err}"
            finally:
                s.end = self.clock()

        s.thread = threading.Thread(target=body, name=f"traffic-{name}", daemon=True)
        self.by_name[name] = s
        s.thread.start()
        return s

    def stop(self, name: str) -> Stream:
        s = self.by_name[name]
        s.stop_event.set()
        s.join(s.timeout + 10.0)
        return s

    def wait(self, name: str) -> Stream:
        s = self.by_name[name]
        left = s.start + s.duration - self.clock()
        s.join(max(0.0, left) + s.timeout + 10.0)
        return s

    def stop_all(self) -> None:
        for s in self.by_name.values():
            s.stop_event.set()
        for s in self.by_name.values():
            s.join(s.timeout + 10.0)

    def to_json(self) -> list[dict[str, Any]]:
        return [s.to_json() for s in self.by_name.values()]


class FaultSpans:
    """Instance faults as seen by polling ``GET /faults``: one span per fault, from first seen to gone."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.open: dict[tuple[str, str], dict[str, Any]] = {}
        self.spans: list[dict[str, Any]] = []

    def observe(self, t: float, faults: list[dict[str, Any]]) -> None:
        seen = set()
        with self.lock:
            for f in faults:
                key = (f.get("instance", ""), f.get("id") or f.get("description") or f.get("kind", ""))
                seen.add(key)
                span = self.open.get(key)
                if span is None:
                    span = {
                        "instance": f.get("instance"),
                        "router": f.get("router"),  # a router-end fault: on the path to every dyno behind it
                        "kind": f.get("kind"),
                        "detail": f.get("description"),
                        "start": t,
                        "end": None,
                        "dynos": list(f.get("dynos") or []),
                    }
                    self.open[key] = span
                    self.spans.append(span)
                else:
                    for d in f.get("dynos") or []:
                        if d not in span["dynos"]:
                            span["dynos"].append(d)
            for key in [k for k in self.open if k not in seen]:
                self.open.pop(key)["end"] = t

    def to_json(self) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(s) for s in sorted(self.spans, key=lambda s: s["start"])]
