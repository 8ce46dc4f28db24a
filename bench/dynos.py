"""Dyno lifecycle figures: restart and instance replacement (Private Space), scale 0 → 20 (Common Runtime).

Every labctl figure is timed from the moment the ``labctl`` command is spawned until a request through the
router is answered by the new dyno; every baseline from the moment the ``docker`` command is spawned until
the container answers on its published port.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import requests

from bench.harness import LOCALHOST, Baseline, BenchError, BenchLab, free_ports, http_json, wait_for

SERVE_TIMEOUT = 60.0


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


def restart(lab: BenchLab, app: str, runs: int, via: str = "cli") -> list[float]:
    """``ps:restart web.1`` in a Private Space → answered by the new web.1 (a new port on the same instance)."""
    samples = []
    for _ in range(runs):
        lab.settle(app, ["web.1"], one_sandbox_each=True)
        old = lab.via_router(app)
        if old is None:
            raise BenchError(f"{app} does not answer through the router before the restart")
        t0 = time.perf_counter()
        issued = _Issued(lab, ("ps:restart", "web.1", "-a", app), lambda: lab.api.restart(app, dyno="web.1"), via)
        samples.append(_served_by_new(lab, app, lambda b, o=old: b["dyno"] == "web.1" and b["port"] != o["port"], t0))
        issued.finish()
        _check_same_dyno(lab, app)
    return samples


def replace(lab: BenchLab, app: str, runs: int, via: str = "cli") -> list[float]:
    """``ps:stop web.1`` in a Private Space → answered by web.1 on a new instance."""
    samples = []
    for _ in range(runs):
        lab.settle(app, ["web.1"], one_sandbox_each=True)
        old = lab.via_router(app)
        if old is None:
            raise BenchError(f"{app} does not answer through the router before the stop")
        t0 = time.perf_counter()
        issued = _Issued(lab, ("ps:stop", "web.1", "-a", app), lambda: lab.api.stop(app, dyno="web.1"), via)
        samples.append(
            _served_by_new(lab, app, lambda b, o=old: b["dyno"] == "web.1" and b["instance"] != o["instance"], t0)
        )
        issued.finish()
        _check_same_dyno(lab, app)
    return samples


def _check_same_dyno(lab: BenchLab, app: str) -> None:
    """The answer came from the dyno ``ps`` shows as web.1 (same port and instance)."""
    body = wait_for(lambda: lab.via_router(app), 10, f"{app} answering")
    row = wait_for(lambda: (d := lab.dynos(app).get("web.1")) and d["state"] == "up" and d, 10, "web.1 up")
    if (body["port"], body["instance"]) != (row["port"], row["instance"]):
        raise BenchError(f"router answer {body} is not from ps's web.1 {row['instance']}:{row['port']}")


def docker_restart(base: Baseline, runs: int) -> list[float]:
    """``docker restart`` of an equal container → it answers on its published port again."""
    port = free_ports(1)[0]
    cid = base.run(port)
    url = f"http://{LOCALHOST}:{port}/"
    try:
        wait_for(lambda: http_json(url, timeout=0.5), SERVE_TIMEOUT, "baseline container answering")
        samples = []
        for _ in range(runs):
            time.sleep(0.3)
            t0 = time.perf_counter()
            base.restart(cid)  # returns once stopped and started again: any later answer is the new process
            wait_for(lambda: http_json(url, timeout=0.5), SERVE_TIMEOUT, "restarted baseline answering")
            samples.append(time.perf_counter() - t0)
        return samples
    finally:
        base.remove([cid])


def scale_up(lab: BenchLab, app: str, n: int, runs: int, keep_last: bool = True) -> list[float]:
    """``ps:scale web=0`` then time ``ps:scale web=N`` until every one of the N dynos answered through the router.

    The last run's dynos are left running when ``keep_last`` (the idle figures need them).
    """
    samples = []
    for i in range(runs):
        scale_to_zero(lab, app)
        t0 = time.perf_counter()
        proc = lab.spawn("ps:scale", f"web={n}", "-a", app)
        first_seen = _collect_dynos(lab, app, n, timeout=180.0)
        samples.append(max(first_seen.values()) - t0)
        lab.finish(proc, f"ps:scale web={n}")
        if not (keep_last and i == runs - 1):
            scale_to_zero(lab, app)
    return samples


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


def docker_run_many(base: Baseline, n: int, runs: int) -> list[float]:
    """``docker run`` ×N (one after another, as a shell loop does) until all N answer."""
    samples = []
    for _ in range(runs):
        ports = free_ports(n)
        cids: list[str] = []
        try:
            t0 = time.perf_counter()
            cids = [base.run(p) for p in ports]
            pending = set(ports)
            deadline = time.perf_counter() + 180
            while pending and time.perf_counter() < deadline:
                pending = {p for p in pending if http_json(f"http://{LOCALHOST}:{p}/", timeout=0.5) is None}
                if pending:
                    time.sleep(0.01)
            if pending:
                raise BenchError(f"{len(pending)} baseline containers never answered")
            samples.append(time.perf_counter() - t0)
        finally:
            base.remove(cids)
    return samples
