"""What a scenario run found: a result per step with its checks, and the run's result (``result.json``).

The runner fills these in; the report prints and draws them.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from labctl.scenario.model import Scenario, Step


@dataclass
class Check:
    name: str
    passed: bool
    measured: str
    expected: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "measured": self.measured, "expected": self.expected}


@dataclass
class StepResult:
    step: Step
    status: str = "skipped"  # pass | fail | error (checks); done (snapshot, wait); skipped
    start: float | None = None  # seconds since the run started
    end: float | None = None
    started_at: str | None = None
    ended_at: str | None = None
    measured: str = ""
    expected: str = ""
    message: str = ""
    checks: list[Check] = field(default_factory=list)
    exit_code: int | None = None
    output: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # kind-specific fields of result.json

    @property
    def held(self) -> bool:
        return self.status == "pass"

    def failure(self) -> str:
        """``step 4 expect demo web.1: …: measured X vs expected Y`` — names the expectation and both values."""
        head = f"step {self.step.number} {self.step.kind} {self.step.describe()}"
        failed = [c for c in self.checks if not c.passed]
        if failed:
            return head + ": " + "; ".join(f"{c.name}: measured {c.measured} vs expected {c.expected}" for c in failed)
        return f"{head}: {self.message}" if self.message else head

    def to_json(self) -> dict[str, Any]:
        s = self.step
        out: dict[str, Any] = {
            "number": s.number,
            "line": s.line,
            "kind": s.kind,
            "description": s.describe(),
            "status": self.status,
            "start": _r(self.start),
            "end": _r(self.end),
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "measured": self.measured,
            "expected": self.expected,
            "message": self.message,
            "checks": [c.to_json() for c in self.checks],
        }
        if s.kind == "run":
            out.update(command=s.command, exit_code=self.exit_code, output=self.output)
        if s.kind == "snapshot":
            out["snapshot"] = s.snapshot
        if s.kind == "traffic" and s.traffic is not None:
            out.update(stream=s.traffic.name, action=s.traffic.action)
        if s.kind == "fault" and s.fault is not None:
            out.update(command=" ".join(s.fault.argv), exit_code=self.exit_code, output=self.output)
        if s.kind == "task" and s.task is not None:
            out.update(prompt=s.task.prompt, solution=s.task.solution, exit_code=self.exit_code, output=self.output)
        out.update(self.extra)
        return out


@dataclass
class RunResult:
    scenario: Scenario
    lab: str
    status: str = "error"  # pass | fail | error | interrupted
    started_at: str = ""
    ended_at: str = ""
    duration_s: float = 0.0
    router_port: int | None = None
    setup: dict[str, Any] = field(default_factory=dict)
    teardown: dict[str, Any] = field(default_factory=dict)
    steps: list[StepResult] = field(default_factory=list)
    snapshots: list[dict[str, Any]] = field(default_factory=list)
    timeline: list[dict[str, Any]] = field(default_factory=list)
    traffic: list[dict[str, Any]] = field(default_factory=list)
    faults: list[dict[str, Any]] = field(default_factory=list)
    mode: str = "unattended"
    message: str = ""

    @property
    def total(self) -> int:
        return sum(1 for r in self.steps if r.step.is_check)

    @property
    def held(self) -> int:
        return sum(1 for r in self.steps if r.step.is_check and r.held)

    @property
    def errors(self) -> int:
        """Steps that could not do their work (a traffic stream that did not start…) beyond the checks."""
        return sum(1 for r in self.steps if not r.step.is_check and r.status == "error")

    @property
    def first_failure(self) -> StepResult | None:
        return next((r for r in self.steps if r.status in ("fail", "error")), None)

    @property
    def exit_code(self) -> int:
        return {"pass": 0, "interrupted": 130}.get(self.status, 1)

    def to_json(self) -> dict[str, Any]:
        sc = self.scenario
        first = self.first_failure
        return {
            "scenario": sc.name,
            "description": sc.description,
            "file": str(sc.path),
            "lab": self.lab,
            "mode": self.mode,
            "timescale": sc.timescale,
            "status": self.status,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "duration_s": _r(self.duration_s),
            "router_port": self.router_port,
            "expectations": {"total": self.total, "held": self.held},
            "first_failure": first.failure() if first else (self.message or None),
            "message": self.message,
            "setup": self.setup,
            "steps": [r.to_json() for r in self.steps],
            "snapshots": self.snapshots,
            "timeline": self.timeline,
            "traffic": self.traffic,
            "faults": self.faults,
            "teardown": self.teardown,
        }


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


def _iso(ts: float | None = None) -> str:
    return datetime.fromtimestamp(ts if ts is not None else time.time(), tz=UTC).isoformat(timespec="milliseconds")


def dumps(result: RunResult) -> str:
    return json.dumps(result.to_json(), indent=2, default=str)
