"""The raw twins: the same container work as labctl's, done by hand with plain Docker (issue 18).

A twin does what the labctl command does to the engine and nothing of the platform around it (no router, no
store, no log followers): ``restart`` starts a new container in the sandbox's existing network namespace
(``network_mode=container:<sandbox>``, as ``labctl/engine/docker.py`` ``start_dyno`` does) and stops the old
one; ``replace`` makes a new sandbox and a dyno in it and removes the old pair; ``scale`` creates and starts
N containers in an existing sandbox from this warm process, concurrently; ``build`` is a warm-cache
``docker build`` of the slug's own Dockerfile. ``restart`` and ``replace`` are shell scripts run as a
subprocess (timed from its spawn, as the labctl side is timed from spawning the ``labctl`` command).

Everything made here carries ``io.labctl.bench=<lab>`` and is removed by label at the end
(``harness.remove_baselines``); the containers copy the memory limit and CPU shares of labctl's own dyno, and
its instance's CPU budget as a quota of their own.
"""

from __future__ import annotations

import os
import random
import shlex
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker

from bench.harness import BENCH_LABEL, BenchError, http_json, wait_for

SERVE_TIMEOUT = 60.0
APP_COMMAND = "python3 app.py"


@dataclass
class Pair:
    """A raw "instance": a sandbox container (owns the network namespace) and the dyno container in it."""

    sandbox: str  # name
    dyno: str  # id
    port: int


