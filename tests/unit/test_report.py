"""The scenario report: ``report.png`` and ``report.html`` (inline SVG, tables) from result dictionaries.

``sample_result`` builds a synthetic ``result.json`` that tells seed 000's story: a Private Space app, web.1 and
web.2 on instances of their own, traffic at 20 rps through the router. A CPU fault on web.1's instance makes web.1
slow (a few requests hit the router's 30 s × time scale limit: H12); ``ps:restart web.1`` starts a new container on
the SAME instance: still slow; ``ps:stop web.1`` (the task's solution) moves it to a NEW instance (the old one and
its fault go away): fast again.
"""

from __future__ import annotations

import random
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from labctl.scenario import report, report_plot
from labctl.scenario import report_model as model
from labctl.traffic import summarize

A, B, C = "i-0a5f3c9e21b7d4e68", "i-7d21e09b4c3f5a812", "i-c38e6b1f0d92a7454"
FAULT = (16.2, 29.4)  # the cpu fault on instance A (gone with A when web.1 is stopped)
RESTART = 21.6
STOP = 28.7


def _web1(t: float) -> dict[str, Any]:
    """web.1 at time t: (instance, container, state)."""
    if t < RESTART + 0.1:
        return {"instance": A, "container": "c1a2b3c4d5e6f7", "state": "up"}
    if t < 22.3:
        return {"instance": A, "container": None, "state": "starting"}
    if t < STOP + 0.1:
        return {"instance": A, "container": "c2b3c4d5e6f7a8", "state": "starting" if t < 23.2 else "up"}
    if t < 29.4:
        return {"instance": A, "container": "c2b3c4d5e6f7a8", "state": "down"}
    if t < 30.4:
        return {"instance": C, "container": None, "state": "starting"}
    return {"instance": C, "container": "c3c4d5e6f7a8b9", "state": "starting" if t < 31.2 else "up"}


def _timeline() -> list[dict[str, Any]]:
    out = []
    for k in range(int((38.2 - 13.8) / 0.25) + 1):
        t = round(13.8 + k * 0.25, 2)
        out.append(
            {
                "t": t,
                "app": "demo",
                "dynos": {"web.1": _web1(t), "web.2": {"instance": B, "container": "d1e2f3a4b5c6d7", "state": "up"}},
            }
        )
    return out


def _records(rng: random.Random) -> list[dict[str, Any]]:
    out = []
    for k in range(int((37.6 - 14.1) * 20)):
        t = round(14.1 + k / 20 + rng.uniform(0, 0.01), 4)
        w1 = _web1(t)
        dyno = "web.1" if rng.random() < 0.5 and w1["state"] == "up" else "web.2"
        slow = dyno == "web.1" and FAULT[0] <= t < FAULT[1]
        latency = rng.lognormvariate(6.75, 0.35) if slow else rng.lognormvariate(4.0, 0.18)
        rec = {
            "t": t,
            "ts": 1_790_000_000 + t,
            "status": 200,
            "latency_ms": round(latency, 1),
            "dyno": dyno,
            "instance": w1["instance"] if dyno == "web.1" else B,
            "release": "v3",
            "code": None,
            "error": None,
        }
        if slow and latency > 1500:  # the router's 30 s × 0.05 first-byte limit
            rec.update(status=503, code="H12", latency_ms=1500.0 + rng.uniform(0, 8))
        out.append(rec)
    return out


def _step(
    number: int, kind: str, description: str, start: float, end: float, status: str, **extra: Any
) -> dict[str, Any]:
    return {
        "number": number,
        "line": 10 + number,
        "kind": kind,
        "description": description,
        "status": status,
        "start": start,
        "end": end,
        "started_at": None,
        "ended_at": None,
        "measured": extra.pop("measured", ""),
        "expected": extra.pop("expected", ""),
        "message": "",
        "checks": [],
        **extra,
    }


