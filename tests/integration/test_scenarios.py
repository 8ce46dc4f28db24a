"""`labctl scenario run` end to end against the real engine: a lab of its own, a report, exit 0/1, teardown."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO, _leftovers, cli

pytestmark = pytest.mark.docker

SCENARIO = REPO / "scenarios" / "private-space-restart-vs-stop.yaml"


def _final_line(out: str) -> str:
    return out.strip().splitlines()[-1]


def test_private_space_scenario_passes_with_a_report(lab_state: Path, tmp_path: Path):
    report = tmp_path / "report"
    r = cli("scenario", "run", str(SCENARIO), "--report", str(report))
    assert r.code == 0, r.out + r.err
    assert _final_line(r.out) == (
        f"PASS: private-space-restart-vs-stop (14/14 expectations held) — report: {report / 'report.html'}"
    )

    data = json.loads((report / "result.json").read_text())
    assert data["scenario"] == "private-space-restart-vs-stop" and data["status"] == "pass"
    assert data["lab"].startswith("scn-") and data["timescale"] == 0.05
    assert data["expectations"] == {"total": 14, "held": 14}
    assert data["setup"]["status"] == "done" and data["teardown"]["status"] == "done"
    steps = data["steps"]
    assert len(steps) == 17 and [s["number"] for s in steps] == list(range(1, 18))
    for s in steps:
        assert s["status"] in ("pass", "done"), s
        assert s["start"] <= s["end"] and s["started_at"] and s["ended_at"]
    assert steps[2]["kind"] == "run" and steps[2]["command"] == "ps:restart -d web.1 -a demo"
    assert steps[2]["exit_code"] == 0

    # the lesson itself, from the recorded snapshots and measurements
    assert [s["name"] for s in data["snapshots"]] == ["before", "after-restart"]
    before, after_restart = (s["dynos"]["demo"]["web.1"] for s in data["snapshots"])
    assert after_restart["instance"] == before["instance"], "ps:restart kept web.1's instance"
    assert after_restart["container"] != before["container"], "…with a new container"
    stop_check = steps[11]
    assert stop_check["kind"] == "expect" and stop_check["status"] == "pass"
    assert stop_check["measured"].split()[0] != before["instance"], "ps:stop gave web.1 a new instance"
    assert before["instance"] in stop_check["expected"]
    assert steps[12]["measured"].startswith(f"{before['instance']} is gone")
    assert data["timeline"] and all({"t", "app", "dynos"} <= set(p) for p in data["timeline"])

    html = (report / "report.html").read_text()
    assert "<svg" in html and "ps:stop -d web.1 -a demo" in html and before["instance"] in html
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", ""), "self-contained: nothing fetched"
    assert _leftovers(data["lab"]) == []


def test_a_flipped_expectation_fails_names_it_and_still_tears_down(lab_state: Path, tmp_path: Path):
    text = SCENARIO.read_text()
    flipped = text.replace(
        "- expect: {app: demo, dyno: web.1, instance: same, since: before}",
        "- expect: {app: demo, dyno: web.1, instance: different, since: before}",
        1,
    )
    assert flipped != text
    # and a wait_for that cannot be met (web.2 keeps running): it fails the run and stops the remaining steps
    flipped += (
        "  - wait_for: {app: demo, dyno: web.2, state: crashed}\n    timeout: 1500ms\n"
        "  - expect: {app: demo, dyno: web.1, state: up}\n"
    )
    path = tmp_path / "flipped.yaml"
    path.write_text(flipped)
    report = tmp_path / "report"
    lab = f"scn-t{uuid.uuid4().hex[:6]}"
    r = cli("scenario", "run", str(path), "--report", str(report), "--lab", lab)
    assert r.code == 1, r.out + r.err

    data = json.loads((report / "result.json").read_text())
    assert data["status"] == "fail" and data["lab"] == lab
    assert data["expectations"] == {"total": 16, "held": 13}
    before = data["snapshots"][0]["dynos"]["demo"]["web.1"]["instance"]
    line = _final_line(r.out)
    assert line.startswith(
        "FAIL: private-space-restart-vs-stop (13/16 expectations held) — step 5 expect "
        "demo web.1: instance different since before: "
    ), line
    assert f"measured {before} (the same instance) vs expected an instance other than 'before''s {before}" in line
    assert line.endswith(f" — report: {report / 'report.html'}")

    steps = data["steps"]
    assert steps[4]["status"] == "fail" and steps[4]["checks"][0]["measured"].startswith(before)
    assert [s["status"] for s in steps[5:17]].count("fail") == 0, "a failed expect does not stop the run"
    assert steps[17]["status"] == "fail" and steps[17]["message"].startswith("not met within 1500ms")
    assert steps[17]["measured"].startswith("up")
    assert steps[18]["status"] == "skipped" and steps[18]["start"] is None
    assert "<svg" in (report / "report.html").read_text()
    assert data["teardown"]["status"] == "done"
    assert _leftovers(lab) == []


@contextlib.contextmanager
def _ctrl_c_enabled() -> Iterator[None]:
    """A child started in here gets Ctrl-C (SIGINT) as a terminal gives it, whoever started pytest.

    A shell starts a background job with SIGINT ignored, and an ignored signal stays ignored across exec: the
    scenario run would never see its Ctrl-C. A handled one is reset to the default, which Python makes a
    KeyboardInterrupt."""
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupt_tears_the_lab_down(lab_state: Path, tmp_path: Path, sig: signal.Signals):
    """Ctrl-C ends with 130; SIGTERM (a CI timeout) tears down, writes the report, then ends by SIGTERM."""
    scenario = tmp_path / "long.yaml"
    scenario.write_text("name: long-wait\nsetup:\n  apps:\n    - name: idle\nsteps:\n  - wait: 5m\n")
    lab = f"scn-c{uuid.uuid4().hex[:6]}"
    report = tmp_path / "report"
    with _ctrl_c_enabled():
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from labctl.main import run; run()",
                "scenario",
                "run",
                str(scenario),
                "--lab",
                lab,
                "--report",
                str(report),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=os.environ.copy(),
            cwd=tmp_path,
        )
    try:
        deadline = time.time() + 120
        header = ""
        while time.time() < deadline and proc.poll() is None:
            header = proc.stdout.readline()  # type: ignore[union-attr]
            if header.lstrip().startswith("#"):
                break
        assert header.lstrip().startswith("#"), "the step table never started"
        time.sleep(1.0)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
            cli("down", "--lab", lab)
    assert proc.returncode == (130 if sig == signal.SIGINT else -signal.SIGTERM), out + err
    assert "FAIL: long-wait (0/0 expectations held) — interrupted" in out
    assert f"Tearing down lab {lab}" in err
    data = json.loads((report / "result.json").read_text())
    assert data["status"] == "interrupted" and data["teardown"]["status"] == "done"
    assert data["message"] == ("interrupted (Ctrl-C)" if sig == signal.SIGINT else "interrupted (SIGTERM)")
    assert _leftovers(lab) == []


class _Terminal:
    """The master side of a pty: ``expect(needle)`` reads until ``needle`` appears after the last match."""

    def __init__(self, fd: int):
        self.fd, self.text, self.pos = fd, "", 0

    def expect(self, needle: str, timeout: float) -> str:
        import select

        deadline = time.monotonic() + timeout
        while True:
            at = self.text.find(needle, self.pos)
            if at >= 0:
                seen, self.pos = self.text[self.pos : at + len(needle)], at + len(needle)
                return seen
            if time.monotonic() > deadline:
                break
            ready, _, _ = select.select([self.fd], [], [], 0.5)
            if ready:
                try:
                    data = os.read(self.fd, 65536)
                except OSError:
                    break
                if not data:
                    break
                self.text += data.decode("utf-8", "replace")
        raise AssertionError(f"no {needle!r} within {timeout:g}s; the terminal showed:\n{self.text[-3000:]}")

    def type(self, line: str) -> None:
        os.write(self.fd, line.encode() + b"\n")


def test_interactive_run_in_a_pty(lab_state: Path, tmp_path: Path):
    """A learner at a terminal: a wrong answer graded as failed on `check`, the right one completes the task."""
    import pty

    scenario = REPO / "tests" / "fixtures" / "scenarios" / "interactive-ps.yaml"
    report = tmp_path / "report"
    master, slave = pty.openpty()
    env = {**os.environ, "LABCTL_STATE_DIR": str(lab_state), "NO_COLOR": "1"}
    with _ctrl_c_enabled():
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from labctl.main import run; run()",
                "scenario",
                "run",
                str(scenario),
                "--interactive",
                "--report",
                str(report),
            ],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            cwd=REPO,
            close_fds=True,
        )
    os.close(slave)
    term = _Terminal(master)
    try:
        term.expect("Put web.1 on a new runtime instance.", 300)
        term.expect("lab> ", 30)
        term.type("labctl ps:restart -d web.1 -a demo")
        assert "Restarting dyno web.1" in term.expect("lab> ", 60)
        term.type("hint")
        assert "ps:restart keeps" in term.expect("lab> ", 10)
        term.type("check")
        term.expect("Task not done", 60)
        assert "the same instance" in term.expect("Try again", 60)  # the measured value, then the next task
        term.expect("lab> ", 30)
        term.type("kubectl delete pod web-1")
        assert "not a labctl command" in term.expect("lab> ", 10)
        term.type("ps:stop web.1 -a demo")
        term.expect("✓ Task done", 90)
        assert "FAIL: interactive-ps (2/3" in term.expect("expectations held)", 120)
        assert proc.wait(timeout=60) == 1
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=120)
        os.close(master)

    data = json.loads((report / "result.json").read_text())
    assert data["mode"] == "interactive" and data["status"] == "fail"
    first, second = (s for s in data["steps"] if s["kind"] == "task")
    assert (first["status"], first["graded_by"]) == ("fail", "learner")
    assert first["hints_shown"] == ["ps:restart keeps a Private Space dyno on its instance"]
    assert (second["status"], second["graded_by"]) == ("pass", "learner")
    assert data["teardown"]["status"] == "done"
    assert not _leftovers(data["lab"])


_TINY = """name: {name}
description: a lab with one app and one check of `labctl apps`
setup:
  apps:
    - name: demo
