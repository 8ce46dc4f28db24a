"""Every scenario shipped in scenarios/ passes unattended on this machine (issue: "CI runs them").

Each runs as a user runs it — `labctl scenario run FILE` — in a lab of its own that the runner tears down; the
test then checks the report is there and nothing of the lab is left. private-space-restart-vs-stop.yaml is run
(and picked apart) by test_scenarios.py already, so it is not run twice.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import REPO, _leftovers, cli

pytestmark = pytest.mark.docker

COVERED_ELSEWHERE = {
    "private-space-restart-vs-stop.yaml",
    "ps-cpu-fault-what-if.yaml",  # both variants: test_scenario_compare.py
}
LIBRARY = sorted(p for p in (REPO / "scenarios").glob("*.yaml") if p.name not in COVERED_ELSEWHERE)


@pytest.mark.parametrize("path", LIBRARY, ids=[p.stem for p in LIBRARY])
def test_shipped_scenario_passes_unattended(path: Path, lab_state: Path, tmp_path: Path):
    report = tmp_path / "report"
    r = cli("scenario", "run", str(path), "--report", str(report))
    final = (r.out.strip().splitlines() or [""])[-1]
    assert r.code == 0, f"{path.name}: {final}\n{r.out[-4000:]}\n{r.err[-2000:]}"
    assert final.startswith("PASS: "), final
    data = json.loads((report / "result.json").read_text())
    assert data["status"] == "pass" and data["teardown"]["status"] == "done"
    assert data["expectations"]["held"] == data["expectations"]["total"] > 0
    assert (report / "report.html").is_file() and (report / "report.png").stat().st_size > 10_000
    assert not _leftovers(data["lab"]), "the scenario's lab left something on the engine"
