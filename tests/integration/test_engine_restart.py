"""Reliability (issue 7): the Docker engine restarted under a running lab, on a private engine of the test's own."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
import requests

from labctl import const
from labctl.engine.faults import cpu_quota
from labctl.labdir import LabDir
from tests.conftest import Lab, cli, deploy_sample, start_lab, wait_until
from tests.integration.helpers import (
    assert_nothing_lost,
    controller_pid,
    docker_client,
    formation_of,
    nothing_lost_problems,
    orphan_problems,
)

pytestmark = pytest.mark.docker


# -- the Docker engine restarted under a running lab ---------------------------------------------------------
class PrivateEngine:
    """A second dockerd of the test's own, in a network namespace of its own (own socket, data and exec root,
    containerd, bridges, routes and iptables), so the test can restart "the engine" without touching the main
    one. Every step that talks to the lab over TCP, and every process it spawns (dockerd, the lab's
    controller), runs in that namespace: see ``in_netns``. ``close()`` removes every trace.

    Why a namespace: a second dockerd in the host's namespace breaks the main engine. Started with
    ``--bridge none``, or restarted with ``default-address-pools`` (needed there so its networks do not
    overlap the main engine's), it deletes the host's ``docker0`` (moby's removeDefaultBridgeInterface).
    """

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="labctl-eng-", dir="/tmp"))  # short: socket paths are limited
        self.host = f"unix://{self.root}/docker.sock"
        self.netns = f"labctl-{self.root.name[-8:]}"
        self.driver = _main_storage_driver()  # now, while DOCKER_HOST still names the main engine
        self.proc: subprocess.Popen | None = None
        for cmd in (
            ["ip", "netns", "add", self.netns],
            ["ip", "netns", "exec", self.netns, "ip", "link", "set", "lo", "up"],
        ):
            r = subprocess.run(cmd, capture_output=True, text=True)
            assert r.returncode == 0, f"{' '.join(cmd)}: {r.stderr} (needs root and iproute2)"

    def in_netns(self, fn: Callable[[], Any]) -> Any:
        """``fn()`` in a thread that joined the namespace: its sockets, threads and child processes live there."""
        import ctypes

        out: list[Any] = []
        failed: list[BaseException] = []

        def run() -> None:
            try:
                fd = os.open(f"/var/run/netns/{self.netns}", os.O_RDONLY)
                try:
                    if ctypes.CDLL(None, use_errno=True).setns(fd, 0x40000000) != 0:  # CLONE_NEWNET, this thread
                        raise OSError(ctypes.get_errno(), "setns")
                finally:
                    os.close(fd)
                out.append(fn())
            except BaseException as err:  # noqa: BLE001 - raised again in the caller's thread
                failed.append(err)

        t = threading.Thread(target=run, name=f"in-{self.netns}")
        t.start()
        t.join()
        if failed:
            raise failed[0]
        return out[0]

    def start(self, timeout: float = 90.0) -> None:
        """Start dockerd (call it through ``in_netns``: the daemon inherits the namespace)."""
        dockerd = shutil.which("dockerd") or shutil.which("dockerd", path="/usr/sbin:/usr/bin")
        assert dockerd, "dockerd not found (the Docker engine package)"
        config = {
            "storage-driver": self.driver,
            "iptables": False,
            "ip6tables": False,
            "ip-masq": False,
            "log-driver": "json-file",
        }
        (self.root / "daemon.json").write_text(json.dumps(config))
        log = open(self.root / "dockerd.log", "ab")  # noqa: SIM115 - the child holds it
        self.proc = subprocess.Popen(
            [
                dockerd,
                "--config-file",
                str(self.root / "daemon.json"),
                "--host",
                self.host,
                "--data-root",
                str(self.root / "data"),
                "--exec-root",
                str(self.root / "exec"),
                "--pidfile",
                str(self.root / "docker.pid"),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        log.close()
        deadline = time.time() + timeout
        while time.time() < deadline and self.proc.poll() is None:
            try:
                if self.client().ping():
                    return
            except (docker.errors.DockerException, requests.RequestException):
                time.sleep(0.2)
        raise AssertionError(f"the private dockerd did not answer within {timeout:.0f} s:\n{self.log_tail()}")

    def stop(self, timeout: float = 60.0) -> None:
        """SIGTERM, as systemd stops dockerd (it stops the containers first); SIGKILL after ``timeout``."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        self.proc = None

    def client(self) -> docker.DockerClient:
        return docker.DockerClient(base_url=self.host, timeout=120)

    def load_images(self, *refs: str) -> None:
        """``docker save`` from the main engine piped into ``docker load`` here."""
        env = {**os.environ, "DOCKER_HOST": self.host}
        main_env = {k: v for k, v in os.environ.items() if k != "DOCKER_HOST"}
        save = subprocess.Popen(["docker", "save", *refs], stdout=subprocess.PIPE, env=main_env)
        load = subprocess.run(
            ["docker", "load"], stdin=save.stdout, capture_output=True, text=True, env=env, timeout=600
        )
        save.stdout.close()  # type: ignore[union-attr]
        assert save.wait(600) == 0 and load.returncode == 0, f"image copy failed: {load.stderr}"

    def log_tail(self) -> str:
        try:
            return "\n".join((self.root / "dockerd.log").read_text(errors="replace").splitlines()[-15:])
        except OSError:
            return ""

    def close(self) -> None:
        """Remove everything on the engine, stop it, delete its namespace (and with it every interface it made),
        and leave no mount or directory behind."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                c = self.client()
                for cont in c.containers.list(all=True, ignore_removed=True):
                    cont.remove(force=True)
            except (docker.errors.DockerException, requests.RequestException):
                pass
        self.stop()
        subprocess.run(["ip", "netns", "delete", self.netns], capture_output=True)
        mounts = [
            line.split()[1]
            for line in Path("/proc/mounts").read_text().splitlines()
            if line.split()[1].startswith(str(self.root))
        ]
        for m in sorted(mounts, key=len, reverse=True):
            subprocess.run(["umount", "-l", m], capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)


def _main_storage_driver() -> str:
    """The main engine's storage driver when the private one can use it (overlay2 or fuse-overlayfs), else vfs."""
    try:
        driver = docker.from_env().info().get("Driver", "")
    except docker.errors.DockerException:
        driver = ""
    return driver if driver in ("overlay2", "fuse-overlayfs") else "vfs"


@pytest.fixture
def private_engine(lab_state: Path) -> Iterator[PrivateEngine]:
    from labctl.engine import images

    main = docker.from_env()
    images.ensure_stack_image(main, lambda _line: None)  # on the main engine, to copy it
    docker0 = _link_index("docker0")
    engine = PrivateEngine()
    try:
        engine.in_netns(engine.start)
        engine.load_images(const.STACK_IMAGE)
        yield engine
    finally:
        engine.close()
        assert _link_index("docker0") == docker0, "the main engine's docker0 was touched"
        assert engine.netns not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert not any(
            line.split()[1].startswith(str(engine.root)) for line in Path("/proc/mounts").read_text().splitlines()
        ), f"mounts left under {engine.root}"
        assert not Path(engine.root).exists(), f"{engine.root} left behind"


def _link_index(name: str) -> int | None:
    try:
        return int(Path(f"/sys/class/net/{name}/ifindex").read_text())
    except OSError:
        return None


def _served_by(lab: Lab, app: str, want: set[str], timeout: float) -> set[str]:
    """Dynos seen answering through the router (bounded: at most ``timeout`` s of requests, 20 per second)."""
    seen: set[str] = set()
    deadline = time.time() + timeout
    while time.time() < deadline and not want <= seen:
        try:
            r = lab.get(app, timeout=3)
            if r.status_code == 200:
                seen.add(r.json()["dyno"])
        except requests.RequestException:
            pass
        time.sleep(0.05)
    return seen


def test_engine_restart_under_a_running_lab_recovers(private_engine: PrivateEngine, monkeypatch: pytest.MonkeyPatch):
    """dockerd stopped (SIGTERM: it stops every container) and started again under a running lab, on a private
    engine. The controller keeps running and recovers by itself: dynos restart on their instances (not as
    crashes), sandboxes are replaced, the router is back on the same port and routes to the new addresses,
    its log lines are followed again; nothing lost, nothing left over, the state as it was."""
    main = docker.from_env()
    monkeypatch.setenv("DOCKER_HOST", private_engine.host)  # the CLI and the controller it spawns use it
    name = f"t{uuid.uuid4().hex[:8]}"
    try:
        private_engine.in_netns(lambda: _engine_restart(private_engine, name))
    finally:
        if private_engine.proc is None:  # failed while the engine was away: `down` needs it
            private_engine.in_netns(private_engine.start)
        down = cli("down", lab=name)
        if down.code != 0:
            from labctl.lab import _stop_processes

            _stop_processes(LabDir(name))  # no controller of this lab may outlive the test
        assert down.code == 0, down.err
        assert private_engine.client().containers.list(all=True) == []
        assert not main.containers.list(all=True, filters={"label": f"{const.LABEL_LAB}={name}"}), (
            "nothing of this lab on the main engine"
        )


def _engine_restart(private_engine: PrivateEngine, name: str) -> None:
    """The test's body, in the private engine's network namespace (see ``PrivateEngine.in_netns``)."""
    space, cr_app, ps_app = "engspace", "engapp", "engps"
    lab = start_lab(name)
    lab.ok("spaces:create", space)
    deploy_sample(lab, cr_app, web=2)
    deploy_sample(lab, ps_app, space=space)
    want = {cr_app: {"web": 2}, ps_app: {"web": 1}}
    lab.ok("faults:add", "cpu", "--cpus", "0.5", "--dyno", "web.1", "-a", ps_app)  # belongs to the instance
    faults = [{k: v for k, v in f.items() if k != "dynos"} for f in lab.json("faults")]
    assert len(faults) == 1
    assert _served_by(lab, cr_app, {"web.1", "web.2"}, 20) == {"web.1", "web.2"}
    before = {app: lab.dynos(app) for app in want}
    state = {
        app: (lab.json("releases", "-a", app), lab.json("config", "-a", app), formation_of(lab, app)) for app in want
    }
    apps, spaces = lab.json("apps"), lab.json("spaces")
    pid = controller_pid(lab)

    t = time.time()
    private_engine.stop()
    stopped = time.time()
    stop_took = stopped - t
    time.sleep(2)  # the controller sees the engine gone
    away = json.loads(lab.ok("status", "--json"))
    assert (away["controller_pid"], away["engine"], away["router"]["port"]) == (pid, "unreachable", lab.port), (
        f"`labctl status` while the engine is away: {away}"
    )
    private_engine.start()
    back = time.time()

    problems: list[str] = []

    def recovered() -> bool:
        nonlocal problems
        problems = nothing_lost_problems(lab, want)
        for app, old in before.items():
            now = lab.dynos(app)
            same = [n for n in old if n in now and now[n]["container"] == old[n]["container"]]
            if same:
                problems.append(f"{app}: {same} still on the containers the engine stopped")
        return not problems

    try:
        wait_until(recovered, 90, 0.5, "the lab recovering after the engine restart")
    except AssertionError:
        warnings = [
            line
            for line in LabDir(name).file("controller.log").read_text().splitlines()
            if " WARNING " in line or " ERROR " in line
        ]
        raise AssertionError(
            f"not recovered 90 s after the engine came back: {'; '.join(problems)}\n" + "\n".join(warnings[:12])
        ) from None
    seen = _served_by(lab, cr_app, {"web.1", "web.2"}, 30)
    served = time.time()
    print(
        f"engine stopped in {stop_took:.1f} s, away {back - stopped:.1f} s; dynos up and served through "
        f"the router {served - back:.1f} s after it answered again"
    )
    assert seen == {"web.1", "web.2"}, f"served through the router on port {lab.port}: {seen}"
    assert _served_by(lab, ps_app, {"web.1"}, 20) == {"web.1"}
    assert controller_pid(lab) == pid, "recovered by the running controller, not by a restart"
    assert json.loads(lab.ok("status", "--json"))["engine"] == "ok"
    assert json.loads(lab.ok("status", "--json"))["router"]["port"] == lab.port, "the router moved port"
    assert lab.dynos(ps_app)["web.1"]["instance"] == before[ps_app]["web.1"]["instance"], (
        "a Private Space dyno comes back on its instance (like a host reboot)"
    )
    for app in want:
        assert (lab.json("releases", "-a", app), lab.json("config", "-a", app), formation_of(lab, app)) == state[app], (
            f"{app}: state changed"
        )
        assert all(d["release"]["version"] == 1 for d in lab.dynos(app).values())
        log = lab.logs(app)
        assert "State changed from up to crashed" not in log, f"{app}: the engine restart counted as a crash"
    assert lab.json("apps") == apps and lab.json("spaces") == spaces
    assert [{k: v for k, v in f.items() if k != "dynos"} for f in lab.json("faults")] == faults, (
        "the instance's fault is kept"
    )
    host_config = docker_client().containers.get(lab.dynos(ps_app)["web.1"]["container"]).attrs["HostConfig"]
    parent = str(host_config.get("CgroupParent") or "").strip("/")  # the instance's budget (docs/instances.md)
    if parent:
        quota = int((Path("/sys/fs/cgroup/cpu") / parent / "cpu.cfs_quota_us").read_text())
    else:  # budgets not enforced here: the fault is a quota on each dyno
        quota = host_config["CpuQuota"]
    assert quota == cpu_quota(0.5), "the instance's cpu fault applies to the dyno that came back on it"
    lab.ok("faults:clear", "--all")
    wait_until(
        lambda: re.search(r"heroku\[router\]: at=info .*status=200", lab.logs(cr_app).split("Restarting")[-1]),
        10,
        0.2,
        "the router's log lines followed again after the engine restart",
    )
    assert_nothing_lost(lab, want, timeout=10)
    assert orphan_problems(lab, [space]) == []