class RawDocker:
    """Raw containers for one bench lab: its own bridge network, the slug image, labctl's dyno limits."""

    def __init__(self, client: Any, lab: str, slug_image: str, stack_image: str, limits: dict[str, int]):
        self.client = client
        self.lab = lab
        self.image = slug_image
        self.stack = stack_image
        self.limits = limits  # Memory, MemorySwap, CpuShares of labctl's web.1
        self.network = f"bnch-{lab}-raw"
        self.labels = {BENCH_LABEL: lab}
        self._n = 0
        self.rng = random.Random()
        try:
            client.networks.get(self.network)
        except docker.errors.NotFound:
            client.networks.create(self.network, driver="bridge", labels=self.labels)

    # -- building blocks ------------------------------------------------------------------------
    def name(self, what: str) -> str:
        self._n += 1
        return f"bnch-{self.lab}-{what}{self._n}"

    def port(self, avoid: int = 0) -> int:
        while True:
            p = self.rng.randint(10000, 60000)
            if p != avoid:
                return p

    def sandbox(self) -> tuple[str, str]:
        """A sandbox like labctl's ``create_sandbox``: (name, IP on the raw network)."""
        name = self.name("sb")
        c = self.client.containers.run(
            self.stack,
            ["sleep", "infinity"],
            name=name,
            detach=True,
            init=True,
            labels=self.labels,
            network=self.network,
            cap_add=["NET_ADMIN"],
            hostname=name,
        )
        return name, self.ip(c.id)

    def ip(self, container: str) -> str:
        c = self.client.containers.get(container)
        return str(c.attrs["NetworkSettings"]["Networks"][self.network]["IPAddress"])

    def dyno(self, sandbox: str, port: int, instance: str, client: Any = None) -> str:
        """A dyno container like ``start_dyno``'s, started through the SDK (no CLI); its id."""
        c = (client or self.client).containers.run(
            self.image,
            ["/bin/bash", "-c", APP_COMMAND],
            detach=True,
            init=True,
            environment=self.env(port, instance),
            working_dir="/app",
            labels=self.labels,
            network_mode=f"container:{sandbox}",
            mem_limit=self.limits["Memory"],
            memswap_limit=self.limits["MemorySwap"],
            cpu_shares=self.limits["CpuShares"],
            **self.cpu_budget(),
        )
        return str(c.id)

    def cpu_budget(self) -> dict[str, int]:
        """The CPU budget of labctl's dyno's instance, as a quota on the twin itself (none: no budget)."""
        quota, period = self.limits.get("CpuQuota", 0), self.limits.get("CpuPeriod", 0)
        return {"cpu_quota": quota, "cpu_period": period} if quota > 0 and period > 0 else {}

    @staticmethod
    def env(port: int, instance: str) -> dict[str, str]:
        return {"PORT": str(port), "DYNO": "web.1", "LABCTL_INSTANCE_ID": instance, "TINI_KILL_PROCESS_GROUP": "1"}

    def docker_run_argv(self, network_mode: str, port: int, instance: str) -> list[str]:
        """``docker run`` of the dyno as a script writes it: the same options as ``dyno``."""
        argv = ["docker", "run", "-d", "--init", "--label", f"{BENCH_LABEL}={self.lab}", "--network", network_mode]
        for k, v in self.env(port, instance).items():
            argv += ["-e", f"{k}={v}"]
        argv += ["-w", "/app", "--memory", str(self.limits["Memory"]), "--memory-swap", str(self.limits["MemorySwap"])]
        argv += ["--cpu-shares", str(self.limits["CpuShares"])]
        argv += [f"--{k.replace('_', '-')}={v}" for k, v in self.cpu_budget().items()]
        argv += [self.image, "/bin/bash", "-c", APP_COMMAND]
        return argv

    def remove(self, ids: list[str]) -> None:
        """Force-remove containers in parallel (off the clock)."""

        def rm(cid: str) -> None:
            try:
                self.client.api.remove_container(cid, force=True)
            except docker.errors.APIError:
                pass  # already gone; the final sweep by label catches the rest

        if ids:
            with ThreadPoolExecutor(max_workers=min(len(ids), 10)) as pool:
                list(pool.map(rm, ids))

    # -- the twins ------------------------------------------------------------------------------
    def new_pair(self) -> Pair:
        """An instance with its web dyno, serving (set-up, not timed)."""
        sandbox, ip = self.sandbox()
        port = self.port()
        dyno = self.dyno(sandbox, port, sandbox)
        wait_for(lambda: http_json(f"http://{ip}:{port}/", timeout=0.5), SERVE_TIMEOUT, "the raw dyno answering")
        return Pair(sandbox, dyno, port)

    def restart(self, pair: Pair) -> tuple[float, Pair]:
        """The restart twin: a script starts a new dyno container in ``pair``'s sandbox on a new port, then stops
        and removes the old one. Seconds from spawning the script until the new container answers 200 on
        ``<sandbox IP>:<new port>`` (the body's port is the new one); the pair afterwards."""
        ip, port = self.ip(pair.sandbox), self.port(avoid=pair.port)
        run = shlex.join(self.docker_run_argv(f"container:{pair.sandbox}", port, pair.sandbox))
        script = f"set -e\n{run}\ndocker stop -t 30 {pair.dyno} >/dev/null\ndocker rm {pair.dyno} >/dev/null\n"
        t0 = time.perf_counter()
        proc = _spawn(script)
        url = f"http://{ip}:{port}/"
        _serving(lambda: (b := http_json(url, timeout=1.0)) is not None and b.get("port") == port, "restart")
        took = time.perf_counter() - t0
        out = _finish(proc, "raw restart script")
        return took, Pair(pair.sandbox, out.split()[0], port)

    def replace(self, pair: Pair) -> tuple[float, Pair]:
        """The ``ps:stop`` twin: a script creates a new sandbox (network namespace) and a dyno container in it,
        then stops the old dyno and removes the old pair. Seconds from spawning the script until the new
        dyno answers 200 on the new sandbox's IP (looked up by name while polling) with its instance name."""
        sandbox, port = self.name("sb"), self.port()
        sb_run = shlex.join(
            [
                "docker",
                "run",
                "-d",
                "--init",
                "--name",
                sandbox,
                "--label",
                f"{BENCH_LABEL}={self.lab}",
                "--network",
                self.network,
                "--cap-add",
                "NET_ADMIN",
                "--hostname",
                sandbox,
                self.stack,
                "sleep",
                "infinity",
            ]  # fmt: skip
        )
        run = shlex.join(self.docker_run_argv(f"container:{sandbox}", port, sandbox))
        script = (
            f"set -e\n{sb_run} >/dev/null\n{run}\n"
            f"docker stop -t 30 {pair.dyno} >/dev/null\ndocker rm -f {pair.dyno} {pair.sandbox} >/dev/null\n"
        )
        t0 = time.perf_counter()
        proc = _spawn(script)

        def answered() -> bool:
            try:
                ip = self.ip(sandbox)
            except (docker.errors.NotFound, KeyError):
                return False  # not created yet, or not on its network yet
            body = http_json(f"http://{ip}:{port}/", timeout=1.0) if ip else None
            return body is not None and body.get("instance") == sandbox

        _serving(answered, "replacement")
        took = time.perf_counter() - t0
        out = _finish(proc, "raw replacement script")
        return took, Pair(sandbox, out.split()[0], port)

    def scale(self, sandbox: str, n: int) -> float:
        """The scale twin: ``n`` dyno containers created and started in an existing sandbox from this warm
        process, all at once from a thread pool of ``n``; seconds until every one answered 200 on its port."""
        ip = self.ip(sandbox)
        ports: list[int] = []
        while len(ports) < n:
            p = self.port()
            if p not in ports:
                ports.append(p)
        # One client per thread, made before the clock starts: docker-py's connection pools are not safe to
        # share between threads that each hit new URLs (a pool in use gets closed under another thread).
        clients = [docker.from_env(timeout=60) for _ in ports]
        ids: list[str] = []
        try:
            t0 = time.perf_counter()
            with ThreadPoolExecutor(max_workers=n) as pool:
                futures = [pool.submit(self.dyno, sandbox, p, sandbox, c) for p, c in zip(ports, clients, strict=True)]
                pending = set(ports)
                deadline = time.perf_counter() + 180
                while pending and time.perf_counter() < deadline:
                    if any(f.done() and f.exception() for f in futures):
                        break  # a container could not be started: result() below raises its error
                    pending = {p for p in pending if http_json(f"http://{ip}:{p}/", timeout=0.5) is None}
                    if pending:
                        time.sleep(0.01)
                ids = [f.result() for f in futures if not f.exception()]
                for f in futures:
                    f.result()
            if pending:
                raise BenchError(f"{len(pending)} of {n} raw containers never answered")
            return time.perf_counter() - t0
        finally:
            self.remove(ids)
            for c in clients:
                c.close()


