"""The result file's name and the README table made from one result file."""

from __future__ import annotations

import json
from pathlib import Path

from bench import report
from bench.__main__ import main
from bench.stats import ABS_LE, RATIO_LE, Figure, Target


def result(figures: list[Figure], **extra: object) -> dict:
    return {
        "started_at": "2026-12-07T14:12:00Z",
        "commit": "5c257fc0ab",
        "commit_dirty": False,
        "quick": False,
        "exit_code": 1,
        "duration_s": 301.4,
        "machine": {
            "cpus": 2,
            "memory_mb": 24105,
            "loadavg_start": [0.9, 1.1, 2.2],
            "docker": "20.10.24",
            "storage_driver": "fuse-overlayfs",
        },  # fmt: skip
        "figures": [f.to_json() for f in figures],
        "failures": [],
        **extra,
    }


def test_result_name_has_date_and_commit() -> None:
    started = 1796652720.0  # 2026-12-07 14:12 UTC
    assert report.result_name(started, "5c257fc0ab", quick=False) == "2026-12-07-1412-5c257fc0ab.json"
    assert report.result_name(started, "5c257fc0ab", quick=True) == "quick-2026-12-07-1412-5c257fc0ab.json"


def test_markdown_has_machine_commit_table_and_misses() -> None:
    ok = Figure("ps", "`labctl ps`", "s", [0.1, 0.12, 0.11], target=Target(ABS_LE, 0.15, "≤ 0.15 s"))
    miss = Figure("restart", "restart", "s", [0.6] * 5, [0.4] * 5, "raw", Target(RATIO_LE, 1.1, "≤ 1.1× raw"))
    skipped = Figure("scenarios", "scenario library", "s", skipped="not measured (opt-in)")
    text = report.markdown(result([ok, miss, skipped]))
    first = text.splitlines()[0]
    assert "2026-12-07T14:12:00Z" in first and "5c257fc0ab" in first and "2 CPUs" in first
    assert "fuse-overlayfs" in first and "0.9 1.1 2.2" in first and "301 s" in first
    assert "| `labctl ps` | 0.11 s [0.10–0.12] | — | — | ≤ 0.15 s | ok | 3 |" in text
    assert "| restart | 0.60 s [0.60–0.60] | raw: 0.40 s [0.40–0.40] | 1.50× | ≤ 1.1× raw | MISSED | 5 |" in text
    assert "| scenario library | not measured (opt-in) |" in text and "SKIPPED" in text
    assert "- MISSED: restart (target ≤ 1.1× raw)" in text


def test_markdown_of_a_clean_run_lists_no_problems() -> None:
    ok = Figure("ps", "ps", "s", [0.1], target=Target(ABS_LE, 0.15, "≤ 0.15 s"))
    assert "not met" not in report.markdown(result([ok], exit_code=0, problems=[]))


def test_markdown_command_reads_one_named_file(tmp_path: Path, capsys) -> None:
    path = tmp_path / "r.json"
    path.write_text(json.dumps(result([Figure("ps", "ps", "s", [0.1])])))
    assert main(["--markdown", str(path)]) == 0
    assert "| ps | 0.10 s |" in capsys.readouterr().out


def test_markdown_of_a_bad_file_is_one_line_and_exit_2(tmp_path: Path, capsys) -> None:
    assert main(["--markdown", str(tmp_path / "missing.json")]) == 2
    (tmp_path / "x.json").write_text("[]")
    assert main(["--markdown", str(tmp_path / "x.json")]) == 2
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 2 and all(line.startswith("bench: ") for line in out)