def _steps() -> list[dict[str, Any]]:
    run = "run"
    return [
        _step(1, "snapshot", "snapshot 'before'", 14.0, 14.0, "done", snapshot="before"),
        _step(
            2,
            "traffic",
            "start traffic 'load': demo 20 rps for 60s",
            14.05,
            14.1,
            "done",
            stream="load",
            action="start",
        ),
        _step(
            3,
            "fault",
            "faults:add cpu --dyno web.1 -a demo --cpus 0.05",
            16.0,
            16.3,
            "pass",
            command="faults:add cpu --dyno web.1 -a demo --cpus 0.05",
            exit_code=0,
            output="Added cpu fault",
        ),
        _step(4, "wait", "wait 5s", 16.3, 21.3, "done"),
        _step(
            5,
            "expect",
            "traffic load web.1: p50 > 300ms (last 4s)",
            21.3,
            21.4,
            "pass",
            measured="p50 842 ms",
            expected="> 300ms",
        ),
        _step(
            6,
            run,
            "labctl ps:restart web.1 -a demo",
            RESTART,
            21.9,
            "pass",
            command="ps:restart web.1 -a demo",
            exit_code=0,
            output="Restarting dyno web.1 on ⬢ demo... done",
        ),
        _step(
            7,
            "wait_for",
            "demo web.1: state up, changed since before (within 30s)",
            21.9,
            23.3,
            "pass",
            measured="up; container c2b3c4d5e6f7 (changed)",
        ),
        _step(8, "expect", "demo web.1: instance same since before", 23.3, 23.35, "pass", measured=A),
        _step(9, "wait", "wait 5s", 23.4, 28.4, "done"),
        _step(
            10,
            "expect",
            "traffic load web.1: p50 > 300ms (last 4s)",
            28.4,
            28.5,
            "pass",
            measured="p50 861 ms",
            expected="> 300ms",
        ),
        _step(11, "snapshot", "snapshot 'after-restart'", 28.6, 28.6, "done", snapshot="after-restart"),
        _step(
            12,
            "task",
            "task: make web.1 fast again",
            STOP,
            31.4,
            "pass",
            prompt="web.1 is slow: its instance has a CPU fault. Make web.1 fast again without touching web.2.",
            solution="ps:stop web.1 -a demo",
            hints_shown=0,
            graded_by="solution",
        ),
        _step(13, "wait", "wait 5s", 31.4, 36.4, "done"),
        _step(
            14,
            "expect",
            "traffic load web.1: p50 < 200ms (last 4s)",
            36.4,
            36.5,
            "pass",
            measured="p50 55 ms",
            expected="< 200ms",
        ),
        _step(15, "traffic", "stop traffic 'load'", 37.6, 38.0, "done", stream="load", action="stop"),
    ]


def sample_result(traffic: bool = True, seed: int = 0) -> dict[str, Any]:
    """The whole result dictionary; ``traffic=False`` drops the streams and faults (today's scenarios)."""
    recs = _records(random.Random(seed))
    steps = _steps()
    data: dict[str, Any] = {
        "scenario": "cpu-fault-restart-vs-stop",
        "description": "A CPU fault on web.1's instance: "
        "ps:restart keeps the instance (still slow), ps:stop replaces it (fast).",
        "file": "scenarios/cpu-fault-restart-vs-stop.yaml",
        "lab": "scn-1a2b3c4d",
        "timescale": 0.05,
        "mode": "unattended",
        "status": "pass",
        "started_at": "2026-11-23T12:56:53Z",
        "ended_at": "2026-11-23T12:57:40Z",
        "duration_s": 47.1,
        "router_port": 41234,
        "expectations": {"total": 7, "held": 7},
        "message": "",
        "first_failure": None,
        "setup": {
            "status": "done",
            "start": 0.0,
            "end": 13.6,
            "message": "",
            "commands": ["spaces:create tokyo", "apps:create demo --space tokyo", "deploy sample-app"],
        },
        "steps": steps,
        "timeline": _timeline(),
        "snapshots": [
            {
                "name": "before",
                "t": 14.0,
                "at": "",
                "step": 1,
                "dynos": {
                    "demo": {
                        "web.1": {"instance": A, "container": "c1a2b3c4d5e6f7", "state": "up"},
                        "web.2": {"instance": B, "container": "d1e2f3a4b5c6d7", "state": "up"},
                    }
                },
            }
        ],
        "traffic": [
            {
                "name": "load",
                "app": "demo",
                "path": "/slow?ms=50",
                "rps": 20,
                "duration": 60,
                "step": 2,
                "start": 14.1,
                "end": 37.8,
                "status": "stopped",
                "summary": summarize(recs),
                "records": recs,
            }
        ],
        "faults": [
            {
                "instance": A,
                "kind": "cpu",
                "detail": "cpus=0.05",
                "start": FAULT[0],
                "end": FAULT[1],
                "dynos": ["demo/web.1"],
            }
        ],
        "teardown": {"status": "done", "removed": {}, "message": "", "steps": []},
    }
    if not traffic:
        data["traffic"], data["faults"] = [], []
        data["steps"] = [s for s in steps if s["kind"] not in ("traffic", "fault", "task")]
    return data


