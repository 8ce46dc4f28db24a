"""Run a validated scenario: a lab of its own, the setup, the steps in order, observations, teardown.

The runner drives the lab through the same code paths a user does: the lifecycle functions of ``labctl.lab``,
the CLI entry ``labctl.cli.main`` in-process for setup and ``run`` steps, and the API client for observation
(``ps``, ``instances``, ``logs``). The router is reached on 127.0.0.1 only.

``Runner`` is the orchestration (setup, the steps in order, teardown); it runs each step with ``runner_steps``,
evaluates conditions with ``runner_conditions`` and observes the lab with ``runner_lab``. What a run found is in
``result``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import requests

from labctl.errors import LabError
from labctl.scenario.model import Scenario, Step
from labctl.scenario.result import Check as Check  # re-exported: defined here before ``result``
from labctl.scenario.result import RunResult, StepResult, _iso
from labctl.scenario.runner_lab import DEFAULT_RUN_TIMEOUT, MAX_OUTPUT, POLL_INTERVAL, CliCall
from labctl.scenario.runner_signals import StepTimeout, _ignore_interrupts, _interrupt_on_sigterm, _main_thread
from labctl.scenario.runner_steps import StepExecution
from labctl.scenario.streams import FaultSpans, Streams

SETUP_TIMEOUT = 120.0  # formation dynos up and served, after the deploys


def default_lab_name(scenario: Scenario) -> str:
    seed = f"{scenario.name}:{os.getpid()}:{time.time_ns()}"
    return "scn-" + hashlib.sha1(seed.encode()).hexdigest()[:8]


class Runner(StepExecution):
    def __init__(
        self,
        scenario: Scenario,
        *,
        lab: str | None = None,
        keep: bool = False,
        progress: Callable[[str], None] = lambda line: None,
        on_step: Callable[[StepResult], None] = lambda r: None,
        on_steps_start: Callable[[], None] = lambda: None,
        learner: Any = None,
    ):
        self.sc = scenario
        self.lab = lab or default_lab_name(scenario)
        self.keep = keep
        self.progress = _never_raising(progress)  # a closed stderr must not cost the teardown
        self.on_step = on_step
        self.on_steps_start = on_steps_start
        self.result = RunResult(scenario, self.lab)
        self.learner = learner  # an interactive.Learner: task steps wait for a person at a terminal
        if learner is not None:
            self.result.mode = "interactive"
        self.t0 = time.monotonic()
        self.wall0 = time.time()
        self.streams: Streams | None = None
        self.fault_spans = FaultSpans()
        self.fault_lock = threading.Lock()
        self.owned = False  # we brought the lab up (or tried to): ours to tear down
        self.client: Any = None
        self.http = requests.Session()
        self.http.trust_env = False  # 127.0.0.1 only: never through a proxy from the environment
        self.snaps: dict[str, dict[str, Any]] = {}
        self.sigterm: list[int] = []  # SIGTERM received during run(): redelivered after the report

    def redeliver_sigterm(self) -> None:
        """End the way a SIGTERM during the run asked, now that the lab is down and the report written
        (a CI timeout must stop the whole process, e.g. pytest, not just this scenario)."""
        if self.sigterm and _main_thread():
            os.kill(os.getpid(), signal.SIGTERM)

    # -- the run ------------------------------------------------------------------------------------
    def run(self) -> RunResult:
        res = self.result
        res.started_at = _iso()
        res.steps = [StepResult(s) for s in self.sc.steps]
        with _interrupt_on_sigterm(self.sigterm):
            try:
                self._setup()
                self.on_steps_start()
                with self._background_sampler():
                    try:
                        self._steps()
                    finally:
                        self._stop_streams()
                res.status = "pass" if res.held == res.total and not res.errors else "fail"
            except KeyboardInterrupt:
                res.status = "interrupted"
                res.message = "interrupted (SIGTERM)" if self.sigterm else "interrupted (Ctrl-C)"
                self._close_open_step("interrupted")
            except LabError as err:
                res.status = "error"
                res.message = str(err)
                if res.setup.get("status") == "running":
                    res.setup.update(status="error", message=str(err), end=self._t())
            except Exception as err:  # noqa: BLE001 - a bug of ours: reported in the result, the lab still goes
                res.status = "error"
                res.message = f"internal error: {type(err).__name__}: {err}"
                self._close_open_step(res.message)
            finally:
                try:
                    with _ignore_interrupts():  # draining the streams must not let a 2nd Ctrl-C skip teardown
                        self._stop_streams()
                finally:
                    self._teardown()
        res.ended_at = _iso()
        res.duration_s = self._t()
        return res

    # -- setup --------------------------------------------------------------------------------------
    def _setup(self) -> None:
        from labctl import lab as lablib
        from labctl.client import Client
        from labctl.labdir import LabDir

        sc, setup = self.sc, self.result.setup
        setup.update(status="running", start=self._t(), commands=[])
        d = LabDir(self.lab)
        if d.exists():  # up, or left behind: either way not ours to reuse and then remove
            raise LabError(
                f"Lab {self.lab!r} already exists ({d.path}): a scenario runs in a lab of its own. "
                f"Pass another --lab, or run `labctl down --lab {self.lab}` first"
            )
        self.owned = True
        self.progress(f"Bringing up lab {self.lab} (time scale {sc.timescale:g})…")
        info = lablib.up(
            self.lab,
            self.progress,
            http_port=0,
            timescale=sc.timescale,
            provision_time=sc.provision_time,
            cycle_period=sc.cycle_period,
            placement=sc.placement,
        )
        self.result.router_port = info["router"]["port"]
        self.client = Client(self.lab, timeout=30)
        self.streams = Streams(self.lab, self.result.router_port, self._t, self.wall0, sc.timescale)
        for space in sc.spaces:
            self._setup_cli("spaces:create", space)
        for app in sc.apps:
            self._setup_cli("apps:create", app.name, *(["--space", app.space] if app.space else []))
            if app.config:
                self._setup_cli("config:set", *(f"{k}={v}" for k, v in app.config.items()), "-a", app.name)
            if app.source is not None:
                self.progress(f"Deploying {app.source_text} to {app.name}…")
                self._setup_cli("deploy", str(app.source), "-a", app.name)
            if app.formation:
                self._setup_cli("ps:scale", *(f"{k}={v}" for k, v in app.formation.items()), "-a", app.name)
            # Features last: the setup's own first deploy and scale are not what a scenario is about (with
            # preboot on, the first deploy would lock the formation until its switch).
            for feature in app.features:
                self._setup_cli("features:enable", feature, "-a", app.name)
        self.progress("Waiting for the formation to be up and served…")
        self._wait_formation()
        setup.update(status="done", end=self._t())
        self._sample()

    def _setup_cli(self, *args: str) -> CliCall:
        self.result.setup["commands"].append("labctl " + " ".join(args))
        try:
            call = self._lab_cli(list(args), timeout=SETUP_TIMEOUT * 3)
        except StepTimeout:
            raise LabError(
                f"setup failed: labctl {' '.join(args)} did not finish within {SETUP_TIMEOUT * 3:.0f}s"
            ) from None
        if call.code != 0:
            last = (call.err.strip() or call.out.strip() or f"exit {call.code}").splitlines()[-1].strip(" ▸")
            raise LabError(f"setup failed: labctl {' '.join(args)}: {last}")
        return call

    def _wait_formation(self) -> None:
        deadline = time.monotonic() + SETUP_TIMEOUT
        pending = [a.name for a in self.sc.apps if a.source is not None]
        last = ""
        while pending:
            app = pending[0]
            formation = self.client.formation(app)
            want = [f"{p['type']}.{n}" for p in formation for n in range(1, p["quantity"] + 1)]
            dynos = self._dynos(app)
            down = [n for n in want if dynos.get(n, {}).get("state") != "up"]
            answer = "200"
            if not down and any(n.startswith("web.") for n in want):
                try:
                    resp = self._get(app)
                    answer = str(resp.status_code)
                except requests.RequestException as err:
                    answer = type(err).__name__
            if not down and answer == "200":
                pending.pop(0)
                continue
            last = f"{app}: {', '.join(down) + ' not up' if down else f'the router answers {answer}, not 200'}"
            if time.monotonic() > deadline:
                raise LabError(f"setup failed: formation not up within {SETUP_TIMEOUT:.0f}s ({last})")
            self._sample()
            time.sleep(POLL_INTERVAL)

    # -- steps --------------------------------------------------------------------------------------
    def _steps(self) -> None:
        stop = False
        for r in self.result.steps:
            if stop:
                r.status, r.message = "skipped", "skipped: an earlier wait_for timed out"
                self.on_step(r)
                continue
            r.start, r.started_at = self._t(), _iso()
            self._sample()
            try:
                getattr(self, f"_step_{r.step.kind}")(r)
            except LabError as err:
                r.status, r.message = "error", str(err)
            r.end, r.ended_at = self._t(), _iso()
            self._sample()
            self.on_step(r)
            if r.step.kind == "wait_for" and r.status != "pass":
                stop = True
            if r.step.kind == "task" and r.extra.get("graded_by") == "quit":
                raise KeyboardInterrupt

    def _close_open_step(self, why: str) -> None:
        for r in self.result.steps:
            if r.start is not None and r.end is None:
                r.end, r.ended_at, r.status, r.message = self._t(), _iso(), "error", why
                self.on_step(r)

    def _stop_streams(self) -> None:
        if self.streams is None:
            return
        with contextlib.suppress(Exception):
            self.streams.stop_all()
        self.result.traffic = self.streams.to_json()
        self.result.faults = self.fault_spans.to_json()

    # -- teardown -----------------------------------------------------------------------------------
    def _teardown(self) -> None:
        from labctl import lab as lablib

        td = self.result.teardown
        if not self.owned:
            td.update(status="none", message="nothing was set up")
            return
        if self.keep:
            td.update(status="kept", message=f"lab {self.lab} kept: `labctl down --lab {self.lab}` removes it")
            self.progress(f"Keeping lab {self.lab} (--keep): `labctl down --lab {self.lab}` removes it.")
            return
        self.progress(f"Tearing down lab {self.lab}…")
        start = self._t()
        with _ignore_interrupts():
            if self.sc.teardown and self.client is not None:
                td["steps"] = [self._teardown_step(s) for s in self.sc.teardown]
            try:
                counts = lablib.down(self.lab)
                td.update(status="done", removed=counts)
            except Exception as err:  # noqa: BLE001 - report it; the run's result stands
                td.update(status="failed", message=f"{type(err).__name__}: {err} -- run `labctl down --lab {self.lab}`")
                self.progress(f"Teardown of lab {self.lab} failed: {err}; run `labctl down --lab {self.lab}`")
        td.update(start=start, end=self._t())

    def _teardown_step(self, s: Step) -> dict[str, Any]:
        try:
            call = self._lab_cli(s.argv, timeout=DEFAULT_RUN_TIMEOUT)
        except (StepTimeout, KeyboardInterrupt):
            return {"command": s.command, "exit_code": None, "output": "did not finish"}
        except Exception as err:  # noqa: BLE001 - teardown goes on; the lab is removed anyway
            return {"command": s.command, "exit_code": None, "output": f"{type(err).__name__}: {err}"}
        self.progress(f"Teardown: labctl {s.command} -> exit {call.code}")
        return {"command": s.command, "exit_code": call.code, "output": (call.out + call.err)[-MAX_OUTPUT:]}


def _never_raising(progress: Callable[[str], None]) -> Callable[[str], None]:
    """``progress`` that drops its line when it cannot be written: a pipe whose reader went away (``labctl scenario
    run … 2>&1 | head``) raises BrokenPipeError, and the teardown that follows must still remove the lab."""

    def say(line: str) -> None:
        try:
            progress(line)
        except OSError:
            pass

    return say
