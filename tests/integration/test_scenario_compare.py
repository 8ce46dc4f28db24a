"""`labctl scenario compare` on the shipped what-if file: both variants run on labs of their own, one report with
both timelines and each variant's error budget (docs/scenarios.md "What-if runs")."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import REPO, _leftovers, cli

pytestmark = pytest.mark.docker


def test_compare_restart_vs_stop_under_a_cpu_fault(lab_state: Path, tmp_path: Path):
    report = tmp_path / "cmp"
    r = cli("scenario", "compare", str(REPO / "scenarios" / "ps-cpu-fault-what-if.yaml"), "--report", str(report))
    assert r.code == 0, r.out[-3000:] + r.err[-3000:]
    lines = r.out.strip().splitlines()
    assert lines[0].startswith("restart        PASS  failed ") and lines[0].endswith("not recovered within the run")
    assert lines[1].startswith("stop           PASS  failed ") and "recovered " in lines[1]
    assert lines[-1] == f"report: {report / 'compare.html'}"
    figures = json.loads((report / "compare.json").read_text())
    restart, stop = figures["variants"]
    assert (restart["variant"], stop["variant"]) == ("restart", "stop")
    assert restart["status"] == stop["status"] == "pass"
    # The same fault; only the remedy differs: the restart leaves web.1 on its sick instance (never recovers),
    # the stop moves it to a new one (recovers). Their p95s are not compared: from the fault on, more than 5 % of
    # either run's requests went to the sick dyno, so both p95s measure how slow it was (a busy machine moved the
    # stop's above the restart's in CI: 540 vs 394 ms), not the remedy.
    assert restart["trouble_at"] is not None and restart["time_to_recover_s"] is None
    assert stop["time_to_recover_s"] is not None and 0 < stop["time_to_recover_s"] < 40
    assert restart["p95_ms"] is not None and stop["p95_ms"] is not None
    for name in ("restart", "stop"):
        data = json.loads((report / name / "result.json").read_text())
        assert data["teardown"]["status"] == "done" and not _leftovers(data["lab"])
        runs = [s["command"] for s in data["steps"] if s["kind"] == "run"]
        assert runs == [f"ps:{name} -d web.1 -a demo"]
    page = (report / "compare.html").read_text()
    assert page.count("<svg") == 2 and "restart/report.html" in page and "stop/report.html" in page
    assert (report / "compare.png").stat().st_size > 20_000
