"""Scenario steps of the second slice: traffic, fault, task, traffic/command conditions, teardown.

Parsing (one precise line per malformed file) and the pure evaluation of traffic conditions over records.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from labctl.scenario import checks
from labctl.scenario.interactive import refuse
from labctl.scenario.loader import ScenarioError, parse

REPO = Path(__file__).resolve().parents[2]

DOC = """\
name: t2
setup:
  spaces: [tokyo]
  apps:
    - name: demo
      space: tokyo
      source: sample-app
      formation: {web: 2}
      features: [preboot]
steps:
  - snapshot: before
  - traffic: {name: load, app: demo, rps: 20, duration: 30s, path: "/cpu?ms=20"}
  - fault: {kind: cpu, app: demo, dyno: web.1, cpus: 0.05, for: 2m}
  - snapshot: faulty
  - task:
      prompt: Make web.1 fast again.
      until: {app: demo, dyno: web.1, instance: different, since: before}
      solution: ps:stop web.1 -a demo
      hints: [restart keeps the instance, try ps:stop]
      settle: 30s
  - expect:
      traffic:
        stream: load
        dyno: web.1
        instance: {dyno: web.1, at: before}
        window: {from: faulty, to: end}
        requests: ">= 20"
        error_rate: "<= 1%"
        p50: "> 150ms"
        p99: "<= 2s"
        releases: [v1]
        codes: {H12: 0}
  - wait_for: {traffic: {stream: load, window: {last: 5s}, p95: "< 100ms"}, timeout: 20s}
  - expect: {command: "labctl ps -a demo", output: web.1}
  - fault: {clear: true, app: demo, dyno: web.1}
  - traffic: {stop: load}
  - run: deploy sample-app -a demo
teardown:
  - faults:clear --all
