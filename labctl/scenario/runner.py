"""Run a validated scenario: a lab of its own, the setup, the steps in order, observations, teardown.

The runner drives the lab through the same code paths a user does: the lifecycle functions of ``labctl.lab``,
the CLI entry ``labctl.cli.main`` in-process for setup and ``run`` steps, and the API client for observation
(``ps``, ``instances``, ``logs``). The router is reached on 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import requests

from labctl.errors import LabError
from labctl.scenario.loader import Condition, Scenario, Step

SETUP_TIMEOUT = 120.0  # formation dynos up and served, after the deploys
POLL_INTERVAL = 0.3
SAMPLE_INTERVAL = 0.25
HTTP_TIMEOUT = 10.0
MAX_OUTPUT = 4000


class StepTimeout(BaseException):
    """Raised by the alarm inside an in-process CLI call that ran past its step's timeout.

    A BaseException so that the CLI's error boundary (which catches Exception) lets it through."""


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

    @property
    def held(self) -> bool:
        return self.status == "pass"

    def failure(self) -> str:
        """``step 4 expect demo web.1: …: measured X vs expected Y`` — names the expectation and both values."""
        head = f"step {self.step.number} {self.step.kind} {self.step.describe()}"
        failed = [c for c in self.checks if not c.passed]
        if failed:
            return head + ": " + "; ".join(f"{c.name}: measured {c.measured} vs expected {c.expected}"
                                            for c in failed)
        return f"{head}: {self.message}" if self.message else head

    def to_json(self) -> dict[str, Any]:
        s = self.step
        out: dict[str, Any] = {
            "number": s.number, "line": s.line, "kind": s.kind, "description": s.describe(),
            "status": self.status, "start": _r(self.start), "end": _r(self.end),
            "started_at": self.started_at, "ended_at": self.ended_at, "measured": self.measured,
            "expected": self.expected, "message": self.message, "checks": [c.to_json() for c in self.checks],
        }
        if s.kind == "run":
            out.update(command=s.command, exit_code=self.exit_code, output=self.output)
        if s.kind == "snapshot":
            out["snapshot"] = s.snapshot
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
    message: str = ""

    @property
    def total(self) -> int:
        return sum(1 for r in self.steps if r.step.is_check)

    @property
    def held(self) -> int:
        return sum(1 for r in self.steps if r.step.is_check and r.held)

    @property
    def first_failure(self) -> StepResult | None:
        return next((r for r in self.steps if r.step.is_check and r.status in ("fail", "error")), None)

    @property
    def exit_code(self) -> int:
        return {"pass": 0, "interrupted": 130}.get(self.status, 1)

    def to_json(self) -> dict[str, Any]:
        sc = self.scenario
        first = self.first_failure
        return {
            "scenario": sc.name, "description": sc.description, "file": str(sc.path), "lab": self.lab,
            "timescale": sc.timescale, "status": self.status, "started_at": self.started_at,
            "ended_at": self.ended_at, "duration_s": _r(self.duration_s), "router_port": self.router_port,
            "expectations": {"total": self.total, "held": self.held},
            "first_failure": first.failure() if first else (self.message or None),
            "message": self.message, "setup": self.setup, "steps": [r.to_json() for r in self.steps],
            "snapshots": self.snapshots, "timeline": self.timeline, "teardown": self.teardown,
        }


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


def _iso(ts: float | None = None) -> str:
    return datetime.fromtimestamp(ts if ts is not None else time.time(), tz=UTC).isoformat(timespec="milliseconds")


def default_lab_name(scenario: Scenario) -> str:
    seed = f"{scenario.name}:{os.getpid()}:{time.time_ns()}"
    return "scn-" + hashlib.sha1(seed.encode()).hexdigest()[:8]


@dataclass
class CliCall:
    code: int
    out: str
    err: str


