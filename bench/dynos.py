"""Dyno lifecycle figures: restart and instance replacement (Private Space), scale 0 → 20 (Common Runtime).

Every labctl figure is timed from the moment the ``labctl`` command is spawned until a request through the
router is answered by the new dyno; the raw twins are in ``bench/raw.py``. One call is one run: the caller
alternates them with their twins (ABAB…).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import requests

from bench.harness import BenchError, BenchLab, wait_for

SERVE_TIMEOUT = 60.0
PAUSE = 0.3  # before each timed run, on both sides: the last run's leftovers go quiet


def _served_by_new(lab: BenchLab, app: str, is_new: Callable[[dict], bool], t0: float) -> float:
    """Seconds from ``t0`` until the router answers with a body that ``is_new`` accepts."""
    with requests.Session() as session:
        wait_for(
            lambda: (b := lab.via_router(app, 1.0, session)) is not None and is_new(b),
            SERVE_TIMEOUT,
            f"{app} served by the new web.1",
        )
        return time.perf_counter() - t0


class _Issued:
    """A dyno command under way: the ``labctl`` CLI as a subprocess, or the API call (no CLI start) in a thread."""

    def __init__(self, lab: BenchLab, args: tuple[str, ...], api_call: Callable[[], object], via: str):
        self.what = " ".join(args)
        self.lab = lab
        self.proc = lab.spawn(*args) if via == "cli" else None
        self.error: Exception | None = None
        self.thread = None
        if self.proc is None:
            self.thread = threading.Thread(target=self._call, args=(api_call,), daemon=True)
            self.thread.start()

    def _call(self, api_call: Callable[[], object]) -> None:
        try:
            api_call()
        except Exception as err:  # noqa: BLE001 - re-raised by finish() in the caller's thread
            self.error = err

    def finish(self) -> None:
        if self.proc is not None:
            self.lab.finish(self.proc, self.what)
            return
        assert self.thread is not None
        self.thread.join(timeout=60)
        if self.thread.is_alive() or self.error:
            raise BenchError(f"API {self.what} failed: {self.error or 'no answer in 60 s'}")


def restart_once(lab: BenchLab, app: str, via: str = "cli") -> float:
    """``ps:restart web.1`` in a Private Space → answered by the new web.1 (a new port on the same instance)."""
    lab.settle(app, ["web.1"], one_sandbox_each=True)
    old = lab.via_router(app)
    if old is None:
        raise BenchError(f"{app} does not answer through the router before the restart")
    time.sleep(PAUSE)
    t0 = time.perf_counter()
    issued = _Issued(lab, ("ps:restart", "web.1", "-a", app), lambda: lab.api.restart(app, dyno="web.1"), via)
    took = _served_by_new(lab, app, lambda b, o=old: b["dyno"] == "web.1" and b["port"] != o["port"], t0)
    issued.finish()
    _check_same_dyno(lab, app)
    return took


def stop_once(lab: BenchLab, app: str) -> float:
    """``ps:stop web.1`` in a Private Space → answered by web.1 on a new instance."""
    lab.settle(app, ["web.1"], one_sandbox_each=True)
    old = lab.via_router(app)
    if old is None:
        raise BenchError(f"{app} does not answer through the router before the stop")
    time.sleep(PAUSE)
    t0 = time.perf_counter()
    issued = _Issued(lab, ("ps:stop", "web.1", "-a", app), lambda: lab.api.stop(app, dyno="web.1"), "cli")
    took = _served_by_new(lab, app, lambda b, o=old: b["dyno"] == "web.1" and b["instance"] != o["instance"], t0)
    issued.finish()
    _check_same_dyno(lab, app)
    return took


def _check_same_dyno(lab: BenchLab, app: str) -> None:
    """The answer came from the dyno ``ps`` shows as web.1 (same port and instance)."""
    body = wait_for(lambda: lab.via_router(app), 10, f"{app} answering")
    row = wait_for(lambda: (d := lab.dynos(app).get("web.1")) and d["state"] == "up" and d, 10, "web.1 up")
    if (body["port"], body["instance"]) != (row["port"], row["instance"]):
        raise BenchError(f"router answer {body} is not from ps's web.1 {row['instance']}:{row['port']}")


def scale_once(lab: BenchLab, app: str, n: int) -> float:
    """``ps:scale web=0`` (untimed), then ``ps:scale web=N`` until each of the N dynos answered through the router.

    The dynos are left running (the idle figures need them)."""
    scale_to_zero(lab, app)
    time.sleep(PAUSE)
    t0 = time.perf_counter()
    proc = lab.spawn("ps:scale", f"web={n}", "-a", app)
    first_seen = _collect_dynos(lab, app, n, timeout=180.0)
    took = max(first_seen.values()) - t0
    lab.finish(proc, f"ps:scale web={n}")
    return took


def scale_to_zero(lab: BenchLab, app: str) -> None:
    lab.cli("ps:scale", "web=0", "-a", app)
    wait_for(lambda: not lab.dynos(app) and not lab.containers("dyno", app), 120, f"{app} scaled to 0", 0.1)


def _collect_dynos(lab: BenchLab, app: str, n: int, timeout: float) -> dict[str, float]:
    """When each dyno name was first seen in an answer through the router (bounded by ``timeout``)."""
    session = requests.Session()
    seen: dict[str, float] = {}
    deadline = time.perf_counter() + timeout
    polls = 0
    while len(seen) < n and time.perf_counter() < deadline and polls < 200_000:
        polls += 1
        body = lab.via_router(app, 2.0, session)
        if body is None:
            time.sleep(0.01)
            continue
        seen.setdefault(body["dyno"], time.perf_counter())
    session.close()
    if len(seen) < n:
        raise BenchError(f"only {len(seen)} of {n} dynos of {app} answered within {timeout:.0f} s")
    return seen