"""


def _parse(text: str):
    return parse(textwrap.dedent(text), "x.yaml", base_dir=REPO)


def test_second_slice_document_parses():
    sc = _parse(DOC)
    assert [s.kind for s in sc.steps] == [
        "snapshot",
        "traffic",
        "fault",
        "snapshot",
        "task",
        "expect",
        "wait_for",
        "expect",
        "fault",
        "traffic",
        "run",
    ]
    assert sc.apps[0].features == ["preboot"]
    t = sc.steps[1].traffic
    assert (t.action, t.name, t.app, t.rps, t.duration.seconds) == ("start", "load", "demo", 20, 30)
    assert t.path == "/cpu?ms=20"
    assert sc.steps[2].fault.argv == [
        "faults:add",
        "cpu",
        "--dyno",
        "web.1",
        "-a",
        "demo",
        "--cpus",
        "0.05",
        "--for",
        "2m",
    ]
    task = sc.steps[4].task
    assert task.solution_argv == ["ps:stop", "web.1", "-a", "demo"] and task.settle.seconds == 30
    assert task.hints == ["restart keeps the instance", "try ps:stop"] and task.timeout.seconds == 600
    tc = sc.steps[5].condition.traffic
    assert tc.dyno == "web.1" and tc.instance_of == ("web.1", "before")
    assert (tc.window.start, tc.window.end) == ("faulty", "end")
    assert tc.limits["error_rate"].value == pytest.approx(0.01) and tc.limits["p99"].value == 2000
    assert tc.limits["p50"].op == ">" and tc.releases == ["v1"] and tc.codes["H12"].op == "=="
    assert sc.steps[5].condition.app == "demo"  # the stream's app
    assert sc.steps[6].condition.traffic.window.last.seconds == 5 and sc.steps[6].duration.seconds == 20
    assert sc.steps[7].condition.command.argv == ["ps", "-a", "demo"]
    assert sc.steps[8].fault.argv == ["faults:clear", "--dyno", "web.1", "-a", "demo"]
    assert sc.steps[9].traffic.action == "stop"
    assert sc.steps[10].argv[1] == str(REPO / "images" / "sample-app")  # `deploy sample-app` resolves
    assert [s.argv for s in sc.teardown] == [["faults:clear", "--all"]]
    # the checks: fault x2, task, expect x2, wait_for, run
    assert sc.checks == 7


MALFORMED = [
    (
        "traffic without duration",
        ("rps: 20, duration: 30s,", "rps: 20,"),
        12,
        "steps[2].traffic.duration",
        "missing required field",
    ),
    ("rps out of range", ("rps: 20,", "rps: 500,"), 12, "steps[2].traffic.rps", "out of range"),
    (
        "unknown stream",
        ("  - traffic: {stop: load}", "  - traffic: {stop: lode}"),
        36,
        "steps[10].traffic.stop",
        "no traffic stream 'lode'",
    ),
    (
        "window from an unknown snapshot",
        ("window: {from: faulty", "window: {from: later"),
        26,
        "steps[6].expect.traffic.window.from",
        "'later' is neither start nor a snapshot",
    ),
    (
        "a comparison that is not one",
        ('error_rate: "<= 1%"', "error_rate: low"),
        28,
        "steps[6].expect.traffic.error_rate",
        "'low' is not a comparison",
    ),
    (
        "a latency without unit",
        ('p50: "> 150ms"', 'p50: "> 150"'),
        29,
        "steps[6].expect.traffic.p50",
        "a latency needs a unit",
    ),
    ("unknown fault kind", ("kind: cpu,", "kind: fire,"), 13, "steps[3].fault.kind", "'fire' is not a fault kind"),
    ("cpu fault without cpus", ("cpus: 0.05, for: 2m", "for: 2m"), 13, "steps[3].fault.cpus", "a cpu fault needs cpus"),
    (
        "task without until",
        ("      until: {app: demo, dyno: web.1, instance: different, since: before}\n", ""),
        16,
        "steps[5].task.until",
        "missing required field",
    ),
    (
        "solution not a labctl command",
        ("solution: ps:stop web.1", "solution: kubectl delete pod"),
        18,
        "steps[5].task.solution",
        "'kubectl' is not a labctl command",
    ),
    ("unknown dyno", ("dyno: web.1, cpus", "dyno: wbe.1, cpus"), 13, "steps[3].fault.dyno", "no dyno 'wbe.1' on demo"),
    (
        "bad router code",
        ("codes: {H12: 0}", "codes: {X12: 0}"),
        32,
        "steps[6].expect.traffic.codes",
        "'X12' is not valid",
    ),
    (
        "teardown with a forbidden command",
        ("  - faults:clear --all", "  - down"),
        39,
        "teardown[1]",
        "`down` is not allowed",
    ),
    (
        "unknown feature",
        ("features: [preboot]", "features: [turbo]"),
        9,
        "setup.apps[1].features[1]",
        "'turbo' is not a feature",
    ),
    (
        "an unknown key in a traffic check",
        ("releases: [v1]", "release: [v1]"),
        31,
        "steps[6].expect.traffic.release",
        "unknown key",
    ),
    (
        "exit without command",
        ('{command: "labctl ps -a demo", output: web.1}', "{app: demo, exit: 0, log: x}"),
        34,
        "steps[8].expect.exit",
        "only used with command",
    ),
]


@pytest.mark.parametrize("case", MALFORMED, ids=[c[0] for c in MALFORMED])
def test_malformed_second_slice_gives_one_precise_line(case):
    _, (old, new), line, fieldpath, message = case
    assert old in DOC, old
    with pytest.raises(ScenarioError) as info:
        _parse(DOC.replace(old, new, 1))
    err = info.value
    text = str(err)
    assert "\n" not in text
    assert (err.field, err.line) == (fieldpath, line), text
    assert message in text, text


# -- evaluation ---------------------------------------------------------------------------------------------
def _rec(
    t: float,
    dyno: str,
    latency: float,
    status: int | None = 200,
    instance: str = "i-a",
    code: str | None = None,
    release: str = "v1",
) -> dict:
    return {
        "t": t,
        "status": status,
        "latency_ms": latency,
        "dyno": dyno,
        "instance": instance,
        "release": release,
        "code": code,
        "error": None if status else "timeout",
    }


RECORDS = (
    [_rec(t / 10, "web.1", 400.0, instance="i-slow") for t in range(0, 100)]
    + [_rec(t / 10, "web.2", 20.0, instance="i-b") for t in range(0, 100)]
    + [_rec(10 + t / 10, "web.1", 25.0, instance="i-new", release="v2") for t in range(0, 50)]
    + [_rec(12.0, "web.1", 30000.0, status=503, instance="i-new", code="H12", release="v2")]
)


def _tc(**kw) -> checks.TrafficCheck:
    tc = checks.TrafficCheck("load", **{k: v for k, v in kw.items() if k in ("dyno", "instance_of")})
    for key, (op, value) in kw.get("limits", {}).items():
        tc.limits[key] = checks.Comparison(op, value, f"{op} {value}")
    tc.releases = kw.get("releases")
    for code, (op, value) in kw.get("codes", {}).items():
        tc.codes[code] = checks.Comparison(op, value, f"{op} {value}")
    return tc


def test_select_narrows_to_window_dyno_and_instance():
    assert len(checks.select(RECORDS, _tc(), 0, 100, None)) == len(RECORDS)
    assert len(checks.select(RECORDS, _tc(dyno="web.1"), 0, 9.95, None)) == 100
    assert len(checks.select(RECORDS, _tc(instance_of=("web.1", "before")), 0, 100, "i-slow")) == 100
    assert checks.select(RECORDS, _tc(instance_of=("web.1", "before")), 0, 100, None) == []  # no instance: none
    assert len(checks.select(RECORDS, _tc(), 10, 11, None)) == 11


def test_evaluate_latency_error_rate_releases_codes():
    slow = checks.select(RECORDS, _tc(dyno="web.1"), 0, 9.95, None)
    out = checks.evaluate(_tc(limits={"p50": (">", 150.0), "error_rate": ("<=", 0.0)}, releases=["v1"]), slow)
    assert [(name, held) for name, held, _, _ in out] == [("p50", True), ("error_rate", True), ("releases", True)]
    assert "p50 400ms of 100 requests" in out[0][2]
    after = checks.select(RECORDS, _tc(dyno="web.1"), 10, 20, None)
    out = checks.evaluate(
        _tc(
            limits={"p50": ("<", 100.0), "error_rate": ("<", 0.01), "requests": (">=", 50)},
            releases=["v2"],
            codes={"H12": (">=", 1)},
        ),
        after,
    )
    held = {name: h for name, h, _, _ in out}
    assert held == {"p50": True, "error_rate": False, "requests": True, "releases": True, "H12": True}
    rate = next(m for name, _, m, _ in out if name == "error_rate")
    assert "1/51" in rate and "503 H12" in rate


def test_evaluate_empty_window_fails_latency_and_rate():
    out = checks.evaluate(_tc(limits={"p95": ("<", 100.0), "error_rate": ("<=", 0.01)}), [])
    assert [held for _, held, _, _ in out] == [False, False]
    assert all("no requests" in measured for _, _, measured, _ in out)


def test_comparison_holds():
    assert checks.Comparison("<=", 0.01, "").holds(0.01) and not checks.Comparison("<", 0.01, "").holds(0.01)
    assert not checks.Comparison(">", 1, "").holds(None)


def test_learner_commands_are_checked():
    assert refuse(["ps", "-a", "demo"]) is None
    assert "not a labctl command" in refuse(["kubectl", "get", "pods"])
    assert "not available" in refuse(["down"])
    assert "no --lab" in refuse(["ps", "--lab", "x"])
    assert "never returns" in refuse(["logs", "--tail", "-a", "demo"])


def test_toxic_fault_steps_and_directions():
    """The new kinds' parameters (issue 17) come from the one table of kinds, and become the CLI's options."""
    lat = "kind: latency, app: demo, dyno: web.1, ms: 200, jitter: 50, direction: both, for: 2m"
    sc = _parse(DOC.replace("kind: cpu, app: demo, dyno: web.1, cpus: 0.05, for: 2m", lat, 1))
    assert sc.steps[2].fault.argv == [
        "faults:add",
        "latency",
        "--dyno",
        "web.1",
        "-a",
        "demo",
        "--ms",
        "200",
        "--jitter",
        "50",
        "--direction",
        "both",
        "--for",
        "2m",
    ]
    cut = "kind: limit-data, app: demo, dyno: web.1, bytes: 1000"
    assert _parse(DOC.replace("kind: cpu, app: demo, dyno: web.1, cpus: 0.05, for: 2m", cut, 1)).steps[2].fault.argv[
        -2:
    ] == ["--bytes", "1000"]
    for bad, needle in [
        ("kind: reset, app: demo, dyno: web.1, direction: in", "not an option of a reset fault"),
        ("kind: latency, app: demo, dyno: web.1", "a latency fault needs ms"),
        ("kind: loss, app: demo, dyno: web.1, percent: 5, direction: up", "in, out or both"),
        ("kind: bandwidth, app: demo, dyno: web.1", "a bandwidth fault needs kbit or rate"),
    ]:
        with pytest.raises(ScenarioError) as info:
            _parse(DOC.replace("kind: cpu, app: demo, dyno: web.1, cpus: 0.05, for: 2m", bad, 1))
        assert needle in str(info.value) and "\n" not in str(info.value)


def test_router_end_fault_steps():
    """`router:` puts a fault step at the router end (issue 17 item 6: a sick router end): common or a space of the
    setup's apps, network kinds only, no app or dyno."""
    old = "kind: cpu, app: demo, dyno: web.1, cpus: 0.05, for: 2m"
    sc = _parse(DOC.replace(old, "kind: latency, router: tokyo, ms: 400", 1))
    assert sc.steps[2].fault.argv == ["faults:add", "latency", "--router", "tokyo", "--ms", "400"]
    sc = _parse(DOC.replace(old, "clear: true, router: common", 1))
    assert sc.steps[2].fault.argv == ["faults:clear", "--router", "common"] and sc.steps[2].fault.kind is None
    for bad, needle in [
        ("kind: loss, router: osaka, percent: 5", "not a router here (common or a space of setup.apps: common, tokyo)"),
        ("kind: cpu, router: tokyo, cpus: 0.1", "a cpu fault acts on instances only"),
        ("kind: loss, router: tokyo, app: demo, percent: 5", "not used with router"),
        ("kind: loss, app: demo, percent: 5", "dyno: missing required field"),
    ]:
        with pytest.raises(ScenarioError) as info:
            _parse(DOC.replace(old, bad, 1))
        assert needle in str(info.value) and "\n" not in str(info.value)