steps:
  - expect: {{command: "apps", output: "{output}"}}
"""


def test_run_all_runs_a_directory_a_few_at_a_time_and_fails_on_one_failure(lab_state: Path, tmp_path: Path):
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "a-holds.yaml").write_text(_TINY.format(name="a-holds", output="demo"))
    (lib / "b-fails.yaml").write_text(_TINY.format(name="b-fails", output="no-such-app"))
    report = tmp_path / "all"
    r = cli("scenario", "run-all", str(lib), "--jobs", "2", "--report", str(report))
    assert r.code == 1, r.out + r.err
    lines = r.out.strip().splitlines()
    assert lines[0] == f"Running 2 scenarios, 2 at a time; reports in {report}/"
    assert any(ln.split()[:3] == ["PASS", "a-holds", "1/1"] for ln in lines), r.out
    assert any(ln.split()[:3] == ["FAIL", "b-fails", "0/1"] and "'no-such-app'" in ln for ln in lines), r.out
    assert lines[-1].startswith("FAIL: 1 of 2 scenarios passed in "), lines[-1]
    index = json.loads((report / "index.json").read_text())
    assert (index["jobs"], index["passed"], index["total"]) == (2, 1, 2)
    rows = {row["name"]: row for row in index["scenarios"]}
    assert rows["a-holds"]["status"] == "pass" and rows["b-fails"]["status"] == "fail"
    for row in index["scenarios"]:
        assert Path(row["report"]).is_file()
        lab = json.loads((Path(row["report"]).parent / "result.json").read_text())["lab"]
        assert _leftovers(lab) == [], "each scenario's lab is gone"


def test_run_all_refuses_a_directory_with_a_broken_file_before_any_lab_starts(lab_state: Path, tmp_path: Path):
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "a-holds.yaml").write_text(_TINY.format(name="a-holds", output="demo"))
    (lib / "b-broken.yaml").write_text("name: b-broken\nsetup: {apps: []}\nsteps: []\n")
    report = tmp_path / "all"
    labs_before = set(lab_state.iterdir())  # the fixture's state directory is shared with earlier tests
    r = cli("scenario", "run-all", str(lib), "--report", str(report))
    assert r.code == 1 and r.out == ""
    assert len(r.err.strip().splitlines()) == 1 and "b-broken.yaml" in r.err, r.err
    assert not report.exists() and set(lab_state.iterdir()) == labs_before, "nothing ran"
    r = cli("scenario", "run-all", str(lib), "--jobs", "9")
    assert r.code != 0 and "--jobs" in r.err and len(r.err.strip().splitlines()) == 1, r.err


def test_a_reader_that_goes_away_does_not_cost_the_teardown(lab_state: Path, tmp_path: Path):
    """`labctl scenario run FILE 2>&1 | head -3`: once head has its lines, every write fails (BrokenPipeError);
    the run must still take its lab down."""
    path = tmp_path / "tiny.yaml"
    path.write_text(_TINY.format(name="tiny", output="demo").replace("steps:\n", "steps:\n  - wait: 2s\n"))
    lab = f"scn-p{uuid.uuid4().hex[:6]}"
    proc = subprocess.Popen(
        [sys.executable, "-c", "from labctl.main import run; run()", "scenario", "run", str(path), "--lab", lab,
         "--report", str(tmp_path / "r")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    seen = [proc.stdout.readline() for _ in range(3)]
    while seen[-1] and not seen[-1].startswith("  #  kind"):  # the step table's header: the lab is up
        seen.append(proc.stdout.readline())
    assert seen[0].startswith("Scenario tiny:") and seen[-1], seen
    assert (lab_state / lab).exists()
    proc.stdout.close()  # the reader is gone: the next write (a step's row, then the teardown's line) fails
    assert proc.wait(timeout=180) != 0
    assert _leftovers(lab) == [], "the lab was torn down although nobody read its progress"
    assert not (lab_state / lab).exists()
