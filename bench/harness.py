"""The bench's own lab, and the sweep that removes what the raw twins made.

``BenchLab`` drives a lab the way a user does (the ``labctl`` command as a subprocess, whose wall time is
part of what is measured) and reads it through the API client and the Docker engine. The raw twins
(``bench/raw.py``) label what they make ``io.labctl.bench=<lab>`` (not ``io.labctl.lab``, so the controller
never sees it); ``remove_baselines`` removes it by label at the end, whatever happened.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

BENCH_LABEL = "io.labctl.bench"
LOCALHOST = "127.0.0.1"


class BenchError(Exception):
    """The bench could not take a measurement (a command failed, a wait timed out)."""


def labctl_argv() -> list[str]:
    """The ``labctl`` console script next to this interpreter (the venv's), else the entry point via -c."""
    script = Path(sys.executable).with_name("labctl")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from labctl.main import run; run()"]


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.01) -> Any:
    """Poll ``predicate`` until truthy (bounded by ``timeout`` seconds); raise BenchError after."""
    deadline = time.perf_counter() + timeout
    last = None
    while time.perf_counter() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise BenchError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


def alternate(runs: int, a: Callable[[], float], b: Callable[[], float]) -> tuple[list[float], list[float]]:
    """``runs`` samples of each side, taken A, B, A, B, … so that drift on a busy machine hits both alike."""
    xs: list[float] = []
    ys: list[float] = []
    for _ in range(runs):
        xs.append(a())
        ys.append(b())
    return xs, ys


def http_json(
    url: str, host: str | None = None, timeout: float = 1.0, session: requests.Session | None = None
) -> dict[str, Any] | None:
    """The JSON body of a 200 answer, or None (error page, refused, reset, timeout)."""
    try:
        getter = session.get if session else requests.get
        r = getter(url, headers={"Host": host} if host else None, timeout=timeout)
    except requests.RequestException:
        return None
    if r.status_code != 200:
        return None
    try:
        return r.json()
    except ValueError:
        return None