# -- the files --------------------------------------------------------------------------------------


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", "a PNG file"
    assert head[12:16] == b"IHDR"
    return struct.unpack(">II", head[16:24])


def test_report_png_and_html_tell_the_story(tmp_path: Path):
    page = report.write_report(sample_result(), tmp_path)
    assert page == tmp_path / "report.html"
    width, height = _png_size(tmp_path / "report.png")
    assert width == 1500 and 700 <= height <= 1600

    html = page.read_text()
    assert html.count("<svg") == 1 and html.count("</svg>") == 1
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", ""), "self-contained: nothing fetched"
    assert "xlink:" not in html
    svg = html[html.index("<svg") : html.index("</svg>")]
    # the picture's words, as text in the SVG: actions, instance changes, the fault, the panels
    for word in (
        "ps:restart web.1",
        "task: ps:stop web.1",
        "faults:add cpu web.1",
        "↻ same instance",
        "→ new instance i-c38e6b1f",
        "cpu fault",
        "latency",
        "errors / s",
        "503 H12",
        "PASS",
        "cpu-fault-restart-vs-stop",
    ):
        assert word in svg, word
    # the tables: per stream by dyno and by instance, the faults, the task's prompt, the steps
    assert "<h2>Traffic: load</h2>" in html
    assert "<th>by dyno</th>" in html and "<th>by instance</th>" in html
    assert "503 H12 ×4" in html
    assert "<h2>Instance faults</h2>" in html and "cpus=0.05" in html
    assert "Make web.1 fast again without touching web.2." in html and "the solution was run" in html
    assert "ps:restart web.1 -a demo" in html and A in html


def test_a_result_without_traffic_still_renders(tmp_path: Path):
    report.write_report(sample_result(traffic=False), tmp_path)
    width, height = _png_size(tmp_path / "report.png")
    assert width == 1500 and 250 <= height < 700  # lanes and checks only
    html = (tmp_path / "report.html").read_text()
    svg = html[html.index("<svg") : html.index("</svg>")]
    assert "ps:restart web.1" in svg and "↻ same instance" in svg
    assert "latency" not in svg and "Traffic:" not in html and "Instance faults" not in html


def test_a_run_whose_steps_did_not_run_has_no_picture(tmp_path: Path):
    data = sample_result(traffic=False)
    data.update(status="error", timeline=[], first_failure="setup failed: labctl deploy: boom")
    for s in data["steps"]:
        s.update(status="skipped", start=None, end=None)
    report.write_report(data, tmp_path)
    assert not (tmp_path / "report.png").exists()
    html = (tmp_path / "report.html").read_text()
    assert "no picture: the steps did not run" in html and "setup failed: labctl deploy: boom" in html


def test_a_picture_that_cannot_be_drawn_leaves_the_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    def broken(_data: dict[str, Any]) -> None:
        raise ValueError("no room")

    monkeypatch.setattr(report_plot, "render", broken)
    report.write_report(sample_result(), tmp_path)
    html = (tmp_path / "report.html").read_text()
    assert "the picture could not be drawn: no room" in html and "<th>by dyno</th>" in html


def test_a_failed_run_says_fail_and_names_the_first_failure(tmp_path: Path):
    data = sample_result()
    data["steps"][9].update(status="fail", expected="< 200ms")
    data.update(
        status="fail",
        expectations={"total": 7, "held": 6},
        first_failure="step 10 expect traffic load web.1: p50: measured 861 ms vs expected < 200ms",
    )
    report.write_report(data, tmp_path)
    html = (tmp_path / "report.html").read_text()
    assert "<span class='verdict fail'>FAIL</span>" in html and "measured 861 ms vs expected &lt; 200ms" in html
    svg = html[html.index("<svg") : html.index("</svg>")]
    assert "FAIL" in svg and "✗" in svg


def test_the_report_module_does_not_import_matplotlib():
    code = "import sys, labctl.main, labctl.scenario.report; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# -- what the picture is made of ----------------------------------------------------------------------


def test_short_commands_drop_the_app_and_the_lab():
    assert model.short_command("labctl ps:restart web.1 -a demo") == "ps:restart web.1"
    assert model.short_command("faults:add cpu --dyno web.1 -a demo --cpus 0.05") == "faults:add cpu web.1 --cpus 0.05"
    assert model.short_command('run "echo -a demo') == 'run "echo -a demo'  # unbalanced quotes: as given


