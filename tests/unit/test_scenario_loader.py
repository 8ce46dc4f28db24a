"""Scenario files: the shipped ones validate; every malformed one gets ONE line naming file, line and field."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from labctl.scenario import loader
from labctl.scenario.loader import ScenarioError, parse

REPO = Path(__file__).resolve().parents[2]
SHIPPED = sorted((REPO / "scenarios").glob("*.yaml"))

# A valid document; the cases below each break one thing in it. Line numbers are 1-based as in an editor.
BASE = """\
name: t
timescale: 0.05
setup:
  spaces: [tokyo]
  apps:
    - name: demo
      space: tokyo
      source: sample-app
      formation: {web: 2}
steps:
  - snapshot: before
  - run: ps:restart web.1 -a demo
  - wait_for: {app: demo, dyno: web.1, state: up, changed_since: before}
    timeout: 30s
  - expect: {app: demo, dyno: web.1, instance: same, since: before}
  - expect: {app: demo, http: {status: 200, dynos: [web.1, web.2]}, requests: 40}
"""


def _parse(text: str):
    return parse(textwrap.dedent(text), "x.yaml", base_dir=REPO)


def _error(text: str) -> ScenarioError:
    with pytest.raises(ScenarioError) as info:
        _parse(text)
    return info.value


def test_a_dyno_that_ps_scale_or_a_task_makes_is_known():
    scaled = BASE.replace("run: ps:restart web.1 -a demo", "run: ps:scale web=3 -a demo")
    assert _parse(scaled.replace("dynos: [web.1, web.2]", "dynos: [web.1, web.3]")).steps[4].condition.http.dynos == [
        "web.1",
        "web.3",
    ]
    task = BASE.replace(
        "  - run: ps:restart web.1 -a demo\n",
        "  - task: {prompt: Scale up., until: {app: demo, dyno: web.3, state: up}}\n",
    )
    assert _parse(task).steps[1].task.until.dyno == "web.3"


def test_base_document_is_valid():
    sc = _parse(BASE)
    assert sc.name == "t" and sc.timescale == 0.05 and sc.spaces == ["tokyo"]
    assert sc.apps[0].source == REPO / "images" / "sample-app" and sc.apps[0].formation == {"web": "2"}
    assert [s.kind for s in sc.steps] == ["snapshot", "run", "wait_for", "expect", "expect"]
    assert sc.steps[1].argv == ["ps:restart", "web.1", "-a", "demo"]
    assert sc.steps[2].duration.seconds == 30 and sc.steps[2].condition.changed_since == "before"
    assert sc.steps[4].condition.http.requests == 40 and sc.steps[4].condition.http.dynos == ["web.1", "web.2"]
    assert sc.checks == 4


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_scenarios_validate(path: Path):
    sc = loader.load(path)
    assert sc.name == path.stem
    assert sc.description and sc.checks >= 1
    assert sc.path == path


def test_the_readme_scenario_is_shipped():
    assert (REPO / "scenarios" / "private-space-restart-vs-stop.yaml") in SHIPPED
    assert len(SHIPPED) >= 3


CASES = [
    # (id, document, line, field, a piece of the message)
    (
        "missing field",
        BASE.replace("    - name: demo\n      space: tokyo\n", "    - space: tokyo\n"),
        6,
        "setup.apps[1].name",
        "missing required field",
    ),
    (
        "wrong type",
        BASE.replace("timescale: 0.05", "timescale: fast"),
        2,
        "timescale",
        "expected a number, got a string",
    ),
    (
        "wrong type of requests",
        BASE.replace("requests: 40", "requests: [40]"),
        16,
        "steps[5].expect.requests",
        "expected a whole number, got a list",
    ),
    (
        "unknown step kind",
        BASE.replace("  - snapshot: before\n", "  - snapshot: before\n  - sleep: 1s\n"),
        12,
        "steps[2]",
        "unknown step kind 'sleep'",
    ),
    (
        "bad duration",
        BASE.replace("timeout: 30s", "timeout: 3 parsecs"),
        14,
        "steps[3].timeout",
        "'3 parsecs' is not a duration",
    ),
    (
        "bad duration inside wait_for",
        BASE.replace("changed_since: before}\n    timeout: 30s", "changed_since: before, timeout: 3 parsecs}"),
        13,
        "steps[3].wait_for.timeout",
        "'3 parsecs' is not a duration",
    ),
    (
        "unknown app",
        BASE.replace("{app: demo, dyno: web.1, instance", "{app: shop, dyno: web.1, instance"),
        15,
        "steps[4].expect.app",
        "'shop' is not in setup.apps (demo)",
    ),
    (
        "unknown snapshot",
        BASE.replace("instance: same, since: before", "instance: same, since: befor"),
        15,
        "steps[4].expect.since",
        "no snapshot 'befor'",
    ),
    (
        "unknown condition key",
        BASE.replace("instance: same, since: before}", "instance: same, since: before, colour: red}"),
        15,
        "steps[4].expect.colour",
        "unknown key",
    ),
    (
        "bad state value",
        BASE.replace("state: up", "state: running"),
        13,
        "steps[3].wait_for.state",
        "'running' is not a dyno state",
    ),
    (
        "non-mapping step",
        BASE.replace("  - run: ps:restart web.1 -a demo\n", "  - ps:restart web.1 -a demo\n"),
        12,
        "steps[2]",
        "expected a mapping",
    ),
    ("empty steps", BASE.split("steps:")[0] + "steps: []\n", 10, "steps", "expected at least one step"),
    (
        "bad duration of a wait",
        BASE.replace("  - snapshot: before\n", "  - snapshot: before\n  - wait: 5\n"),
        12,
        "steps[2].wait",
        "'5' is not a duration",
    ),
    (
        "not a labctl command",
        BASE.replace("run: ps:restart web.1", "run: reboot web.1"),
        12,
        "steps[2].run",
        "'reboot' is not a labctl command",
    ),
    (
        "run with --lab",
        BASE.replace("run: ps:restart web.1 -a demo", "run: ps:restart web.1 -a demo --lab x"),
        12,
        "steps[2].run",
        "do not pass --lab",
    ),
    (
        "run on an unknown app",
        BASE.replace("run: ps:restart web.1 -a demo", "run: ps:restart web.1 -a shop"),
        12,
        "steps[2].run",
        "app 'shop' is not in setup.apps",
    ),
    (
        "snapshot used before it is taken",
        BASE.replace("  - snapshot: before\n", "").replace(
            "    timeout: 30s\n", "    timeout: 30s\n  - snapshot: before\n"
        ),
        12,
        "steps[2].wait_for.changed_since",
        "no snapshot 'before' is taken before this step",
    ),
    (
        "instance without since",
        BASE.replace("instance: same, since: before", "instance: same"),
        15,
        "steps[4].expect.since",
        "missing required field",
    ),
    (
        "instance not same/different",
        BASE.replace("instance: same", "instance: other"),
        15,
        "steps[4].expect.instance",
        "'other' is not same or different",
    ),
    (
        "http without status nor dynos",
        BASE.replace("http: {status: 200, dynos: [web.1, web.2]}", "http: {}"),
        16,
        "steps[5].expect.http",
        "give status, dynos or both",
    ),
    (
        "timeout on an expect",
        BASE.replace("instance: same, since: before}\n", "instance: same, since: before}\n    timeout: 3s\n"),
        16,
        "steps[4].timeout",
        "not an option of an expect step (only of run and wait_for steps)",
    ),
    (
        "two step kinds",
        BASE.replace("  - snapshot: before\n", "  - snapshot: before\n    wait: 1s\n"),
        11,
        "steps[1]",
        "exactly one kind",
    ),
    ("unknown top-level key", BASE + "traffic: {rps: 5}\n", 17, "traffic", "unknown key"),
    (
        "space not in setup.spaces",
        BASE.replace("space: tokyo", "space: osaka"),
        7,
        "setup.apps[1].space",
        "'osaka' is not in setup.spaces",
    ),
    (
        "formation type not in the Procfile",
        BASE.replace("{web: 2}", "{web: 2, clock: 1}"),
        9,
        "setup.apps[1].formation.clock",
        "not a process type of sample-app's Procfile (web, worker)",
    ),
    (
        "source is not a directory",
        BASE.replace("source: sample-app", "source: no/such/dir"),
        8,
        "setup.apps[1].source",
        "is not a directory",
    ),
    (
        "bad dyno name",
        BASE.replace("dyno: web.1, instance", "dyno: web, instance"),
        15,
        "steps[4].expect.dyno",
        "'web' is not valid",
    ),
    (
        "unknown dyno",
        BASE.replace("dyno: web.1, instance", "dyno: web.7, instance"),
        15,
        "steps[4].expect.dyno",
        "no dyno 'web.7' on demo: its formation has web=2 at most",
    ),
    (
        "unknown dyno among http's",
        BASE.replace("dynos: [web.1, web.2]", "dynos: [web.1, web.3]"),
        16,
        "steps[5].expect.http.dynos[2]",
        "no dyno 'web.3' on demo",
    ),
    (
        "dyno past what ps:scale made",
        BASE.replace("run: ps:restart web.1 -a demo", "run: ps:scale web+1 -a demo").replace(
            "dynos: [web.1, web.2]", "dynos: [web.1, web.4]"
        ),
        16,
        "steps[5].expect.http.dynos[2]",
        "its formation has web=3 at most",
    ),
    ("empty file", "", 1, "", "the file is empty"),
    ("a list, not a mapping", "- name: t\n", 1, "", "expected a mapping with name, setup and steps"),
]


@pytest.mark.parametrize(("text", "line", "fieldpath", "piece"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_malformed_document_gives_one_error_naming_line_and_field(text: str, line: int, fieldpath: str, piece: str):
    err = _error(text)
    message = str(err)
    assert "\n" not in message, message
    prefix = f"x.yaml:{line}: " + (f"{fieldpath}: " if fieldpath else "")
    assert message.startswith(prefix), f"{message!r} does not start with {prefix!r}"
    assert piece in message, message
    assert (err.line, err.field) == (line, fieldpath)


def test_yaml_syntax_error_names_the_line():
    err = _error(BASE.replace("formation: {web: 2}", "formation: {web: 2"))
    assert str(err).startswith("x.yaml:10: not valid YAML:") and "\n" not in str(err)


def test_missing_file_and_cli_validate(tmp_path: Path):
    from tests.conftest import cli

    with pytest.raises(Exception, match="no such file"):
        loader.load(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text(BASE.replace("timeout: 30s", "timeout: 3 parsecs"))
    r = cli("scenario", "validate", str(bad))
    assert r.code == 1
    assert r.err.strip() == f"▸    {bad}:14: steps[3].timeout: '3 parsecs' is not a duration (use e.g. 500ms, 3s, 2m)"
    ok = cli("scenario", "validate", str(REPO / "scenarios" / "private-space-restart-vs-stop.yaml"))
    assert ok.code == 0 and "valid" in ok.out


def test_durations_and_defaults():
    sc = _parse(
        BASE.replace("timeout: 30s", "timeout: 1500ms").replace("timescale: 0.05\n", "").replace(", requests: 40", "")
        + "  - wait: 2m\n  - wait_for: {app: demo, log: hello}\n"
    )
    assert sc.timescale == loader.DEFAULT_TIMESCALE
    assert sc.steps[2].duration.seconds == 1.5
    assert sc.steps[4].condition.http.requests == loader.DEFAULT_REQUESTS
    assert sc.steps[5].duration.seconds == 120
    assert sc.steps[6].duration.seconds == loader.DEFAULT_WAIT_FOR_TIMEOUT


def test_run_step_options_and_descriptions():
    sc = _parse(
        BASE.replace(
            "  - run: ps:restart web.1 -a demo\n",
            "  - run: labctl run -a demo python3 -c \"print(42)\"\n    expect_output: '42'\n"
            "    expect_exit: 0\n    timeout: 20s\n",
        )
    )
    step = sc.steps[1]
    assert step.argv == ["run", "-a", "demo", "python3", "-c", "print(42)"]
    assert step.command == 'run -a demo python3 -c "print(42)"'
    assert step.expect_output == "42" and step.duration.seconds == 20
    assert step.describe() == "labctl run -a demo python3 -c \"print(42)\", output has '42'"
    assert sc.steps[3].describe() == "demo web.1: instance same since before"
    assert sc.steps[4].describe() == "demo: http x40: status 200 from web.1, web.2"


def test_report_renders_from_a_result(tmp_path: Path):
    """The text table, the final line and the HTML/SVG report, from a synthetic run (no Docker)."""
    from labctl.scenario import report
    from labctl.scenario.runner import Check, RunResult, StepResult

    sc = _parse(BASE)
    res = RunResult(sc, "scn-test", status="fail", router_port=5999)
    res.setup = {"status": "done", "start": 0.0, "end": 10.0, "commands": ["labctl apps:create demo"]}
    res.teardown = {"status": "done"}
    t = 10.0
    for s in sc.steps:
        r = StepResult(s, status="pass" if s.is_check else "done", start=t, end=t + 0.5)
        if s.kind == "expect" and s.condition.instance:
            r.status = "fail"
            r.checks = [Check("instance", False, "i-2 (a different instance)", "the same instance as at 'before': i-1")]
            r.measured, r.expected = r.checks[0].measured, r.checks[0].expected
        res.steps.append(r)
        t += 1
    res.timeline = [
        {
            "t": 9.5 + k * 0.5,
            "app": "demo",
            "dynos": {
                "web.1": {
                    "instance": "i-1" if k < 6 else "i-2",
                    "container": "c1" if k < 3 else "c2" if k < 6 else "c3",
                    "state": "up" if k % 3 else "starting",
                },
                "web.2": {"instance": "i-3", "container": "c9", "state": "up"},
            },
        }
        for k in range(12)
    ]
    res.snapshots = [
        {
            "name": "before",
            "t": 10.0,
            "step": 1,
            "dynos": {"demo": {"web.1": {"instance": "i-1", "container": "c1", "state": "up"}}},
        }
    ]
    line = report.final_line(res, tmp_path / "report.html")
    assert line.startswith(
        "FAIL: t (3/4 expectations held) — step 4 expect demo web.1: instance same since "
        "before: instance: measured i-2 (a different instance) vs expected the same instance"
    )
    assert report.table_row(sc, res.steps[3]).split()[:3] == ["4", "expect", "demo"]
    page = report.write(res, tmp_path)
    text = page.read_text()
    assert "<svg" in text and "ps:restart web.1 -a demo" in text and "i-1" in text and "i-2" in text
    import json

    data = json.loads((tmp_path / "result.json").read_text())
    assert data["expectations"] == {"total": 4, "held": 3} and data["lab"] == "scn-test"
    assert [s["status"] for s in data["steps"]] == ["done", "pass", "pass", "fail", "pass"]


def test_built_in_scenarios_by_name_from_any_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from tests.conftest import cli

    monkeypatch.chdir(tmp_path)  # no ./scenarios here: the names come from the scenarios shipped with labctl
    listing = cli("scenario", "list")
    assert listing.code == 0
    lines = listing.out.splitlines()
    assert lines[0] == "=== Built-in scenarios (labctl scenario run NAME)"
    assert "private-space-restart-vs-stop" in lines
    ok = cli("scenario", "validate", "private-space-restart-vs-stop")
    assert ok.code == 0 and "private-space-restart-vs-stop: 1 app(s)" in ok.out
    missing = cli("scenario", "run", "no-such-scenario")
    assert missing.code == 1
    assert missing.err.strip() == (
        "▸    No such scenario file or built-in scenario: no-such-scenario"
        " (labctl scenario list shows the built-in ones)"
    )


def test_provision_time_is_optional_and_checked():
    assert _parse(BASE).provision_time == 0.0  # the library's scenarios keep new instances ready at once
    sc = _parse(BASE.replace("timescale: 0.05\n", "timescale: 0.05\nprovision_time: 60\n"))
    assert sc.provision_time == 60.0
    err = _error(BASE.replace("timescale: 0.05\n", "timescale: 0.05\nprovision_time: -1\n"))
    assert err.field == "provision_time" and "out of range" in str(err)


def test_cycle_period_is_optional_and_checked():
    assert _parse(BASE).cycle_period is None  # the lab's default: Heroku's 24 h
    sc = _parse(BASE.replace("timescale: 0.05\n", "timescale: 0.05\ncycle_period: 300\n"))
    assert sc.cycle_period == 300.0
    err = _error(BASE.replace("timescale: 0.05\n", "timescale: 0.05\ncycle_period: 5\n"))
    assert err.field == "cycle_period" and "out of range" in str(err)


def test_placement_is_optional_and_checked():
    assert _parse(BASE).placement is None  # the lab's default (spread)
    assert _parse(BASE.replace("timescale: 0.05\n", "timescale: 0.05\nplacement: packed\n")).placement == "packed"
    err = _error(BASE.replace("timescale: 0.05\n", "timescale: 0.05\nplacement: tight\n"))
    assert err.field == "placement" and "expected one of spread, packed, got 'tight'" in str(err)