class Runner:
    def __init__(self, scenario: Scenario, *, lab: str | None = None, keep: bool = False,
                 progress: Callable[[str], None] = lambda line: None,
                 on_step: Callable[[StepResult], None] = lambda r: None,
                 on_steps_start: Callable[[], None] = lambda: None):
        self.sc = scenario
        self.lab = lab or default_lab_name(scenario)
        self.keep = keep
        self.progress = progress
        self.on_step = on_step
        self.on_steps_start = on_steps_start
        self.result = RunResult(scenario, self.lab)
        self.t0 = time.monotonic()
        self.owned = False  # we brought the lab up (or tried to): ours to tear down
        self.client: Any = None
        self.http = requests.Session()
        self.http.trust_env = False  # 127.0.0.1 only: never through a proxy from the environment
        self.snaps: dict[str, dict[str, Any]] = {}

    # -- the run ------------------------------------------------------------------------------------
    def run(self) -> RunResult:
        res = self.result
        res.started_at = _iso()
        res.steps = [StepResult(s) for s in self.sc.steps]
        with _interrupt_on_sigterm():
            try:
                self._setup()
                self.on_steps_start()
                with self._background_sampler():
                    self._steps()
                res.status = "pass" if res.held == res.total else "fail"
            except KeyboardInterrupt:
                res.status = "interrupted"
                res.message = "interrupted (Ctrl-C)"
                self._close_open_step("interrupted")
            except LabError as err:
                res.status = "error"
                res.message = str(err)
                if res.setup.get("status") == "running":
                    res.setup.update(status="error", message=str(err), end=self._t())
            finally:
                self._teardown()
        res.ended_at = _iso()
        res.duration_s = self._t()
        return res

    def _t(self) -> float:
        return round(time.monotonic() - self.t0, 3)

    # -- setup --------------------------------------------------------------------------------------
    def _setup(self) -> None:
        from labctl import lab as lablib
        from labctl.client import Client
        from labctl.labdir import LabDir

        sc, setup = self.sc, self.result.setup
        setup.update(status="running", start=self._t(), commands=[])
        d = LabDir(self.lab)
        if d.exists():  # up, or left behind: either way not ours to reuse and then remove
            raise LabError(f"Lab {self.lab!r} already exists ({d.path}): a scenario runs in a lab of its own. "
                           f"Pass another --lab, or run `labctl down --lab {self.lab}` first")
        self.owned = True
        self.progress(f"Bringing up lab {self.lab} (time scale {sc.timescale:g})…")
        info = lablib.up(self.lab, self.progress, http_port=0, timescale=sc.timescale)
        self.result.router_port = info["router"]["port"]
        self.client = Client(self.lab, timeout=30)
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
        self.progress("Waiting for the formation to be up and served…")
        self._wait_formation()
        setup.update(status="done", end=self._t())
        self._sample()

    def _setup_cli(self, *args: str) -> CliCall:
        argv = [args[0], "--lab", self.lab, *args[1:]]
        self.result.setup["commands"].append("labctl " + " ".join(args))
        call = self._cli(argv, timeout=SETUP_TIMEOUT * 3)
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
            formation = self.client.get(f"/apps/{quote(app)}/formation")
            want = [f"{p['type']}.{n}" for p in formation for n in range(1, p["quantity"] + 1)]
            dynos = self._dynos(app)
            down = [n for n in want if dynos.get(n, {}).get("state") != "up"]
            served = True
            if not down and any(n.startswith("web.") for n in want):
                served = self._get(app).status_code == 200
            if not down and served:
                pending.pop(0)
                continue
            last = f"{app}: {', '.join(down) + ' not up' if down else 'the router does not serve it yet'}"
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

    def _close_open_step(self, why: str) -> None:
        for r in self.result.steps:
            if r.start is not None and r.end is None:
                r.end, r.ended_at, r.status, r.message = self._t(), _iso(), "error", why
                self.on_step(r)

    def _step_snapshot(self, r: StepResult) -> None:
        name = r.step.snapshot
        assert name is not None
        dynos = {}
        for app in self.sc.app_names:
            dynos[app] = {n: {"instance": d["instance"], "container": d["container"], "state": d["state"]}
                          for n, d in sorted(self._dynos(app).items())}
        snap = {"name": name, "t": self._t(), "at": _iso(), "step": r.step.number, "dynos": dynos}
        self.snaps[name] = snap
        self.result.snapshots.append(snap)
        r.status = "done"
        r.measured = "; ".join(f"{app}: " + (", ".join(f"{n}@{v['instance']}" for n, v in ds.items()) or "no dynos")
                               for app, ds in dynos.items())

    def _step_wait(self, r: StepResult) -> None:
        assert r.step.duration is not None
        self._sleep(r.step.duration.seconds)
        r.status, r.measured = "done", f"{r.step.duration.seconds:g}s"

    def _step_run(self, r: StepResult) -> None:
        s = r.step
        assert s.duration is not None
        argv = [s.argv[0], "--lab", self.lab, *s.argv[1:]]  # right after the command: `run` takes the rest
        try:
            call = self._cli(argv, timeout=s.duration.seconds)
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
            r.checks.append(Check("output", found, f"output has {s.expect_output!r}" if found else
                                  f"output without it (last line: {first!r})", f"output has {s.expect_output!r}"))
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
        start = time.monotonic()
        deadline = start + s.duration.seconds
        error = ""
        for _ in range(100_000):  # bounded by the deadline below; the count is a backstop
            try:
                r.checks, error = self._evaluate(s.condition, deadline), ""
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
            r.message = f"not met within {s.duration.text}" + (f" (last error: {error})" if error else "")
            if not r.checks:
                r.checks = [Check("condition", False, f"error: {error}", s.condition.describe())]
                r.measured, r.expected = r.checks[0].measured, r.checks[0].expected
            else:
                r.measured += f" (after {took:.1f}s)"

    @staticmethod
    def _conclude(r: StepResult) -> None:
        r.status = "pass" if all(c.passed for c in r.checks) else "fail"
        r.measured = "; ".join(c.measured for c in r.checks)
        r.expected = "; ".join(c.expected for c in r.checks)

    # -- conditions ---------------------------------------------------------------------------------
    def _evaluate(self, cond: Condition, deadline: float | None = None) -> list[Check]:
        checks: list[Check] = []
        d = None
        if cond.dyno:
            d = self._dynos(cond.app).get(cond.dyno)
        if cond.state:
            now = d["state"] if d else "absent"
            checks.append(Check("state", now == cond.state, now, cond.state))
        if cond.instance:
            checks.append(self._instance_check(cond, d))
        if cond.changed_since:
            was = self._snap_dyno(cond.changed_since, cond.app, cond.dyno)  # type: ignore[arg-type]
            old = (was or {}).get("container")
            new = d["container"] if d else None
            changed = bool(new) and new != old
            checks.append(Check("changed_since", changed,
                                f"container {_short(new)} ({'changed' if changed else 'unchanged'})",
                                f"a container other than {cond.changed_since}'s {_short(old)}"))
        if cond.instance_exists is not None:
            was = (self._snap_dyno(cond.since, cond.app, cond.dyno) or {}).get("instance")  # type: ignore[arg-type]
            live = {i["id"]: i for i in self.client.get("/instances")}
            exists = was in live
            measured = f"{was} {'exists (' + live[was]['state'] + ')' if exists else 'is gone'}"
            checks.append(Check("instance_exists", exists == cond.instance_exists, measured,
                                f"{was} {'exists' if cond.instance_exists else 'is gone'}"))
        if cond.http:
            checks += self._http_checks(cond, deadline)
        if cond.log is not None:
            checks.append(self._log_check(cond))
        return checks

    def _instance_check(self, cond: Condition, d: dict[str, Any] | None) -> Check:
        was = (self._snap_dyno(cond.since, cond.app, cond.dyno) or {}).get("instance")  # type: ignore[arg-type]
        now = d["instance"] if d else None
        want = (f"the same instance as at {cond.since!r}: {was}" if cond.instance == "same"
                else f"an instance other than {cond.since!r}'s {was}")
        if was is None:
            return Check("instance", False, f"{cond.dyno} was not running at snapshot {cond.since!r}", want)
        if now is None:
            return Check("instance", False, f"{cond.dyno} has no instance now", want)
        same = now == was
        measured = f"{now} ({'the same' if same else 'a different'} instance)"
        return Check("instance", same == (cond.instance == "same"), measured, want)

    def _http_checks(self, cond: Condition, deadline: float | None) -> list[Check]:
        h = cond.http
        assert h is not None
        statuses: Counter[str] = Counter()
        dynos: Counter[str] = Counter()
        for _ in range(h.requests):
            if deadline is not None and time.monotonic() > deadline + HTTP_TIMEOUT:
                break
            try:
                resp = self._get(cond.app, h.path)
            except requests.RequestException as err:
                statuses[f"error ({type(err).__name__})"] += 1
                continue
            statuses[str(resp.status_code)] += 1
            dyno = resp.headers.get("X-Labctl-Dyno", "")
            if not dyno and resp.headers.get("Content-Type", "").startswith("application/json"):
                with contextlib.suppress(ValueError, AttributeError):
                    dyno = resp.json().get("dyno") or ""
            if dyno and dyno not in ("-",):
                dynos[dyno] += 1
        n = sum(statuses.values())
        checks = []
        if h.status is not None:
            ok = statuses == Counter({str(h.status): n}) and n > 0
            measured = ", ".join(f"{c}x {s}" for s, c in statuses.most_common()) or "no answer"
            checks.append(Check("http status", ok, measured, f"{h.requests}x {h.status}"))
        if h.dynos is not None:
            seen = sorted(dynos, key=_dyno_key)
            measured = ", ".join(f"{d} x{dynos[d]}" for d in seen) or "no dyno answered"
            checks.append(Check("http dynos", set(seen) == set(h.dynos), measured,
                                "answers from " + (", ".join(h.dynos) or "no dyno")))
        return checks

    def _log_check(self, cond: Condition) -> Check:
        from labctl.cli.render import log_line

        rows = self.client.get(f"/apps/{quote(cond.app)}/log-lines", n=1500)
        lines = [log_line(r) for r in rows]
        hit = next((ln for ln in reversed(lines) if cond.log in ln), None)  # type: ignore[operator]
        shown = hit.split(" ", 1)[-1] if hit else ""  # without the timestamp
        measured = f"found: {_clip(shown, 110)}" if hit else f"not in the last {len(lines)} lines"
        return Check("log", hit is not None, measured, f"a line containing {cond.log!r}")

    # -- observation --------------------------------------------------------------------------------
    def _dynos(self, app: str) -> dict[str, dict[str, Any]]:
        return {d["name"]: d for d in self.client.get(f"/apps/{quote(app)}/dynos")}

    def _snap_dyno(self, snap: str, app: str, dyno: str) -> dict[str, Any] | None:
        return self.snaps[snap]["dynos"].get(app, {}).get(dyno)

    def _get(self, app: str, path: str = "/") -> requests.Response:
        return self.http.get(f"http://127.0.0.1:{self.result.router_port}{path}",
                             headers={"Host": f"{app}.localhost"}, timeout=HTTP_TIMEOUT, allow_redirects=False)

    def _sample(self, client: Any = None) -> None:
        """One timeline point per app: every dyno's instance, container and state (for the report's picture)."""
        client = client or self.client
        if client is None:
            return
        for app in self.sc.app_names:
            try:
                dynos = {d["name"]: d for d in client.get(f"/apps/{quote(app)}/dynos")}
            except LabError:
                continue
            t = self._t()
            self.result.timeline.append({"t": t, "app": app, "dynos": {
                n: {"instance": d["instance"], "container": _short(d["container"]), "state": d["state"]}
                for n, d in sorted(dynos.items())}})

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

    def _cli(self, argv: list[str], timeout: float) -> CliCall:
        """``labctl.cli.main`` in-process with captured output; Ctrl-C inside it still interrupts the run."""
        from labctl.cli import main

        out, err = io.StringIO(), io.StringIO()
        with _alarm(timeout), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(argv)
        if code == 130 and "Interrupted." in err.getvalue():
            raise KeyboardInterrupt
        return CliCall(code, out.getvalue(), err.getvalue())

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
            try:
                counts = lablib.down(self.lab)
                td.update(status="done", removed=counts)
            except Exception as err:  # noqa: BLE001 - report it; the run's result stands
                td.update(status="failed", message=f"{type(err).__name__}: {err} -- run `labctl down --lab {self.lab}`")
                self.progress(f"Teardown of lab {self.lab} failed: {err}; run `labctl down --lab {self.lab}`")
        td.update(start=start, end=self._t())


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _short(container: str | None) -> str | None:
    return container[:12] if container else None


def _dyno_key(name: str) -> tuple[str, int]:
    kind, _, num = name.partition(".")
    return kind, int(num) if num.isdigit() else 0


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def _alarm(seconds: float) -> Iterator[None]:
    """Raise StepTimeout after ``seconds`` (main thread only; elsewhere the call is unbounded)."""
    if not _main_thread() or seconds <= 0:
        yield
        return

    def fire(signum: int, frame: Any) -> None:
        raise StepTimeout()

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@contextlib.contextmanager
def _interrupt_on_sigterm() -> Iterator[None]:
    """SIGTERM (a CI timeout, `kill`) interrupts the run like Ctrl-C, so that the lab is still torn down."""
    if not _main_thread():
        yield
        return

    def term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


@contextlib.contextmanager
def _ignore_interrupts() -> Iterator[None]:
    """A second Ctrl-C must not leave half a lab behind: teardown runs to its end."""
    if not _main_thread():
        yield
        return
    old_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
    old_term = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)


def dumps(result: RunResult) -> str:
    return json.dumps(result.to_json(), indent=2, default=str)