def test_lanes_mark_a_restart_on_the_same_instance_and_a_stop_on_a_new_one():
    data = sample_result()
    lo, hi = model.time_window(data)
    assert model.lanes(data, lo) == [("demo", "web.1"), ("demo", "web.2")]
    web1 = model.spans(data, "demo", "web.1", lo, hi)
    labels = [label for _a, _b, label in model.container_marks(web1)]
    assert labels == ["i-0a5f3c9e", "↻ same instance", "→ new instance i-c38e6b1f"]
    assert {s.state for s in web1} == {"up", "starting", "down"}
    assert any(s.container is None for s in web1)
    assert [label for *_x, label in model.container_marks(model.spans(data, "demo", "web.2", lo, hi))] == ["i-7d21e09b"]


def test_a_fault_covers_a_dyno_only_while_it_runs_on_the_faulty_instance():
    data = sample_result()
    lo, hi = model.time_window(data)
    spans = {k: model.spans(data, *k, lo, hi) for k in model.lanes(data, lo)}
    overlays = model.fault_overlays(data, spans, hi)
    assert overlays == [(("demo", "web.1"), FAULT[0], FAULT[1], "cpu fault")]
    data["faults"][0]["end"] = None  # still on at the end: web.1 left the instance at 29.4 all the same
    assert FAULT[1] <= model.fault_overlays(data, spans, hi)[0][2] <= FAULT[1] + 0.25  # the next sample


def test_a_router_fault_covers_every_dyno_behind_it_on_any_instance():
    """A router-end fault (instance None) covers the dynos it lists for its whole span, whatever instance they run
    on — not the moments a dyno had no instance."""
    data = sample_result()
    lo, hi = model.time_window(data)
    spans = {k: model.spans(data, *k, lo, hi) for k in model.lanes(data, lo)}
    data["faults"] = [{"instance": None, "router": "tokyo", "kind": "latency", "detail": "latency 400ms",
                       "start": 12.0, "end": 30.0, "dynos": ["demo/web.1", "demo/web.2"]}]  # fmt: skip
    overlays = model.fault_overlays(data, spans, hi)
    assert {lane for lane, *_ in overlays} == {("demo", "web.1"), ("demo", "web.2")}
    assert all(label == "latency fault (router tokyo)" for *_x, label in overlays)
    web2 = [(a, b) for lane, a, b, _ in overlays if lane == ("demo", "web.2")]
    assert len(web2) == 1 and 12.0 <= web2[0][0] < 15.0 and web2[0][1] == 30.0  # web.2 ran all along: one stretch


def test_actions_and_segment_medians_say_restart_did_not_help_stop_did():
    data = sample_result()
    lo, hi = model.time_window(data)
    acts = model.actions(data)
    assert [(a.kind, a.label) for a in acts if a.kind != "snapshot"] == [
        ("traffic", "▶ traffic load 20 rps"),
        ("fault", "faults:add cpu web.1 --cpus 0.05"),
        ("run", "ps:restart web.1"),
        ("task", "task: ps:stop web.1"),
        ("traffic", "■ traffic load"),
    ]
    cuts = [a.t for a in acts if a.kind in ("run", "fault", "task")]
    web1 = {a: p50 for d, a, _b, p50, _n in model.segment_medians(model.records(data), cuts, lo, hi) if d == "web.1"}
    assert web1[16.0] > 500 and web1[RESTART] > 500 and web1[STOP] < 100  # slow, still slow, fast
    errors = model.error_bins(model.records(data), model.bin_width(hi - lo))
    assert list(errors) == ["503 H12"] and sum(errors["503 H12"].values()) == 4


def test_release_bins_show_which_release_answered_when():
    recs = [
        {"t": 0.1, "release": "v1"},
        {"t": 0.3, "release": "v1"},
        {"t": 1.2, "release": "v1"},
        {"t": 1.4, "release": "v10"},
        {"t": 2.5, "release": "v10"},
        {"t": 2.6, "release": None},
    ]
    bins = model.release_bins(recs, 1.0)
    assert list(bins) == ["v1", "v10"], "oldest first, by number"
    assert bins["v1"] == {0: 1.0, 1: 0.5, 2: 0.0}
    assert bins["v10"] == {0: 0.0, 1: 0.5, 2: 1.0}


def test_a_switch_of_release_gets_a_served_by_strip():
    one = sample_result()
    assert "served by" not in report_plot.render(one).svg, "one release: no strip"
    two = sample_result()
    for rec in two["traffic"][0]["records"]:
        rec["release"] = "v3" if rec["t"] < 25 else "v4"
    svg = report_plot.render(two).svg
    assert "served by" in svg and "v3 (" in svg and "v4 (" in svg