def _spawn(script: str) -> subprocess.Popen:
    return subprocess.Popen(
        ["bash", "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True
    )


def _finish(proc: subprocess.Popen, what: str) -> str:
    try:
        out, err = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise BenchError(f"{what} did not finish within 90 s") from None
    if proc.returncode != 0:
        raise BenchError(f"{what} failed ({proc.returncode}): {err.strip()[-300:]}")
    return str(out)


def _serving(predicate: Any, what: str) -> None:
    wait_for(predicate, SERVE_TIMEOUT, f"the raw {what} answering")


# -- deploy twin --------------------------------------------------------------------------------
def build_context(workdir: Path, src: Path, lab: str, app: str) -> Path:
    """The slug's build context as ``labctl deploy`` hands it to the engine (``engine/buildpack.plan_slug``):
    ``.labctl/Dockerfile``, its build files and the app as ``app/``, written out for ``docker build``."""
    from labctl.engine import buildpack
    from labctl.engine.images import HOST_CA_BUNDLE

    ca = HOST_CA_BUNDLE.read_bytes() if HOST_CA_BUNDLE.is_file() else None
    plan = buildpack.plan_slug(src, lab=lab, app=app, build_env={}, ca_bundle=ca)
    ctx = workdir / f"raw-build-{app}"
    shutil.rmtree(ctx, ignore_errors=True)
    for rel, data in plan.context.items():
        (ctx / rel).parent.mkdir(parents=True, exist_ok=True)
        (ctx / rel).write_bytes(data)
    shutil.copytree(src, ctx / "app", ignore=shutil.ignore_patterns(".git", "__pycache__", ".venv"))
    return ctx


def docker_build(ctx: Path, tag: str, lab: str) -> float:
    """Seconds of ``docker build`` of ``ctx`` (the engine's classic builder, which labctl's API build uses)."""
    from labctl.engine.buildpack import DOCKERFILE

    argv = ["docker", "build", "-q", "-f", str(ctx / DOCKERFILE), "-t", tag, "--label", f"{BENCH_LABEL}={lab}"]
    t0 = time.perf_counter()
    out = subprocess.run(
        [*argv, str(ctx)],
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "DOCKER_BUILDKIT": "0"},
    )
    took = time.perf_counter() - t0
    if out.returncode != 0:
        raise BenchError(f"docker build failed: {out.stderr.strip()[-300:]}")
    return took
