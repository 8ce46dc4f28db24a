"""Incident drills on a running lab (docs/drills.md): every drill of the pool passes with --solve; a wrong answer
and a restart for an instance fault in a Private Space are graded as such; nothing is left behind.

One lab (time scale 0.1) for the module; each drill sets up its own app in the space `drills` and removes it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from labctl.scenario import drill_pool as pool
from tests.conftest import Lab, cli, running_lab, wait_until

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def drill_lab(lab_state: Path) -> Iterator[Lab]:
    with running_lab(timescale=0.1) as lab:
        yield lab


def _apps(lab: Lab) -> list[str]:
    r = cli("apps", "--json", lab=lab.name)
    assert r.code == 0, r.err
    return [a["name"] for a in json.loads(r.out)]


@pytest.mark.parametrize("name", pool.NAMES)
def test_every_drill_in_the_pool_passes_with_solve(name: str, drill_lab: Lab, tmp_path: Path):
    seed = pool.seed_for(name)
    report = tmp_path / "report"
    r = cli("drill", "--seed", str(seed), "--solve", "--report", str(report), "--json", lab=drill_lab.name)
    assert r.code == 0, r.out[-3000:] + r.err[-3000:]
    res = json.loads(r.out)
    assert res["status"] == "pass" and res["seed"] == seed
    assert res["incident"]["name"] == name  # the seed drew this incident
    assert res["answer"]["correct"] is True and res["remedy"]["fits"] is True
    assert res["mitigation"]["time_to_mitigate_s"] is not None and res["mitigation"]["trouble_at"] is not None
    assert res["solved_by"] == "solve" and any(c["by"] == "solve" for c in res["commands"])
    saved = json.loads((report / "result.json").read_text())
    errors_after = [x for x in saved["traffic"]["records"] if x["t"] >= saved["incident"]["t"] and x["status"] != 200]
    if name != "instance-latency":  # a delay is slow answers, not errors
        assert errors_after or saved["mitigation"]["trouble_at"] is not None
    assert (report / "report.html").is_file() and (report / "report.png").stat().st_size > 10_000
    # cleaned up: the drill's app is gone, no fault is left, no drill runs
    assert res["app"] not in _apps(drill_lab)
    faults = cli("faults", "--json", lab=drill_lab.name)
    assert json.loads(faults.out) == []
    assert cli("drill:status", lab=drill_lab.name).code == 1


def test_wrong_answer_and_restart_for_an_instance_fault(drill_lab: Lab, tmp_path: Path):
    seed = pool.seed_for("instance-cpu")
    sick = pool.choose(seed, ["web.1", "web.2"]).dyno
    r = cli("drill", "--seed", str(seed), "--json", lab=drill_lab.name)
    assert r.code == 0, r.err
    app = json.loads(r.out)["app"]
    assert "cpu" not in r.out and "cpu" not in r.err  # the incident is not told
    other = cli("drill", lab=drill_lab.name)
    assert other.code == 1 and "already running" in other.err
    assert cli("ps", "-a", app, lab=drill_lab.name).code == 0  # investigating: logged
    bad = cli("drill:answer", "--kind", "cpu", lab=drill_lab.name)
    assert bad.code == 1 and "exactly one place" in bad.err
    r = cli("drill:answer", "--kind", "loss", "--dyno", sick, lab=drill_lab.name)  # the wrong kind
    assert r.code == 0, r.err
    again = cli("drill:answer", "--kind", "cpu", "--dyno", sick, lab=drill_lab.name)
    assert again.code == 1 and "one answer counts" in again.err
    r = cli("ps:restart", "-d", sick, "-a", app, lab=drill_lab.name)  # the trap in a Private Space
    assert r.code == 0, r.err
    time.sleep(4)
    st = cli("drill:status", "--json", lab=drill_lab.name)
    assert st.code == 0 and json.loads(st.out)["answered"] is True
    report = tmp_path / "report"
    r = cli("drill:end", "--report", str(report), "--json", lab=drill_lab.name)
    assert r.code == 0, r.err
    res = json.loads(r.out)
    assert res["status"] == "fail" and res["incident"]["name"] == "instance-cpu"
    assert res["answer"]["correct"] is False and "the kind was cpu, not loss" in res["answer"]["why"]
    assert res["remedy"]["remedy"] == "restart" and res["remedy"]["fits"] is False
    lines = [c["line"] for c in res["commands"]]
    assert any(line.startswith("labctl ps --lab") for line in lines)
    assert any(line.startswith("labctl ps:restart") for line in lines)
    assert (report / "report.html").read_text().count("ps:restart") >= 1
    assert app not in _apps(drill_lab)
    assert cli("drill:end", lab=drill_lab.name).code == 1  # nothing left to end


def test_down_during_a_drill_leaves_nothing(lab_state: Path):
    """`labctl down` in the middle of a drill: the traffic process ends by itself, nothing of the lab remains."""
    import os

    from labctl.labdir import LabDir

    with running_lab(down_must_succeed=False, timescale=0.1) as lab:  # it checks that nothing is left
        r = cli("drill", "--seed", str(pool.seed_for("instance-loss")), "--json", lab=lab.name)
        assert r.code == 0, r.err
        pid = json.loads((LabDir(lab.name).path / "drill" / "drill.json").read_text())["worker_pid"]
        os.kill(pid, 0)  # the traffic process runs
        assert cli("down", lab=lab.name).code == 0

        def gone() -> bool:
            try:
                os.waitpid(pid, os.WNOHANG)  # reap it if it is our child
            except ChildProcessError:
                pass
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            return False

        wait_until(gone, timeout=30, what="the drill's traffic process to end after down")
