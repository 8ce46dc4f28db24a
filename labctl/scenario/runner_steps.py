"""Running one step of a scenario: each kind's ``_step_<kind>`` method, and the polling of conditions.

``Runner._steps`` calls them in order; an interactive task hands its step to the learner (``interactive``), who
calls back ``poll``, ``check_now`` and ``run_learner_command``.
"""

from __future__ import annotations

import time
from typing import Any

from labctl.errors import LabError
from labctl.scenario.model import Condition
from labctl.scenario.result import Check, StepResult, _iso
from labctl.scenario.runner_conditions import ConditionChecks
from labctl.scenario.runner_lab import DEFAULT_RUN_TIMEOUT, MAX_OUTPUT, POLL_INTERVAL, CliCall
from labctl.scenario.runner_signals import StepTimeout

DEFAULT_FAULT_TIMEOUT = 60.0


class StepExecution(ConditionChecks):
    """The step execution of ``Runner``: one ``_step_<kind>`` method per step kind."""

    learner: Any  # set by Runner.__init__

    # -- steps --------------------------------------------------------------------------------------
    def _step_snapshot(self, r: StepResult) -> None:
        name = r.step.snapshot
        assert name is not None
        dynos = {}
        for app in self.sc.app_names:
            dynos[app] = {
                n: {"instance": d["instance"], "container": d["container"], "state": d["state"]}
                for n, d in sorted(self._dynos(app).items())
            }
        snap = {"name": name, "t": self._t(), "at": _iso(), "step": r.step.number, "dynos": dynos}
        self.snaps[name] = snap
        self.result.snapshots.append(snap)
        r.status = "done"
        r.measured = "; ".join(
            f"{app}: " + (", ".join(f"{n}@{v['instance']}" for n, v in ds.items()) or "no dynos")
            for app, ds in dynos.items()
        )

    def _step_wait(self, r: StepResult) -> None:
        assert r.step.duration is not None
        self._sleep(r.step.duration.seconds)
        r.status, r.measured = "done", f"{r.step.duration.seconds:g}s"

    def _step_run(self, r: StepResult) -> None:
        s = r.step
        assert s.duration is not None
        try:
            call = self._lab_cli(s.argv, timeout=s.duration.seconds)
        except StepTimeout:
            r.status = "error"
            r.message = f"labctl {s.command} did not finish within {s.duration.text}"
            r.checks = [Check("exit", False, f"still running after {s.duration.text}", f"exit {s.expect_exit}")]
            r.measured, r.expected = r.checks[0].measured, r.checks[0].expected
            return
        output = call.out + call.err
        r.exit_code, r.output = call.code, output[-MAX_OUTPUT:]
        r.checks.append(Check("exit", call.code == s.expect_exit, f"exit {call.code}", f"exit {s.expect_exit}"))
        if s.expect_output is not None:
            found = s.expect_output in output
            first = (output.strip().splitlines() or ["(no output)"])[-1][:80]
            r.checks.append(
                Check(
                    "output",
                    found,
                    f"output has {s.expect_output!r}" if found else f"output without it (last line: {first!r})",
                    f"output has {s.expect_output!r}",
                )
            )
        self._conclude(r)
        if call.code != s.expect_exit:
            tail = (call.err.strip() or call.out.strip()).splitlines()
            r.message = tail[-1].strip(" ▸") if tail else ""

    def _step_expect(self, r: StepResult) -> None:
        assert r.step.condition is not None
        r.checks = self._evaluate(r.step.condition)
        self._conclude(r)

    def _step_wait_for(self, r: StepResult) -> None:
        s = r.step
        assert s.condition is not None and s.duration is not None
        self.poll(r, s.condition, s.duration.seconds, s.duration.text)

    def poll(self, r: StepResult, cond: Condition, seconds: float, text: str) -> None:
        """Evaluate ``cond`` every POLL_INTERVAL until it holds or ``seconds`` have passed; conclude ``r``."""
        start = time.monotonic()
        deadline = start + seconds
        error = ""
        for _ in range(100_000):  # bounded by the deadline below; the count is a backstop
            try:
                r.checks, error = self._evaluate(cond, deadline), ""
            except LabError as err:  # a transient controller hiccup: keep polling until the deadline
                r.checks, error = [], str(err)
            if r.checks and all(c.passed for c in r.checks):
                break
            if time.monotonic() >= deadline:
                break
            time.sleep(max(0.0, min(POLL_INTERVAL, deadline - time.monotonic())))
        took = time.monotonic() - start
        self._conclude(r)
        if r.status == "pass":
            r.message = f"met after {took:.1f}s"
            r.measured += f" (after {took:.1f}s)"
        else:
            r.status = "fail"
            r.message = f"not met within {text}" + (f" (last error: {error})" if error else "")
            if not r.checks:
                r.checks = [Check("condition", False, f"error: {error}", cond.describe())]
                r.measured, r.expected = r.checks[0].measured, r.checks[0].expected
            else:
                r.measured += f" (after {took:.1f}s)"

    def check_now(self, cond: Condition) -> list[Check]:
        """One evaluation (an interactive task checks after each command and every second)."""
        try:
            return self._evaluate(cond, deadline=time.monotonic())  # a deadline: never wait for a stream's end
        except LabError as err:
            return [Check("condition", False, f"error: {err}", cond.describe())]

    def _step_traffic(self, r: StepResult) -> None:
        t = r.step.traffic
        assert t is not None and self.streams is not None
        if t.action == "start":
            assert t.duration is not None
            stream = self.streams.start(
                t.name,
                t.app,
                rps=t.rps,
                duration=t.duration.seconds,
                path=t.path,
                timeout=t.timeout,
                step=r.step.number,
            )
            time.sleep(0.2)  # a stream that cannot start (unknown app, no router) fails at once: see it here
            if stream.status == "error":
                r.status, r.message = "error", f"traffic {t.name!r} could not start: {stream.error}"
                return
            r.status, r.measured = "done", f"sending {t.rps:g} req/s to {t.app}{t.path}"
            return
        stream = self.streams.stop(t.name) if t.action == "stop" else self.streams.wait(t.name)
        records = stream.run_records()
        errors = sum(1 for x in records if x.get("status") is None or x["status"] >= 500)
        r.measured = f"{t.name}: {len(records)} requests, {errors} errors ({stream.status})"
        if stream.status == "error":
            r.status, r.message = "error", f"traffic {t.name!r} failed: {stream.error}"
        elif stream.running:
            r.status, r.message = "error", f"traffic {t.name!r} did not finish in time"
        else:
            r.status = "done"

    def _step_fault(self, r: StepResult) -> None:
        f = r.step.fault
        assert f is not None
        self._command_step(r, f.argv, DEFAULT_FAULT_TIMEOUT)
        self._sample()  # the fault's span starts at the step, not at the next sample

    def _command_step(self, r: StepResult, argv: list[str], timeout: float) -> CliCall | None:
        """Run a labctl command for a step (fault, task solution): exit 0 is the check; output recorded."""
        try:
            call = self._lab_cli(argv, timeout=timeout)
        except StepTimeout:
            r.checks = [Check("exit", False, f"still running after {timeout:g}s", "exit 0")]
            self._conclude(r)
            r.status = "error"
            return None
        output = call.out + call.err
        r.exit_code, r.output = call.code, output[-MAX_OUTPUT:]
        r.checks = [Check("exit", call.code == 0, f"exit {call.code}", "exit 0")]
        self._conclude(r)
        if call.code != 0:
            tail = (call.err.strip() or call.out.strip()).splitlines()
            r.message = tail[-1].strip(" ▸") if tail else ""
        return call

    def _step_task(self, r: StepResult) -> None:
        task = r.step.task
        assert task is not None
        if self.learner is not None:
            self.learner.task(self, r)
            return
        r.extra["graded_by"] = "solution" if task.solution_argv else "condition"
        if task.solution_argv:
            call = self._command_step(r, task.solution_argv, DEFAULT_RUN_TIMEOUT)
            if call is None or call.code != 0:
                r.status = "fail"
                r.message = f"the solution `labctl {task.solution}` failed: {r.message or r.measured}"
                return
        self.poll(r, task.until, task.settle.seconds, task.settle.text)

    def run_learner_command(self, argv: list[str], timeout: float = DEFAULT_RUN_TIMEOUT) -> CliCall:
        """A command typed by the learner, in the scenario's lab (``--lab`` right after the command name)."""
        return self._lab_cli(argv, timeout=timeout)

    @staticmethod
    def _conclude(r: StepResult) -> None:
        r.status = "pass" if all(c.passed for c in r.checks) else "fail"
        r.measured = "; ".join(c.measured for c in r.checks)
        r.expected = "; ".join(c.expected for c in r.checks)