class BenchLab:
    """A lab under ``state_dir`` (set as LABCTL_STATE_DIR for this process and its children)."""

    def __init__(self, name: str, state_dir: Path):
        self.name = name
        self.state_dir = state_dir
        os.environ["LABCTL_STATE_DIR"] = str(state_dir)
        self.router_port = 0
        self._client = None
        self._docker = None

    # -- lifecycle --------------------------------------------------------------------------------
    def up(self, progress: Callable[[str], None]) -> dict[str, Any]:
        from labctl import lab as lablib

        status = lablib.up(self.name, progress, http_port=0, timescale=0.05, provision_time=0)
        self.router_port = int(status["router"]["port"])
        return status

    def down(self) -> dict[str, int]:
        from labctl import lab as lablib

        return lablib.down(self.name)

    # -- the CLI as a user runs it ----------------------------------------------------------------------
    def argv(self, *args: str) -> list[str]:
        argv = list(args)
        return [*labctl_argv(), argv[0], "--lab", self.name, *argv[1:]]

    def cli(self, *args: str, timeout: float = 300.0) -> str:
        r = subprocess.run(self.argv(*args), capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            raise BenchError(f"labctl {' '.join(args)} failed ({r.returncode}): {(r.stderr or r.stdout).strip()}")
        return r.stdout

    def cli_json(self, *args: str) -> Any:
        return json.loads(self.cli(*args, "--json"))

    def spawn(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen(
            self.argv(*args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True
        )

    @staticmethod
    def finish(proc: subprocess.Popen, what: str, timeout: float = 60.0) -> None:
        try:
            _, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise BenchError(f"labctl {what} did not return within {timeout:.0f} s") from None
        if proc.returncode != 0:
            raise BenchError(f"labctl {what} failed ({proc.returncode}): {err.strip()}")

    # -- reading state --------------------------------------------------------------------------------
    @property
    def api(self):  # noqa: ANN201 - labctl.client.Client, imported lazily
        if self._client is None:
            from labctl.client import Client

            self._client = Client(self.name)
        return self._client

    @property
    def docker(self):  # noqa: ANN201 - docker.DockerClient
        if self._docker is None:
            import docker

            self._docker = docker.from_env(timeout=60)
        return self._docker

    def dynos(self, app: str) -> dict[str, dict[str, Any]]:
        return {d["name"]: d for d in self.api.dynos(app)}

    def containers(self, kind: str, app: str | None = None) -> list[Any]:
        labels = [f"io.labctl.lab={self.name}", f"io.labctl.kind={kind}"]
        if app:
            labels.append(f"io.labctl.app={app}")
        return self.docker.containers.list(all=True, ignore_removed=True, filters={"label": labels})

    def router_url(self, path: str = "/") -> str:
        return f"http://{LOCALHOST}:{self.router_port}{path}"

    def via_router(self, app: str, timeout: float = 1.0, session: requests.Session | None = None) -> dict | None:
        return http_json(self.router_url(), host=f"{app}.localhost", timeout=timeout, session=session)

    def direct_address(self, app: str, dyno: str = "web.1") -> str:
        """``IP:port`` of a web dyno on the Docker bridge: its instance's sandbox address and the dyno's port."""
        row = self.dynos(app)[dyno]
        sandboxes = self.docker.containers.list(
            ignore_removed=True,
            filters={
                "label": [
                    f"io.labctl.lab={self.name}",
                    "io.labctl.kind=sandbox",
                    f"io.labctl.app={app}",
                    f"io.labctl.instance={row['instance']}",
                ]
            },
        )
        if not sandboxes:
            raise BenchError(f"no sandbox for {app}/{dyno} on {row['instance']}")
        nets = sandboxes[0].attrs["NetworkSettings"]["Networks"]
        ip = next(n["IPAddress"] for n in nets.values() if n.get("IPAddress"))
        return f"{ip}:{row['port']}"

    def dyno_limits(self, app: str) -> dict[str, int]:
        """Memory, MemorySwap and CpuShares of the app's dyno container (the raw twins copy them)."""
        dynos = self.containers("dyno", app)
        if not dynos:
            raise BenchError(f"no dyno container of {app}")
        host = dynos[0].attrs["HostConfig"]
        limits = {k: int(host.get(k) or 0) for k in ("Memory", "MemorySwap", "CpuShares")}
        # the instance's CPU budget (its parent cgroup's quota, docs/instances.md): the twin gets it as its own
        parent = str(host.get("CgroupParent") or "").strip("/")
        quota = Path("/sys/fs/cgroup/cpu") / parent / "cpu.cfs_quota_us"
        try:
            limits["CpuQuota"] = int(quota.read_text()) if parent else 0
            limits["CpuPeriod"] = int((quota.parent / "cpu.cfs_period_us").read_text()) if parent else 0
        except (OSError, ValueError):
            limits["CpuQuota"] = limits["CpuPeriod"] = 0
        return limits

    def slug_image(self, app: str) -> str:
        releases = self.api.releases(app)
        return releases[0]["image"]

    def settle(self, app: str, names: list[str], timeout: float = 60.0, one_sandbox_each: bool = False) -> None:
        """Wait until ``names`` are up and the app has exactly that many dyno containers (old ones removed)."""

        def ready() -> bool:
            d = self.dynos(app)
            if not all(n in d and d[n]["state"] == "up" for n in names):
                return False
            if len(self.containers("dyno", app)) != len(names):
                return False
            return not one_sandbox_each or len(self.containers("sandbox", app)) == len(names)

        wait_for(ready, timeout, f"{names} of {app} settled", interval=0.1)


def remove_baselines(lab: str | None = None) -> int:
    """Remove what the raw twins made for ``lab`` (or for every bench run, e.g. left by a killed one):
    containers, then networks and images, by label. Returns how many containers went."""
    label = f"{BENCH_LABEL}={lab}" if lab else BENCH_LABEL

    def ids(*argv: str) -> list[str]:
        out = subprocess.run([*argv, "--filter", f"label={label}"], capture_output=True, text=True, timeout=60)
        return out.stdout.split()

    containers = ids("docker", "ps", "-aq")
    if containers:
        subprocess.run(["docker", "rm", "-f", *containers], capture_output=True, timeout=120)
    networks = ids("docker", "network", "ls", "-q")
    if networks:
        subprocess.run(["docker", "network", "rm", *networks], capture_output=True, timeout=120)
    images = ids("docker", "images", "-q")
    if images:
        subprocess.run(["docker", "rmi", "-f", *sorted(set(images))], capture_output=True, timeout=120)
    return len(containers)
