"""The runner's hands on its lab: observation and labctl commands in-process.

Observation goes through the API client (``ps``, ``instances``, ``logs``) and the router on 127.0.0.1; the
background sampler records every dyno's instance, container and state for the report's timeline. Commands run
through the CLI entry ``labctl.cli.main`` in-process, as a user would type them. ``LabAccess`` is the base of
``Runner``: the state it declares is set by ``Runner.__init__``.
"""

from __future__ import annotations

import contextlib
import io
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import requests

from labctl.errors import LabError
from labctl.scenario.model import Scenario
from labctl.scenario.result import RunResult
from labctl.scenario.runner_signals import _alarm
from labctl.scenario.streams import FaultSpans, Streams
from labctl.traffic import stale_keepalive

POLL_INTERVAL = 0.3
SAMPLE_INTERVAL = 0.25
HTTP_TIMEOUT = 10.0
MAX_OUTPUT = 4000
DEFAULT_RUN_TIMEOUT = 120.0


@dataclass
class CliCall:
    code: int
    out: str
    err: str


class LabAccess:
    """Observation of the lab and labctl commands in it, for the setup, the steps and the conditions."""

    # set by Runner.__init__
    sc: Scenario
    lab: str
    result: RunResult
    t0: float
    streams: Streams | None
    fault_spans: FaultSpans
    fault_lock: threading.Lock
    client: Any
    http: requests.Session
    snaps: dict[str, dict[str, Any]]

    def _t(self) -> float:
        return round(time.monotonic() - self.t0, 3)

    # -- observation --------------------------------------------------------------------------------
    def _dynos(self, app: str) -> dict[str, dict[str, Any]]:
        return {d["name"]: d for d in self.client.dynos(app)}

    def _snap_dyno(self, snap: str, app: str, dyno: str) -> dict[str, Any] | None:
        """The dyno at a snapshot (None when it did not run then, or the snapshot step itself failed)."""
        return self.snaps.get(snap, {}).get("dynos", {}).get(app, {}).get(dyno)

    def _get(self, app: str, path: str = "/") -> requests.Response:
        """One GET through the router; sent once more when it met a keep-alive connection the router closed
        on a reload just then, as a browser would (``traffic.stale_keepalive``)."""

        def get() -> requests.Response:
            return self.http.get(
                f"http://127.0.0.1:{self.result.router_port}{path}",
                headers={"Host": f"{app}.localhost"},
                timeout=HTTP_TIMEOUT,
                allow_redirects=False,
            )

        try:
            return get()
        except requests.ConnectionError as err:
            if not stale_keepalive(err):
                raise
            return get()

    def _sample(self, client: Any = None) -> None:
        """One timeline point per app: every dyno's instance, container and state (for the report's picture)."""
        client = client or self.client
        if client is None:
            return
        for app in self.sc.app_names:
            try:
                dynos = {d["name"]: d for d in client.dynos(app)}
            except LabError:
                continue
            t = self._t()
            self.result.timeline.append(
                {
                    "t": t,
                    "app": app,
                    "dynos": {
                        n: {"instance": d["instance"], "container": _short(d["container"]), "state": d["state"]}
                        for n, d in sorted(dynos.items())
                    },
                }
            )
        with self.fault_lock, contextlib.suppress(LabError):  # one GET+observe at a time: spans stay in order
            self.fault_spans.observe(self._t(), client.faults())

    @contextlib.contextmanager
    def _background_sampler(self) -> Iterator[None]:
        """Sample the dynos every SAMPLE_INTERVAL while the steps run, also while a command blocks (ps:stop
        waits for the dyno to stop): the timeline then shows the states in between. Its own API client."""
        from labctl.client import Client

        stop = threading.Event()
        client = Client(self.lab, timeout=5)

        def loop() -> None:
            deadline = time.monotonic() + 24 * 3600  # a backstop; the event ends it
            while not stop.wait(SAMPLE_INTERVAL) and time.monotonic() < deadline:
                with contextlib.suppress(Exception):
                    self._sample(client)

        thread = threading.Thread(target=loop, name="scenario-sampler", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=10)
            self.result.timeline.sort(key=lambda s: s["t"])

    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:  # the background sampler records the timeline meanwhile
            time.sleep(min(SAMPLE_INTERVAL, left))

    def _lab_cli(self, argv: list[str], timeout: float) -> CliCall:
        """A labctl command in the scenario's lab: ``--lab`` goes right after the command name, so that
        ``run``'s one-off command line (everything after its options) stays intact."""
        return self._cli([argv[0], "--lab", self.lab, *argv[1:]], timeout)

    def _cli(self, argv: list[str], timeout: float) -> CliCall:
        """``labctl.cli.main`` in-process with captured output; Ctrl-C inside it still interrupts the run."""
        from labctl.cli import main

        out, err = io.StringIO(), io.StringIO()
        with _alarm(timeout), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(argv)
        if code == 130 and "Interrupted." in err.getvalue():
            raise KeyboardInterrupt
        return CliCall(code, out.getvalue(), err.getvalue())


def _short(container: str | None) -> str | None:
    return container[:12] if container else None
