"""What a scenario is, once validated: its setup, its steps and their conditions (docs/scenarios.md).

Plain dataclasses, with the defaults and the vocabulary (step kinds, dyno states, fault kinds) that the parser
(``loader``) checks a file against and the runner and the report read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from labctl import resources
from labctl.domain import faults
from labctl.scenario.checks import CommandCheck, TrafficCheck
from labctl.scenario.yamldoc import Duration

SAMPLE_APP = "sample-app"
SAMPLE_APP_DIR = resources.sample_app_dir()
DEFAULT_TIMESCALE = 0.05
DEFAULT_WAIT_FOR_TIMEOUT = 30.0
DEFAULT_RUN_TIMEOUT = 120.0
DEFAULT_REQUESTS = 20
MAX_REQUESTS = 1000

DEFAULT_TASK_TIMEOUT = 600.0
DEFAULT_SETTLE = 60.0
MAX_RPS = 200.0

STEP_KINDS = ("snapshot", "run", "traffic", "fault", "wait", "wait_for", "expect", "task")
CHECK_STEPS = ("run", "fault", "wait_for", "expect", "task")
DYNO_STATES = ("starting", "up", "crashed", "down", "idle")
FAULT_KINDS = faults.KINDS  # defined once, in labctl/domain/faults.py


# -- the model --------------------------------------------------------------------------------------


@dataclass
class HttpCheck:
    status: int | None
    dynos: list[str] | None
    path: str
    requests: int


@dataclass
class Condition:
    app: str
    dyno: str | None = None
    state: str | None = None
    instance: str | None = None  # same | different
    since: str | None = None
    changed_since: str | None = None
    instance_exists: bool | None = None
    http: HttpCheck | None = None
    log: str | None = None
    no_log: str | None = None
    traffic: TrafficCheck | None = None
    command: CommandCheck | None = None

    def describe(self) -> str:
        parts = []
        if self.state:
            parts.append(f"state {self.state}")
        if self.instance:
            parts.append(f"instance {self.instance} since {self.since}")
        if self.changed_since:
            parts.append(f"changed since {self.changed_since}")
        if self.instance_exists is not None:
            parts.append(f"{self.since}'s instance {'exists' if self.instance_exists else 'gone'}")
        if self.http:
            want = []
            if self.http.status is not None:
                want.append(f"status {self.http.status}")
            if self.http.dynos is not None:
                want.append("from " + (", ".join(self.http.dynos) or "no dyno"))
            path = "" if self.http.path == "/" else f" {self.http.path}"
            parts.append(f"http{path} x{self.http.requests}: {' '.join(want)}")
        if self.log is not None:
            parts.append(f"log has {self.log!r}")
        if self.no_log is not None:
            parts.append(f"log has no {self.no_log!r}")
        if self.traffic is not None:
            parts.append(self.traffic.describe())
        if self.command is not None:
            parts.append(self.command.describe())
        who = f"{self.app} {self.dyno}" if self.dyno else self.app
        return f"{who}: {', '.join(parts)}"


@dataclass
class TrafficStep:
    action: str  # start | stop | wait
    name: str
    app: str = ""
    rps: float = 10.0
    duration: Duration | None = None
    path: str = "/"
    timeout: float | None = None


@dataclass
class FaultStep:
    app: str
    dyno: str
    kind: str | None  # None: clear
    argv: list[str] = field(default_factory=list)  # the labctl command line it runs


@dataclass
class TaskStep:
    prompt: str
    until: Condition
    solution: str | None = None
    solution_argv: list[str] = field(default_factory=list)
    hints: list[str] = field(default_factory=list)
    timeout: Duration = field(default_factory=lambda: Duration(DEFAULT_TASK_TIMEOUT, "10m"))
    settle: Duration = field(default_factory=lambda: Duration(DEFAULT_SETTLE, "60s"))


@dataclass
class Step:
    index: int  # 0-based position; ``number`` (1-based) is what field paths and the run's table show
    line: int
    kind: str
    snapshot: str | None = None
    command: str | None = None
    argv: list[str] = field(default_factory=list)
    expect_exit: int = 0
    expect_output: str | None = None
    duration: Duration | None = None  # wait: how long; wait_for/run: the timeout
    condition: Condition | None = None
    traffic: TrafficStep | None = None
    fault: FaultStep | None = None
    task: TaskStep | None = None

    @property
    def number(self) -> int:
        return self.index + 1

    @property
    def is_check(self) -> bool:
        return self.kind in CHECK_STEPS

    def describe(self) -> str:
        if self.kind == "snapshot":
            return f"snapshot {self.snapshot!r}"
        if self.kind == "run":
            extra = f" -> exit {self.expect_exit}" if self.expect_exit else ""
            if self.expect_output is not None:
                extra += f", output has {self.expect_output!r}"
            return f"labctl {self.command}{extra}"
        if self.kind == "wait":
            return f"wait {self.duration.text}"  # type: ignore[union-attr]
        if self.kind == "traffic":
            t = self.traffic
            assert t is not None
            if t.action == "start":
                return f"traffic {t.name!r}: {t.app} {t.path} at {t.rps:g} rps for {t.duration.text}"  # type: ignore[union-attr]
            return f"traffic {t.action} {t.name!r}"
        if self.kind == "fault":
            return f"labctl {' '.join(self.fault.argv)}"  # type: ignore[union-attr]
        if self.kind == "task":
            task = self.task
            assert task is not None
            first = task.prompt.strip().splitlines()[0] if task.prompt.strip() else "task"
            return f"task: {first} (until {task.until.describe()})"
        assert self.condition is not None
        if self.kind == "wait_for":
            return f"{self.condition.describe()} (within {self.duration.text})"  # type: ignore[union-attr]
        return self.condition.describe()


@dataclass
class AppSetup:
    name: str
    space: str | None
    source: Path | None
    source_text: str | None
    formation: dict[str, str]
    config: dict[str, str]
    process_types: list[str]
    features: list[str] = field(default_factory=list)


@dataclass
class Scenario:
    path: Path
    name: str
    description: str
    timescale: float
    spaces: list[str]
    apps: list[AppSetup]
    steps: list[Step]
    teardown: list[Step] = field(default_factory=list)
    provision_time: float = 0.0  # seconds a new runtime instance provisions (before the time scale)
    cycle_period: float | None = None  # daily cycling's period in seconds (before the time scale); None: 24 h
    placement: str | None = None  # the lab's Common Runtime placement (spread | packed); None: the default
    variant: str | None = None  # which of the file's variants this is (None: the file has none)
    variants: list[str] = field(default_factory=list)  # every variant the file declares, in order

    @property
    def app_names(self) -> list[str]:
        return [a.name for a in self.apps]

    @property
    def checks(self) -> int:
        return sum(1 for s in self.steps if s.is_check)
