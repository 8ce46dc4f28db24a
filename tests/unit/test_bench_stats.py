"""The bench's pure parts: medians and ranges, verdicts, what makes a run exit non-zero, ABAB order."""

from __future__ import annotations

import pytest

from bench.harness import alternate
from bench.router import WrkResult, errors_text, parse_wrk
from bench.stats import (
    ABS_LE,
    ABS_LT,
    DELTA_LE,
    RATIO_GE,
    RATIO_LE,
    Figure,
    Target,
    fmt_series,
    from_json,
    problems,
)


def fig(labctl: list[float], baseline: list[float] | None = None, target: Target | None = None, **kw) -> Figure:
    return Figure("k", "title", "s", labctl, baseline or [], "raw", target, **kw)


def test_median_and_range_are_printed() -> None:
    assert fmt_series([0.5, 0.3, 0.4, 0.9, 0.35], "s") == "0.40 s [0.30–0.90]"
    assert fmt_series([0.5], "s") == "0.50 s"
    assert fmt_series([], "s") == "—"


def test_ratio_targets_compare_medians() -> None:
    assert fig([1.0, 1.1, 1.05], [1.0, 1.0, 1.0], Target(RATIO_LE, 1.1, "")).verdict() == "ok"
    assert fig([1.2, 1.3, 1.25], [1.0, 1.0, 1.0], Target(RATIO_LE, 1.1, "")).verdict() == "MISSED"
    assert fig([95.0], [100.0], Target(RATIO_GE, 0.9, "")).verdict() == "ok"
    assert fig([85.0], [100.0], Target(RATIO_GE, 0.9, "")).verdict() == "MISSED"


def test_delta_and_absolute_targets() -> None:
    assert fig([1.4], [1.0], Target(DELTA_LE, 0.5, "")).verdict() == "ok"
    assert fig([1.6], [1.0], Target(DELTA_LE, 0.5, "")).verdict() == "MISSED"
    assert fig([0.15], target=Target(ABS_LE, 0.15, "")).verdict() == "ok"
    assert fig([0.5], target=Target(ABS_LT, 0.5, "")).verdict() == "MISSED"


def test_no_samples_is_not_measured_and_fails_the_run() -> None:
    f = fig([], target=Target(ABS_LE, 2.0, "≤ 2 s"))
    assert f.verdict() == "NOT MEASURED"
    assert problems([f], []) == ["NOT MEASURED: title"]


def test_a_ratio_without_its_twin_is_not_measured() -> None:
    assert fig([1.0], [], Target(RATIO_LE, 1.1, "")).verdict() == "NOT MEASURED"


def test_a_miss_fails_the_run_and_names_the_target() -> None:
    f = fig([2.0], [1.0], Target(RATIO_LE, 1.1, "≤ 1.1× raw"))
    assert problems([f], []) == ["MISSED: title (target ≤ 1.1× raw)"]


def test_failed_samples_fail_the_figure_even_when_the_target_is_met() -> None:
    f = fig([1.0], [1.0], Target(RATIO_LE, 1.1, ""), failed="wrk: 3 socket errors or non-2xx answers in 1 run(s)")
    assert f.verdict() == "FAILED"
    assert problems([f], []) == ["FAILED: title (wrk: 3 socket errors or non-2xx answers in 1 run(s))"]


def test_skipped_and_targetless_figures_do_not_fail_the_run() -> None:
    skipped = Figure("k", "t", "s", skipped="opt-in")
    info = fig([1.0], [2.0])
    assert skipped.verdict() == "SKIPPED" and info.verdict() == "—"
    assert problems([skipped, info], []) == []


def test_group_failures_fail_the_run() -> None:
    assert problems([], ["scale: timed out"]) == ["scale: timed out"]


def test_quick_mode_gives_no_verdicts_but_still_needs_measurements() -> None:
    missed = fig([5.0], [1.0], Target(RATIO_LE, 1.1, ""), judged=False)
    empty = fig([], target=Target(ABS_LE, 2.0, ""), judged=False)
    assert missed.verdict() == "—"
    assert problems([missed], []) == []
    assert problems([empty], []) == ["NOT MEASURED: title"]


def test_json_round_trip_keeps_the_verdict() -> None:
    f = fig([0.2, 0.3], [0.1, 0.1], Target(RATIO_LE, 1.1, "≤ 1.1×"), failed=None)
    g = from_json(f.to_json())
    assert g.verdict() == f.verdict() == "MISSED"
    assert g.labctl == [0.2, 0.3] and g.target == f.target
    q = from_json(fig([1.0], judged=False, failed="x").to_json())
    assert q.judged is False and q.failed == "x"


def test_alternate_runs_the_sides_abab() -> None:
    order: list[str] = []
    a, b = alternate(3, lambda: order.append("A") or 1.0, lambda: order.append("B") or 2.0)
    assert order == ["A", "B", "A", "B", "A", "B"]
    assert a == [1.0] * 3 and b == [2.0] * 3


WRK_OUT = """Running 1s test @ http://127.0.0.1:1234/
  1 threads and 1 connections
  Latency Distribution
     50%  412.00us
     75%  500.00us
     90%    1.20ms
     99%    2.50ms
  1234 requests in 1.00s, 300.00KB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:   1234.00
"""


def test_wrk_errors_count_socket_errors_and_non_2xx() -> None:
    r = parse_wrk(WRK_OUT)
    assert r.p50_ms == pytest.approx(0.412)
    assert (r.p99_ms, r.rps, r.requests, r.errors) == (2.5, 1234.0, 1234, 7)
    clean = WrkResult(0.4, 1.0, 1000.0, 1000, 0)
    assert errors_text([clean], [clean]) is None
    assert errors_text([clean, r], [clean]) == "wrk: 7 socket errors or non-2xx answers in 1 run(s)"
