"""``variants:`` and ``scenario compare`` without Docker: placeholders filled per variant, steps replaced, errors
with their line, and the comparison's error budgets and report from results."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from labctl.errors import InvalidInput
from labctl.scenario import compare
from labctl.scenario.loader import ScenarioError, load, parse

REPO = Path(__file__).resolve().parents[2]

DOC = """\
name: t
variants:
  restart:
    remedy: ps:restart -d web.1 -a demo
    same: same
    extra: []
    features: []
  stop:
    remedy: ps:stop -d web.1 -a demo
    same: different
    extra:
      - wait: 1s
      - run: ps -a demo
    features: [preboot]
setup:
  spaces: [tokyo]
  apps:
    - name: demo
      space: tokyo
      source: sample-app
      formation: {web: 2}
      features: "{{features}}"
steps:
  - snapshot: before
  - run: "{{remedy}}"
  - "{{extra}}"
  - expect: {app: demo, dyno: web.1, instance: "{{ same }}", since: before}
"""


def _parse(text: str, variant: str | None = None):
    return parse(textwrap.dedent(text), "x.yaml", base_dir=REPO, variant=variant)


def test_each_variant_fills_the_placeholders():
    first = _parse(DOC)
    assert first.variant == "restart" and first.variants == ["restart", "stop"]
    assert [s.kind for s in first.steps] == ["snapshot", "run", "expect"]  # an empty list in place of a step
    assert first.steps[1].command == "ps:restart -d web.1 -a demo"
    assert first.steps[2].condition.instance == "same"
    assert first.apps[0].features == []
    stop = _parse(DOC, "stop")
    assert [s.kind for s in stop.steps] == ["snapshot", "run", "wait", "run", "expect"]  # the variant's steps
    assert stop.steps[1].command == "ps:stop -d web.1 -a demo"
    assert stop.steps[4].condition.instance == "different"
    assert stop.apps[0].features == ["preboot"]


def test_placeholder_inside_a_string():
    doc = DOC.replace('run: "{{remedy}}"', 'run: "ps:{{verb}} -d web.1 -a demo"').replace(
        "    remedy: ps:restart -d web.1 -a demo\n", "    remedy: x\n    verb: restart\n"
    )
    doc = doc.replace("    remedy: ps:stop -d web.1 -a demo\n", "    remedy: x\n    verb: stop\n")
    assert _parse(doc).steps[1].command == "ps:restart -d web.1 -a demo"
    assert _parse(doc, "stop").steps[1].command == "ps:stop -d web.1 -a demo"


def test_errors_name_the_line():
    with pytest.raises(ScenarioError) as e:
        _parse(DOC.replace('"{{ same }}"', '"{{ sameish }}"'))
    assert str(e.value).startswith("x.yaml:27: steps[4].expect.instance: {{sameish}} is not defined by variant")
    with pytest.raises(InvalidInput, match="no variant 'nope' .variants: restart, stop."):
        _parse(DOC, "nope")
    plain = "name: t\nsetup:\n  apps: [{name: demo}]\nsteps:\n  - run: 'ps -a {{app}}'\n"
    with pytest.raises(ScenarioError, match=r"x.yaml:5: steps\[1\]\.run: .* declares no variants"):
        _parse(plain)
    with pytest.raises(InvalidInput, match="declares no variants"):
        _parse(plain.replace("{{app}}", "demo"), "stop")
    with pytest.raises(ScenarioError, match=r"x.yaml:2: variants: expected a mapping"):
        _parse("name: t\nvariants: []\nsetup:\n  apps: [{name: demo}]\nsteps:\n  - wait: 1s\n")


def test_shipped_what_if_file():
    path = REPO / "scenarios" / "ps-cpu-fault-what-if.yaml"
    restart, stop = load(path, variant="restart"), load(path, variant="stop")
    assert restart.variants == stop.variants == ["restart", "stop"]
    runs = [[s.command for s in sc.steps if s.kind == "run"] for sc in (restart, stop)]
    assert runs == [["ps:restart -d web.1 -a demo"], ["ps:stop -d web.1 -a demo"]]


def _result(status: str, sick_until: float | None) -> dict:
    recs = [{"t": i / 10, "status": 200, "latency_ms": 30.0} for i in range(50)]
    end = 30.0
    for i in range(50, int(end * 10)):
        t = i / 10
        bad = sick_until is None or t < sick_until
        recs.append({"t": t, "status": 503 if bad else 200, "latency_ms": 30.0, "code": "H12" if bad else None})
    return {
        "scenario": "t",
        "status": status,
        "steps": [{"kind": "fault", "start": 5.0, "end": 5.1}],
        "traffic": [{"name": "load", "rps": 10, "records": recs}],
    }


def test_budget_and_report(tmp_path):
    restart, stop = _result("pass", None), _result("pass", 12.0)
    b_restart, b_stop = compare.budget(restart), compare.budget(stop)
    assert b_restart["time_to_recover_s"] is None and b_restart["failed"] == 250
    assert b_stop["failed"] == 70 and 6.5 <= b_stop["time_to_recover_s"] <= 7.5
    assert "not recovered within the run" in compare.row_text("restart", restart, b_restart)
    page = compare.write([("restart", restart), ("stop", stop)], tmp_path, "x.yaml")
    figures = json.loads((tmp_path / "compare.json").read_text())
    assert [v["variant"] for v in figures["variants"]] == ["restart", "stop"]
    assert [v["failed"] for v in figures["variants"]] == [250, 70]
    text = page.read_text()
    assert "restart/report.html" in text and "not recovered" in text
