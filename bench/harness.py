"""The bench's own lab and its plain-Docker baselines.

``BenchLab`` drives a lab the way a user does (the ``labctl`` command as a subprocess, whose wall time is
part of what is measured) and reads it through the API client and the Docker engine. ``Baseline`` starts
"equal containers" with the ``docker`` command: the app's slug image, the same command under ``--init``,
a port published on 127.0.0.1. They carry ``io.labctl.bench=<lab>`` (not ``io.labctl.lab``, so the
controller never sees them) and are removed by label at the end, whatever happened.
"""

from __future__ import annotations

import json
import os
import socket
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


def free_ports(n: int) -> list[int]:
    """``n`` distinct free TCP ports on 127.0.0.1 (bound then released)."""
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind((LOCALHOST, 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


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

        status = lablib.up(self.name, progress, http_port=0, timescale=0.05)
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


class Baseline:
    """Equal containers started with the ``docker`` command (what the lab is compared with)."""

    def __init__(self, lab: str, image: str):
        self.lab = lab
        self.image = image
        self.started: list[str] = []

    def run(self, host_port: int) -> str:
        """``docker run -d --init`` of the sample app's web command, published on 127.0.0.1:host_port."""
        out = subprocess.run(
            [
                "docker",
                "run",
                "-d",
                "--init",
                "--label",
                f"{BENCH_LABEL}={self.lab}",
                "-e",
                "PORT=5000",
                "-e",
                "TINI_KILL_PROCESS_GROUP=1",
                "-w",
                "/app",
                "-p",
                f"{LOCALHOST}:{host_port}:5000",
                self.image,
                "/bin/bash",
                "-c",
                "python3 app.py",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
        if out.returncode != 0:
            raise BenchError(f"docker run failed: {out.stderr.strip()}")
        cid = out.stdout.strip()
        self.started.append(cid)
        return cid

    @staticmethod
    def restart(cid: str) -> None:
        out = subprocess.run(
            ["docker", "restart", cid], capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL
        )
        if out.returncode != 0:
            raise BenchError(f"docker restart failed: {out.stderr.strip()}")

    def remove(self, cids: list[str]) -> None:
        if cids:
            subprocess.run(["docker", "rm", "-f", *cids], capture_output=True, timeout=120, stdin=subprocess.DEVNULL)
            self.started = [c for c in self.started if c not in cids]


def remove_baselines(lab: str | None = None) -> int:
    """Remove baseline containers of ``lab`` (or of every bench run, e.g. left by a killed one)."""
    label = f"{BENCH_LABEL}={lab}" if lab else BENCH_LABEL
    ids = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label={label}"], capture_output=True, text=True, timeout=60
    ).stdout.split()
    if ids:
        subprocess.run(["docker", "rm", "-f", *ids], capture_output=True, timeout=120)
    return len(ids)
