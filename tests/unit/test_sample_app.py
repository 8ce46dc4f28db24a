"""images/sample-app/app.py as a real process on 127.0.0.1 (no Docker): the $PORT contract and its knobs."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parents[2] / "images" / "sample-app" / "app.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proc:
    def __init__(self, port: int, **env: str) -> None:
        self.port = port
        full = {k: v for k, v in os.environ.items() if k not in ("BIND_PORT", "IGNORE_SIGTERM", "NO_BIND")}
        full.update(
            {
                "PORT": str(port),
                "BIND_HOST": "127.0.0.1",
                "DYNO": "web.1",
                "LABCTL_APP": "demo",
                "HEROKU_RELEASE_VERSION": "v3",
                "LABCTL_INSTANCE_ID": "i-abc123",
                **env,
            }
        )
        self.p = subprocess.Popen(
            [sys.executable, str(APP)], env=full, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )

    def get(self, path: str, port: int | None = None, timeout: float = 5.0) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{port or self.port}{path}", timeout=timeout) as r:
            return json.loads(r.read())

    def wait_listening(self, port: int | None = None, timeout: float = 10.0) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            assert self.p.poll() is None, self.output()
            try:
                socket.create_connection(("127.0.0.1", port or self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"app never listened on {port or self.port}")

    def output(self) -> str:
        if self.p.poll() is None:
            self.p.kill()
        return self.p.communicate(timeout=5)[0]

    def stop(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
        self.p.communicate(timeout=5)


@pytest.fixture
def run_app() -> Iterator:
    procs: list[Proc] = []

    def start(**env: str) -> Proc:
        proc = Proc(free_port(), **env)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.stop()


def test_index_reports_the_dyno(run_app):
    app = run_app(GREETING="hello")
    app.wait_listening()
    body = app.get("/")
    assert body == {
        "app": "demo",
        "dyno": "web.1",
        "release": "v3",
        "instance": "i-abc123",
        "port": app.port,
        "greeting": "hello",
        "pid": app.p.pid,
    }
    app.p.send_signal(signal.SIGTERM)
    out = app.output()
    assert 'GET "/" status=200' in out  # one line per request on stdout


def test_slow_answers_after_sleeping_and_logs_it(run_app):
    app = run_app()
    app.wait_listening()
    t = time.monotonic()
    assert app.get("/slow?ms=50")["slept_ms"] == 50
    assert time.monotonic() - t >= 0.05
    app.p.send_signal(signal.SIGTERM)
    assert "finished slow request after 50 ms" in app.output()


def test_slow_requests_do_not_block_others(run_app):
    import threading

    app = run_app()
    app.wait_listening()
    slow = threading.Thread(target=app.get, args=("/slow?ms=800",), daemon=True)
    slow.start()
    time.sleep(0.1)
    t = time.monotonic()
    app.get("/")
    assert time.monotonic() - t < 0.5
    slow.join(timeout=5)


def test_sigterm_exits_promptly_with_143(run_app):
    app = run_app()
    app.wait_listening()
    app.p.send_signal(signal.SIGTERM)
    assert app.p.wait(timeout=3) == 143
    assert "received SIGTERM, shutting down" in app.output()


def test_ignore_sigterm_keeps_running(run_app):
    app = run_app(IGNORE_SIGTERM="1")
    app.wait_listening()
    app.p.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    assert app.p.poll() is None
    assert app.get("/")["dyno"] == "web.1"
    app.p.kill()
    assert "ignoring SIGTERM" in app.output()


def test_bind_port_ignores_port(run_app):
    other = free_port()
    app = run_app(BIND_PORT=str(other))
    app.wait_listening(port=other)
    assert app.get("/", port=other)["port"] == other
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", app.port), timeout=0.5).close()


def test_crash_and_exit_paths(run_app):
    app = run_app()
    app.wait_listening()
    assert app.get("/exit?code=3") == {"exiting": True, "status": 3}
    assert app.p.wait(timeout=3) == 3
    app2 = run_app()
    app2.wait_listening()
    assert app2.get("/crash")["crashing"] is True
    assert app2.p.wait(timeout=3) == 1


def test_crash_after_and_worker_heartbeat(run_app):
    app = run_app(CRASH_AFTER="0.3", CRASH_CODE="0")
    assert app.p.wait(timeout=5) == 0  # exit 0 is still a crash for the platform
    w = subprocess.Popen(
        [sys.executable, str(APP), "--worker"],
        env={**os.environ, "HEARTBEAT_S": "0.1", "DYNO": "worker.1"},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert w.stdout is not None
    seen = []
    for line in w.stdout:  # wait for the second beat (a fixed sleep failed when Python started slowly under load)
        seen.append(line)
        if "worker heartbeat n=2 dyno=worker.1" in line:
            break
    w.send_signal(signal.SIGTERM)
    w.communicate(timeout=5)
    assert w.returncode == 143
    assert any("worker heartbeat n=2 dyno=worker.1" in line for line in seen), seen


def test_cpu_and_mem(run_app):
    app = run_app()
    app.wait_listening()
    t = time.monotonic()
    assert app.get("/cpu?ms=100")["cpu_ms"] == 100
    assert time.monotonic() - t >= 0.1
    work = app.get("/work?ms=50")  # CPU time, not wall time: at least as long on the clock
    assert work["cpu_ms"] == 50 and work["wall_ms"] >= 50
    assert app.get("/mem?mb=5")["held_mb"] == 5
    assert app.get("/mem?mb=5")["held_mb"] == 10


def _children(pid: int) -> set[int]:
    """The live (not zombie) child processes of ``pid``, forked from any of its threads."""
    kids = set()
    for f in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            kids |= {int(c) for c in f.read_text().split()}
        except OSError:
            continue
    live = set()
    for k in kids:
        try:
            if Path(f"/proc/{k}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                live.add(k)
        except (OSError, IndexError):
            continue
    return live


def test_cpu_hog_processes_start_stop_and_end_with_the_app(run_app):
    app = run_app(CPU_HOG="1")
    app.wait_listening()
    try:
        assert len(_children(app.p.pid)) == 1, "CPU_HOG=1: one busy process from the start"
        assert app.get("/hog?procs=2&s=0.3")["hogs"] == 2  # replaces the first one
        deadline = time.time() + 10
        while _children(app.p.pid) and time.time() < deadline:  # they end after 0.3 s
            time.sleep(0.05)
        assert _children(app.p.pid) == set()
        assert app.get("/hog?procs=1&s=0")["hogs"] == 1  # until stopped
        kids = _children(app.p.pid)
        assert len(kids) == 1
        assert app.get("/hog?procs=0")["hogs"] == 0 and _children(app.p.pid) == set()
        app.get("/hog?procs=1&s=0")
        kids = _children(app.p.pid)
        app.p.kill()  # the app dies without stopping them: they notice and end
        app.p.wait(timeout=5)
        deadline = time.time() + 10
        while any(Path(f"/proc/{k}").exists() for k in kids) and time.time() < deadline:
            time.sleep(0.05)
        assert not any(Path(f"/proc/{k}").exists() for k in kids)
    finally:
        for k in _children(app.p.pid):
            os.kill(k, signal.SIGKILL)
    out = app.output()
    assert "burning CPU in 1 processes" in out and "DeprecationWarning" not in out
