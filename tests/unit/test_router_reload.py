"""A router reload signals nginx through the engine once, then straight from this host while that router's init is
the same process (labctl/engine/docker.py, ``reload_router``): no engine call on the path from a new dyno
binding its port to the router sending it traffic. No engine here: a fake client, a real child process as the
router's init, nginx.conf in a temporary directory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from labctl.engine import docker as engine_docker
from labctl.engine.docker import Engine


class _Router:
    def __init__(self, pid: int) -> None:
        self.id = "routercid"
        self.attrs = {"State": {"Pid": pid}}
        self.kills: list[str] = []
        self.execs: list[list[str]] = []

    def kill(self, signal: str) -> None:
        self.kills.append(signal)

    def exec_run(self, cmd: list[str]) -> tuple[int, bytes]:
        self.execs.append(cmd)
        return 0, b""


class _Client:
    def __init__(self, router: _Router) -> None:
        self.router = router
        self.gets = 0
        self.containers = self

    def get(self, name: str) -> _Router:
        self.gets += 1
        return self.router


@pytest.fixture
def init() -> Any:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield child
    child.kill()
    child.wait()


def _engine(init: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seen: list[bool]) -> tuple[Engine, Any]:
    router = _Router(init.pid)
    client = _Client(router)
    engine = Engine(client, "t")  # type: ignore[arg-type]
    signals: list[tuple[int, int]] = []
    monkeypatch.setattr(engine_docker, "router_conf_path", lambda pid: str(tmp_path / f"{pid}.conf"))
    monkeypatch.setattr(engine_docker, "_hup", lambda pid: signals.append((pid, signal.SIGHUP)))
    # the child runs here, but its cgroup does not name a container: it counts as the router's init on this host
    monkeypatch.setattr(engine_docker, "_init_on_this_host", lambda c: engine_docker._host_process(init.pid))
    monkeypatch.setattr(Engine, "_await_generation", staticmethod(lambda *a, **k: seen.pop(0) if seen else True))
    return engine, (router, client, signals)


def test_the_second_reload_signals_the_same_init_without_the_engine(init, tmp_path, monkeypatch):
    engine, (router, client, signals) = _engine(init, tmp_path, monkeypatch, [])
    engine.reload_router("conf 1", 1, 8080)
    assert (client.gets, router.kills, signals) == (1, ["HUP"], [])
    engine.reload_router("conf 2", 2, 8080)
    assert (client.gets, router.kills, signals) == (1, ["HUP"], [(init.pid, signal.SIGHUP)])
    assert (tmp_path / f"{init.pid}.conf").read_text() == "conf 2"


def test_a_router_whose_init_is_gone_is_signalled_through_the_engine_again(init, tmp_path, monkeypatch):
    engine, (router, client, signals) = _engine(init, tmp_path, monkeypatch, [])
    engine.reload_router("conf 1", 1, 8080)
    init.kill()
    init.wait()
    engine.reload_router("conf 2", 2, 8080)
    assert (client.gets, router.kills, signals) == (2, ["HUP", "HUP"], [])


def test_a_generation_not_seen_in_time_goes_back_to_the_engine(init, tmp_path, monkeypatch):
    engine, (router, client, signals) = _engine(init, tmp_path, monkeypatch, [True, False, True])
    engine.reload_router("conf 1", 1, 8080)
    engine.reload_router("conf 2", 2, 8080)  # signalled from here, not seen: nginx -t, then nginx -s reload
    assert router.execs == [["nginx", "-t"], ["nginx", "-s", "reload"]]
    engine.reload_router("conf 3", 3, 8080)
    assert router.kills == ["HUP", "HUP"]
    assert signals == [(init.pid, signal.SIGHUP)]


def test_a_process_is_its_pid_and_start_time(init):
    pid, started = engine_docker._host_process(init.pid)
    assert pid == init.pid and started.isdigit()
    assert engine_docker._host_process(os.getpid())[1] != started or os.getpid() == init.pid
    assert engine_docker._host_process(2**22 + 12345) == (0, "")
