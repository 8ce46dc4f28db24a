"""``scenario run-all``: every scenario of a directory, each in a lab of its own, a few at a time.

Each scenario runs as its own ``labctl scenario run FILE --json`` process: the runner times steps with SIGALRM and
handles SIGTERM in its main thread, and a process of its own per scenario keeps one scenario's crash from taking
the others along. Ctrl-C or SIGTERM here is passed on as SIGTERM to the scenarios under way, which tear their labs
down and write their reports (runner.py); then this exits 130.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType

from labctl.errors import LabError

MAX_JOBS = 8
RUN_TIMEOUT = 900.0  # seconds one scenario may take before it is stopped (the longest takes about 90 s here)


@dataclass
class LibraryRow:
    file: str
    name: str
    status: str  # pass | fail | error | interrupted
    exit_code: int
    seconds: float
    checks: str  # "5/5"
    message: str
    report: str


def check_jobs(jobs: int) -> None:
    if not (1 <= jobs <= MAX_JOBS):
        raise LabError(f"Invalid --jobs {jobs}: it must be between 1 and {MAX_JOBS}")


def scenario_files(directory: Path) -> list[Path]:
    """The directory's scenario files, each loaded once so that a broken one stops the run before any lab starts."""
    from labctl.scenario.loader import load

    if not directory.is_dir():
        raise LabError(f"{directory} is not a directory")
    files = sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")])
    if not files:
        raise LabError(f"No scenarios in {directory}")
    for f in files:
        load(f)  # raises ScenarioError: one line naming the file, line and field
    return files


def _argv() -> list[str]:
    """This very labctl: the console script beside the interpreter, else the entry point."""
    script = Path(sys.executable).with_name("labctl")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from labctl.main import run; run()"]


class Library:
    """Runs the files ``jobs`` at a time; ``on_done`` hears of each as it ends (in the order they end)."""

    def __init__(self, files: list[Path], report_dir: Path, jobs: int, on_done: Callable[[LibraryRow], None]):
        check_jobs(jobs)
        self.files, self.report_dir, self.jobs, self.on_done = files, report_dir, jobs, on_done
        self.stopping = threading.Event()
        self._procs: set[subprocess.Popen[str]] = set()
        self._guard = threading.RLock()  # the signal handler takes it too, in the main thread

    def run(self) -> list[LibraryRow]:
        old = {s: signal.signal(s, self._stop) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            with ThreadPoolExecutor(max_workers=self.jobs, thread_name_prefix="scenario") as pool:
                try:
                    rows = list(pool.map(self._one, self.files))
                except BaseException:
                    # a bug of ours in one worker: stop the others' scenarios (they tear down) and start no more
                    self._stop(signal.SIGTERM, None)
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise
        finally:
            for s, handler in old.items():
                signal.signal(s, handler)
        return rows

    def _tell(self, row: LibraryRow) -> None:
        """``on_done``, which may print to a pipe whose reader went away (``run-all | head``): the runs go on."""
        try:
            self.on_done(row)
        except OSError:
            pass

    def _stop(self, signum: int, frame: FrameType | None) -> None:
        """Ctrl-C or SIGTERM: start nothing more; the running scenarios get SIGTERM and tear their labs down."""
        self.stopping.set()
        with self._guard:
            for p in self._procs:
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)

    def _one(self, f: Path) -> LibraryRow:
        report = self.report_dir / f.stem
        if self.stopping.is_set():
            row = LibraryRow(str(f), f.stem, "interrupted", 130, 0.0, "", "not started", "")
            self._tell(row)
            return row
        started = time.monotonic()
        cmd = [*_argv(), "scenario", "run", str(f), "--report", str(report), "--json"]
        # its own session: a Ctrl-C at the terminal reaches this process only, which passes it on as SIGTERM
        with subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True,
        ) as proc:  # fmt: skip
            with self._guard:
                self._procs.add(proc)
                if self.stopping.is_set():  # a Ctrl-C between the check above and now: this one stops too
                    proc.send_signal(signal.SIGTERM)
            try:
                out, err = proc.communicate(timeout=RUN_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGTERM)  # its teardown still runs
                out, err = proc.communicate()
                err = f"stopped after {RUN_TIMEOUT:.0f} s\n{err}"
            finally:
                with self._guard:
                    self._procs.discard(proc)
        row = _row(f, proc.returncode, time.monotonic() - started, out, err, report)
        if self.stopping.is_set() and row.status != "pass":
            row.status = "interrupted"  # whatever step the SIGTERM cut short
        self._tell(row)
        return row


def _row(f: Path, code: int, seconds: float, out: str, err: str, report: Path) -> LibraryRow:
    """One scenario's line, from its ``result.json`` on stdout (status, expectations, first failure)."""
    try:
        data = json.loads(out)
    except ValueError:
        data = None
    if not isinstance(data, dict):  # it ended before a result: its last stderr line says why
        last = next((ln.strip() for ln in reversed(err.splitlines()) if ln.strip()), f"exit {code}")
        status = "interrupted" if code in (130, -signal.SIGTERM, 128 + signal.SIGTERM) else "error"
        return LibraryRow(str(f), f.stem, status, code, round(seconds, 1), "", last, "")
    checks = data.get("expectations") or {}
    return LibraryRow(
        str(f),
        str(data.get("scenario", f.stem)),
        str(data.get("status", "error")),
        code,
        round(seconds, 1),
        f"{checks.get('held', 0)}/{checks.get('total', 0)}",
        str(data.get("first_failure") or data.get("message") or ""),
        str(report / "report.html") if (report / "report.html").exists() else "",
    )


def write_index(report_dir: Path, rows: list[LibraryRow], wall: float, jobs: int) -> Path:
    """``index.json`` in the report directory: every scenario's row, the wall time and the job count."""
    report_dir.mkdir(parents=True, exist_ok=True)
    path = report_dir / "index.json"
    passed = sum(1 for r in rows if r.status == "pass")
    doc = {"wall_s": round(wall, 1), "jobs": jobs, "passed": passed, "total": len(rows), "scenarios": []}
    doc["scenarios"] = [asdict(r) for r in rows]
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return path
