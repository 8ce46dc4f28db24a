"""A run's result file: where it goes, the machine facts in it, and the README's table made from it.

``bench/results/<date>-<commit>.json`` is kept in the repository for the runs the README quotes;
``--quick`` runs write ``quick-<date>-<commit>.json`` (ignored by git). The pure parts (file name,
Markdown) are unit-tested.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

from bench import stats

RESULTS = Path(__file__).resolve().parent / "results"
REPO = RESULTS.parents[1]


def commit() -> tuple[str, bool]:
    """The checked-out commit (short) and whether the work tree differs from it."""

    def git(*argv: str) -> str:
        try:
            out = subprocess.run(["git", *argv], capture_output=True, text=True, timeout=30, cwd=REPO)
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return out.stdout.strip() if out.returncode == 0 else ""

    head = git("rev-parse", "--short=10", "HEAD") or "unknown"
    return head, bool(git("status", "--porcelain", "--untracked-files=no"))


def result_name(started: float, head: str, quick: bool) -> str:
    """``2026-12-07-1412-<commit>.json`` (UTC), ``quick-`` in front for a --quick run."""
    stamp = time.strftime("%Y-%m-%d-%H%M", time.gmtime(started))
    return f"{'quick-' if quick else ''}{stamp}-{head}.json"


def memory_mb() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    return None


def machine(wrk: str | None) -> dict[str, Any]:
    """Facts about this machine at the start of a run."""

    def docker_fmt(fmt: str) -> str:
        r = subprocess.run(["docker", "info", "--format", fmt], capture_output=True, text=True, timeout=30)
        return r.stdout.strip()

    return {
        "cpus": os.cpu_count(),
        "memory_mb": memory_mb(),
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "kernel": platform.release(),
        "docker": docker_fmt("{{.ServerVersion}}"),
        "storage_driver": docker_fmt("{{.Driver}}"),
        "wrk": wrk,
    }


def write(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


def header_line(data: dict[str, Any]) -> str:
    """One line: when, where, at which commit, how loaded, how long."""
    m = data.get("machine") or {}
    dirty = " (work tree changed)" if data.get("commit_dirty") else ""
    mode = "--quick run (no verdicts), " if data.get("quick") else ""
    load = m.get("loadavg_start") or []
    return (
        f"{mode}{data.get('started_at', '?')}, commit {data.get('commit', '?')}{dirty}; "
        f"{m.get('cpus', '?')} CPUs, {m.get('memory_mb', '?')} MB, Docker {m.get('docker', '?')} "
        f"({m.get('storage_driver', '?')}); load average at the start "
        f"{' '.join(str(x) for x in load) or '?'}; {data.get('duration_s', 0):.0f} s in all"
    )


def markdown(data: dict[str, Any]) -> str:
    """The README's table from one result file, with its header line and what went wrong."""
    figures = [stats.from_json(f) for f in data.get("figures", [])]
    lines = [header_line(data), "", stats.render_markdown(figures)]
    problems = data.get("problems")
    if problems is None:
        problems = stats.problems(figures, data.get("failures", []))
    if problems:
        lines += ["", f"Exit status {data.get('exit_code', 1)}; not met or not measured:", ""]
        lines += [f"- {p}" for p in problems]
    return "\n".join(lines)


def print_markdown(path: Path) -> int:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        print(f"bench: cannot read {path}: {err}")
        return 2
    if not isinstance(data, dict) or not isinstance(data.get("figures"), list):
        print(f"bench: {path} is not a bench result file (no figures)")
        return 2
    print(markdown(data))
    return 0
