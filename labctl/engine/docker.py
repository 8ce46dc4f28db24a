"""The Engine adapter: the one object through which the lab talks to Docker (style.md §4). Containers,
networks and the router here; images through ``engine/images.py``, which it drives.

Everything it creates carries ``io.labctl.*`` labels; ``remove_lab`` removes exactly those objects.
Every public method raises the lab's errors (``EngineError``, ``EngineUnavailable``), never the Docker SDK's:
``translate_errors`` (``engine/translate.py``) wraps them.
"""

from __future__ import annotations

import io
import logging
import os
import signal
import tarfile
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors
import requests

from labctl import const
from labctl.engine import base_image, build, images
from labctl.engine.cgroups import Cgroups
from labctl.engine.engines import Engines
from labctl.engine.translate import SDK_ERRORS, translate_errors
from labctl.errors import EngineUnavailable, LabError

log = logging.getLogger("labctl.engine")

# A container's stats: the SDK's errors, or an answer without the figure
_STATS_ERRORS: tuple[type[Exception], ...] = (*SDK_ERRORS, KeyError, TypeError, ValueError)


def connect() -> docker.DockerClient:
    """Build the one Docker client from the environment (``DOCKER_HOST`` respected) and check it answers."""
    try:
        client = docker.from_env(max_pool_size=200, timeout=120)
        client.ping()
    except SDK_ERRORS as err:
        raise EngineUnavailable(
            f"Docker engine is not reachable ({_short(err)}). Is the Docker daemon running?"
        ) from None
    return client


def _short(err: Exception) -> str:
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    return text[:200]


@dataclass(frozen=True)
class ContainerInfo:
    id: str
    name: str
    labels: dict[str, str]
    status: str  # created | running | exited | dead | ...
    exit_code: int
    pid: int
    oom_killed: bool = False
    node: str | None = None  # the swarm node whose engine runs it; None: the home engine (DOCKER_HOST)


@dataclass(frozen=True)
class DynoSpec:
    """Everything needed to start one dyno container."""

    app: str
    dyno: str
    release: int
    instance: str
    image: str
    command: str
    env: dict[str, str]
    sandbox: str  # container id whose network namespace the dyno joins
    memory_mb: int
    cpu_shares: int
    cgroup_parent: str | None = None  # the runtime instance's parent cgroup: its dynos share its budget


def lab_labels(lab: str, kind: str, **extra: str | None) -> dict[str, str]:
    labels = {const.LABEL_LAB: lab, const.LABEL_KIND: kind}
    keys = {
        "app": const.LABEL_APP,
        "dyno": const.LABEL_DYNO,
        "instance": const.LABEL_INSTANCE,
        "release": const.LABEL_RELEASE,
        "space": const.LABEL_SPACE,
    }
    for k, v in extra.items():
        if v is not None:
            labels[keys[k]] = str(v)
    return labels


@translate_errors
class Engine:
    """Container, network and image operations for one lab.

    ``client`` is the home engine (``DOCKER_HOST``): routers, networks, images and new containers. ``nodes`` (name
    → client, ``engines.connect_nodes``) are the swarm nodes the lab's settings name; an operation on a container
    goes to the engine it lives on (``self.engines``). Without nodes, every call goes to the home engine as before.
    """

    def __init__(self, client: docker.DockerClient, lab: str, nodes: Mapping[str, docker.DockerClient] | None = None):
        self.client = client
        self.lab = lab
        self.prefix = f"labctl-{lab}"
        self._router_inits: dict[str, tuple[int, str]] = {}  # router name -> its init's host pid and start time
        self.engines = Engines(client, dict(nodes or {}))

    def _on(self, container_id: str) -> docker.DockerClient:
        """The client of the engine ``container_id`` lives on."""
        return self.engines.client_of(container_id)

    # -- networks ---------------------------------------------------------------------------------
    def network_name(self, space: str | None) -> str:
        return f"{self.prefix}-space-{space}" if space else f"{self.prefix}-common"

    def ensure_network(self, space: str | None) -> str:
        name = self.network_name(space)
        try:
            self.client.networks.get(name)
        except docker.errors.NotFound:
            self.client.networks.create(
                name, driver="bridge", labels=lab_labels(self.lab, const.KIND_NETWORK, space=space)
            )
        return name

    def remove_network(self, space: str | None) -> None:
        """Detach the router, then remove the network."""
        try:
            net = self.client.networks.get(self.network_name(space))
        except docker.errors.NotFound:
            return
        try:
            net.disconnect(self.router_name(), force=True)
        except docker.errors.APIError:
            pass
        net.remove()

    # -- router -----------------------------------------------------------------------------------
    def router_name(self, space: str | None = None) -> str:
        """The router container serving a runtime: the common router (``None``) or a Private Space's own."""
        return f"{self.prefix}-router-space-{space}" if space else f"{self.prefix}-router"

    def router_ip(self, space: str) -> str | None:
        """A space router's address on its space's network (where the common router reaches it)."""
        try:
            c = self.client.containers.get(self.router_name(space))
        except docker.errors.NotFound:
            return None
        net = (c.attrs["NetworkSettings"].get("Networks") or {}).get(self.network_name(space)) or {}
        return net.get("IPAddress") or None

    def ensure_router(
        self,
        image: str,
        http_port: int,
        networks: Iterable[str],
        conf: str,
        https_port: int | None = None,
        files: dict[str, str] | None = None,
        space: str | None = None,
    ) -> ContainerInfo:
        """Start the nginx router (published on 127.0.0.1 only) attached to every lab network; with ``space``,
        that space's own router, on its network only and published nowhere (the common router forwards to it).

        ``files`` (path -> text) are installed before nginx starts: the TLS certificate and key.
        """
        networks = list(networks)
        try:
            c = self.client.containers.get(self.router_name(space))
            if c.status != "running":
                c.start()
                self._await_nginx(c)
        except docker.errors.NotFound:
            ports: dict[str, tuple[str, int | None]] = {}
            if space is None:
                ports["80/tcp"] = ("127.0.0.1", http_port or None)
            if https_port is not None and space is None:
                ports["443/tcp"] = ("127.0.0.1", https_port or None)
            from labctl.engine import router as router_conf  # nginx + the hold service (router_hold.py)

            c = self.client.containers.create(
                image,
                router_conf.router_command(),
                name=self.router_name(space),
                init=True,
                labels=lab_labels(self.lab, const.KIND_ROUTER, space=space),
                # NET_ADMIN: the hold service's first-byte watchdog aborts stalled upstream sockets (ss -K), and
                # router-end faults run iptables and the fault proxy here (engine/faults.py)
                cap_add=["NET_ADMIN"],
                ports=ports,
                network=networks[0],
                restart_policy={"Name": "unless-stopped"},
            )
            for path, text in (files or {}).items():
                self.put_file(c.id, path, text, mode=0o600 if path.endswith(".key") else 0o644)
            self.put_file(c.id, router_conf.HOLD_SCRIPT, router_conf.hold_script())
            self.put_file(c.id, "/etc/nginx/nginx.conf", conf)
            c.start()
            self._await_nginx(c)
        c.reload()
        attached = set(c.attrs["NetworkSettings"]["Networks"])
        for net in networks:
            if net not in attached:
                self.client.networks.get(net).connect(c)
        return self.info(c.id)

    @staticmethod
    def _await_nginx(c: Any, timeout: float = 10.0) -> None:
        """Until nginx's master runs in a router just started: a reload (SIGHUP) sent before the container's
        shell has set its HUP trap ends the container (exit 129), which happened on a loaded machine."""
        import time

        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                if any("nginx: master" in " ".join(p) for p in c.top().get("Processes") or []):
                    return
            except docker.errors.APIError:
                pass  # not running yet, or already gone: the caller's next step says so
            time.sleep(0.05)

    def router_ports(self) -> dict[str, int]:
        """The router's published loopback ports: {"http": N, "https": M}."""
        try:
            c = self.client.containers.get(self.router_name())
        except docker.errors.NotFound:
            return {}
        out = {}
        for key, name in (("80/tcp", "http"), ("443/tcp", "https")):
            bound = (c.attrs["NetworkSettings"].get("Ports") or {}).get(key) or []
            if bound:
                out[name] = int(bound[0]["HostPort"])
        return out

    def settled_router_ports(self, timeout: float = 10.0) -> dict[str, int]:
        """``router_ports()`` once the router publishes its HTTP port: a container that is (re)starting
        publishes none for a moment, and a port chosen by the engine (0) is only known then."""
        import time

        deadline = time.time() + timeout
        ports = self.router_ports()
        while "http" not in ports and time.time() < deadline:
            time.sleep(0.1)
            ports = self.router_ports()
        return ports

    def connect_router(self, network: str) -> None:
        c = self.client.containers.get(self.router_name())
        c.reload()
        if network not in c.attrs["NetworkSettings"]["Networks"]:
            self.client.networks.get(network).connect(c)

    def reload_router(self, conf: str, generation: int, port: int | None, space: str | None = None) -> None:
        """Install a new nginx.conf, reload gracefully, and wait until the new config answers.

        In-flight requests finish on the old workers. Old workers keep accepting for a few ms after the
        reload signal, so the caller only reports a routing change once three requests in a row were
        answered by the new generation (a stale address is then no longer used).

        The reload is a SIGHUP through the container's init (docker-init passes it to nginx's master), not
        ``docker exec nginx -s reload``: an exec costs 50–150 ms here, paid twice on every dyno restart (the old
        address leaves, the new one joins; bench/). nginx keeps its old config when it rejects a new one, so
        a generation that does not show up soon is checked with ``nginx -t``, which names the fault.
        """
        name = self.router_name(space)
        if not self._reload_known_router(name, conf):
            c = self.client.containers.get(name)
            self._write_router_conf(c, conf)
            c.kill(signal="HUP")
            self._router_inits[name] = _init_on_this_host(c)
        host = generation_host(space)  # a space router is asked through the common router, which forwards
        if port and self._await_generation(generation, port, timeout=1.0, host=host):
            return
        self._router_inits.pop(name, None)  # signal through the engine next time
        c = self.client.containers.get(name)
        code, out = c.exec_run(["nginx", "-t"])
        if code != 0:
            raise LabError(f"router rejected its configuration: {out.decode(errors='replace').strip()[:300]}")
        if not port:  # nothing to ask: the signal was sent, give the workers a moment
            self._await_generation(generation, port)
            return
        c.exec_run(["nginx", "-s", "reload"])  # a router whose init did not pass the signal on
        if not self._await_generation(generation, port, host=host):
            import logging

            logging.getLogger(__name__).warning("router generation %d not seen in time", generation)

    def _reload_known_router(self, name: str, conf: str) -> bool:
        """Write nginx.conf and SIGHUP the router's init straight from this host, when the process an earlier
        reload of this router signalled through the engine is still there (same pid, same start time): two
        engine calls less (a container inspect and a kill, 15-100 ms here) between a new dyno binding its port
        and the router sending it traffic (issue 18). False: it is not (or this is not the engine's host)."""
        pid, started = self._router_inits.get(name, (0, ""))
        if not pid or _host_process(pid) != (pid, started):
            return False
        try:
            _write_through_proc(pid, conf)
            _hup(pid)
        except OSError:
            return False
        return True

    def _write_router_conf(self, c: Any, conf: str) -> None:
        """nginx.conf into the running router: through ``/proc/<pid>/root`` when the engine is on this host
        (a file write; the engine's archive upload costs 50–300 ms here, paid on every routing change), else
        (or when that fails) with ``put_file``. Written beside and renamed, so nginx never reads half a file."""
        pid = c.attrs["State"].get("Pid") or 0
        if pid:
            try:
                _write_through_proc(pid, conf)
                return
            except OSError:
                pass
        self.put_file(c.id, "/etc/nginx/nginx.conf", conf)

    @staticmethod
    def _await_generation(
        generation: int, port: int | None, timeout: float = 10.0, host: str = "labctl-router.internal"
    ) -> bool:
        """Poll the router until three answers in a row come from ``generation`` (a reload takes ~50 ms;
        the long timeout is for a machine under load, where a routing change reported early made an old
        dyno answer after its switch). Without a published port there is nothing to ask: a short pause."""
        import time

        if not port:
            time.sleep(0.2)
            return True
        url = f"http://127.0.0.1:{port}/__labctl/generation"
        deadline, streak = time.time() + timeout, 0
        while time.time() < deadline and streak < 3:
            try:
                seen = requests.get(url, headers={"Host": host}, timeout=0.5).text.strip()
            except requests.RequestException:
                seen = ""
            streak = streak + 1 if seen == str(generation) else 0
            if streak == 0:
                time.sleep(0.01)
        return streak >= 3

    def put_file(self, container_id: str, path: str, text: str, mode: int = 0o644) -> None:
        data = text.encode()
        buf = io.BytesIO()
        directory, name = path.rsplit("/", 1)
        with tarfile.open(fileobj=buf, mode="w") as tar:
            parts = directory.strip("/").split("/")
            for i in range(len(parts)):  # the parent directories too, so any path works
                d = tarfile.TarInfo("/".join(parts[: i + 1]))
                d.type, d.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(d)
            info = tarfile.TarInfo(f"{directory.strip('/')}/{name}")
            info.size = len(data)
            info.mode = mode
            tar.addfile(info, io.BytesIO(data))
        self._on(container_id).api.put_archive(container_id, "/", buf.getvalue())

    # -- sandboxes (an instance's network namespace for one app) ----------------------------------
    def create_sandbox(self, image: str, instance: str, app: str, network: str, space: str | None) -> tuple[str, str]:
        """A long-lived container that owns the network namespace dynos of ``app`` join on ``instance``.

        It holds NET_ADMIN so faults can be applied from inside it; dynos joining it do not get it.
        """
        c = self.client.containers.run(
            image,
            ["sleep", "infinity"],
            name=f"{self.prefix}-{instance}-{app}",
            detach=True,
            init=True,
            labels=lab_labels(self.lab, const.KIND_SANDBOX, app=app, instance=instance, space=space),
            network=network,
            cap_add=["NET_ADMIN"],
            hostname=instance[:63],
        )
        c.reload()
        ip = c.attrs["NetworkSettings"]["Networks"][network]["IPAddress"]
        return c.id, ip

    # -- dynos ------------------------------------------------------------------------------------
    def start_dyno(self, spec: DynoSpec, name_suffix: str) -> ContainerInfo:
        """Create and start a dyno container under an init so SIGTERM reaches the process (lab-spec §2).

        With the low-level calls (create, start, one inspect for the pid the boot check reads) rather than
        ``containers.run``, which inspects the new container between its create and its start as well: on a
        restart that inspect delays the new process by 5-30 ms here (issue 18)."""
        env = {**spec.env, "TINI_KILL_PROCESS_GROUP": "1"}
        mem = f"{spec.memory_mb}m"
        extra: dict[str, Any] = {"cgroup_parent": spec.cgroup_parent} if spec.cgroup_parent else {}
        api = self.client.api
        host_config = api.create_host_config(
            init=True,
            network_mode=f"container:{spec.sandbox}",
            mem_limit=mem,
            memswap_limit=mem,
            cpu_shares=spec.cpu_shares,
            **extra,
        )
        created = api.create_container(
            spec.image,
            ["/bin/bash", "-c", spec.command],
            name=f"{self.prefix}-{spec.app}-{spec.dyno}-{name_suffix}",
            detach=True,
            environment=env,
            working_dir="/app",
            labels=lab_labels(
                self.lab,
                const.KIND_DYNO,
                app=spec.app,
                dyno=spec.dyno,
                instance=spec.instance,
                release=str(spec.release),
            ),
            host_config=host_config,
        )
        api.start(created["Id"])
        return self.info(created["Id"])

    def info(self, container_id: str) -> ContainerInfo:
        return _container_info(self._on(container_id).containers.get(container_id), self.engines.node_of(container_id))

    def try_info(self, container_id: str | None) -> ContainerInfo | None:
        """``info``, or None when the container is gone."""
        if not container_id:
            return None
        try:
            c = self._on(container_id).containers.get(container_id)
        except docker.errors.NotFound:
            return None
        return _container_info(c, self.engines.node_of(container_id))

    def containers(self, kind: str | None = None) -> list[ContainerInfo]:
        filters = [f"{const.LABEL_LAB}={self.lab}"]
        if kind:
            filters.append(f"{const.LABEL_KIND}={kind}")
        out = []
        for node, client in self.engines.items():
            try:
                found = client.api.containers(all=True, filters={"label": filters})
            except SDK_ERRORS:
                if node is None:
                    raise  # the home engine: the caller's engine-lost handling
                log.warning("swarm node %s does not answer: its containers are left out of this pass", node)
                continue
            for c in found:
                self.engines.remember(c["Id"], node)
                out.append(ContainerInfo(c["Id"], c["Names"][0].lstrip("/"), c["Labels"], c["State"], 0, 0, node=node))
        return out

    def terminate(self, container_id: str, grace: float) -> tuple[int | None, bool]:
        """SIGTERM (to the whole process group via the init), wait ``grace`` s, then SIGKILL.

        Returns (exit status, killed_after_grace). Missing container -> (None, False).
        """
        try:
            c = self._on(container_id).containers.get(container_id)
            if c.status == "running":
                c.kill("SIGTERM")
        except docker.errors.NotFound:
            return None, False
        except docker.errors.APIError:
            pass  # raced with its own exit
        try:
            return int(c.wait(timeout=max(grace, 0.05))["StatusCode"]), False
        except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
            pass
        try:
            c.kill("SIGKILL")
        except docker.errors.APIError:
            pass
        try:
            return int(c.wait(timeout=30)["StatusCode"]), True
        except SDK_ERRORS:
            return 137, True

    def wait(self, container_id: str) -> int | None:
        """Block until the container exits; its status, or None when it is gone."""
        try:
            return int(self._on(container_id).containers.get(container_id).wait()["StatusCode"])
        except SDK_ERRORS:
            return None

    def output(self, container_id: str) -> Iterable[str]:
        """The container's output from its start, following until it exits."""
        try:
            yield from (
                b.decode(errors="replace")
                for b in self._on(container_id).api.logs(container_id, stream=True, follow=True)
            )
        except SDK_ERRORS:
            return

    def signal(self, container_id: str, sig: str) -> None:
        try:
            self._on(container_id).containers.get(container_id).kill(sig)
        except SDK_ERRORS:
            pass

    def wait_for_exit(self, container_id: str, timeout: float) -> bool:
        """True when the container exited within ``timeout`` seconds (or is gone)."""
        try:
            self._on(container_id).containers.get(container_id).wait(timeout=timeout)
            return True
        except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
            return False
        except docker.errors.NotFound:
            return True

    def kill(self, container_id: str) -> None:
        try:
            self._on(container_id).containers.get(container_id).kill("SIGKILL")
        except docker.errors.APIError:
            pass

    def remove(self, container_id: str) -> None:
        try:
            self._on(container_id).api.remove_container(container_id, force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as err:
            if "already in progress" not in str(err):
                raise
        self.engines.forget(container_id)

    def memory_bytes(self, container_id: str) -> int | None:
        """Memory the container uses (rss + cache, as Heroku counts for R14), from its cgroup.

        cgroup v1 and v2 paths are read from the host; a remote engine falls back to the stats API.
        """
        if self.engines.node_of(container_id) is not None:  # on a node: its cgroups are not this host's docker/
            return self._memory_from_stats(container_id)
        found = _CGROUPS.path("memory", container_id)  # under docker/ or an instance's parent cgroup
        for path in (
            *([f"{found}/memory.usage_in_bytes"] if found else []),
            f"/sys/fs/cgroup/memory/docker/{container_id}/memory.usage_in_bytes",
            f"/sys/fs/cgroup/system.slice/docker-{container_id}.scope/memory.current",
            f"/sys/fs/cgroup/docker/{container_id}/memory.current",
        ):
            try:
                with open(path) as f:
                    return int(f.read().strip())
            except (OSError, ValueError):
                continue
        return self._memory_from_stats(container_id)

    def _memory_from_stats(self, container_id: str) -> int | None:
        try:
            stats = self._on(container_id).api.stats(container_id, stream=False, one_shot=True)
            return int(stats["memory_stats"]["usage"])
        except _STATS_ERRORS:
            return None

    def remove_many(self, container_ids: Iterable[str]) -> None:
        """Force-remove containers in parallel (a removal takes ~0.1-0.3 s each)."""
        threads = [threading.Thread(target=self.remove, args=(cid,)) for cid in container_ids]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def listening_ports(self, info: ContainerInfo, local_only: bool = False) -> set[int] | None:
        """TCP ports the container's network namespace listens on, on a non-loopback address.

        Read from the host's /proc (no traffic, no exec); falls back to an exec for a remote engine
        (``local_only``: None instead, e.g. the process is gone). A process that binds 127.0.0.1 is not
        reachable by the router, so it does not count (R10).
        """
        texts = []
        try:
            if info.node is not None:  # its pid is its node's, not this host's: ask the node's engine
                return self._listening_by_exec(info)
            for name in ("tcp", "tcp6"):
                with open(f"/proc/{info.pid}/net/{name}") as f:
                    texts.append(f.read())
        except OSError:
            return None if local_only else self._listening_by_exec(info)
        return parse_proc_listen("\n".join(texts))

    def _listening_by_exec(self, info: ContainerInfo) -> set[int]:
        try:
            c = self._on(info.id).containers.get(info.id)
            code, out = c.exec_run(["cat", "/proc/net/tcp", "/proc/net/tcp6"])
        except SDK_ERRORS:
            return set()
        return parse_proc_listen(out.decode(errors="replace")) if code in (0, 1) else set()

    def follow_logs(
        self, container_id: str, on_line: Callable[[float, str], None], since: float | None = None
    ) -> threading.Thread:
        """Stream a container's output to ``on_line(ts, text)`` in a daemon thread (returned) until it exits."""

        def run() -> None:
            try:
                stream = self._on(container_id).api.logs(
                    container_id, stream=True, follow=True, timestamps=True, since=int(since) if since else None
                )
                buf = b""
                for chunk in stream:
                    buf += chunk
                    while b"\n" in buf:
                        line, buf = buf.split(b"\n", 1)
                        on_line(*_split_ts(line.decode(errors="replace")))
                if buf:
                    on_line(*_split_ts(buf.decode(errors="replace")))
            except SDK_ERRORS:
                return

        thread = threading.Thread(target=run, daemon=True, name=f"logs-{container_id[:12]}")
        thread.start()
        return thread

    def watch_events(
        self,
        on_event: Callable[[dict[str, Any]], None],
        on_lost: Callable[[], None] | None = None,
        on_reconnect: Callable[[], None] | None = None,
    ) -> threading.Thread:
        """Call ``on_event`` for every container event of this lab, in a daemon thread (reconnects); returns it.

        When the stream breaks and the engine does not answer a ping, ``on_lost()`` is called (dockerd
        stopped or restarting); ``on_reconnect()`` when a stream opens again after a break (events of the
        gap are lost)."""

        def run() -> None:
            import time

            first = True
            while True:
                try:
                    stream = self.client.events(
                        decode=True, filters={"type": "container", "label": f"{const.LABEL_LAB}={self.lab}"}
                    )
                    if not first and on_reconnect is not None:
                        on_reconnect()
                    first = False
                    for ev in stream:
                        on_event(ev)
                except SDK_ERRORS:
                    pass
                if on_lost is not None and not self.answers():
                    on_lost()
                time.sleep(1)

        thread = threading.Thread(target=run, daemon=True, name="docker-events")
        thread.start()
        return thread

    def answers(self) -> bool:
        """True when the engine answers a ping now."""
        try:
            return bool(self.client.ping())
        except SDK_ERRORS:
            return False

    def ping(self) -> None:
        """Nothing when the engine answers; EngineUnavailable when it does not."""
        self.client.ping()

    def version(self) -> dict[str, Any]:
        """The engine's version facts (``Version``, ``ApiVersion``, ``KernelVersion``, …)."""
        return dict(self.client.version())

    # -- images -----------------------------------------------------------------------------------
    def image_id(self, ref: str) -> str | None:
        """The short id of image ``ref`` (12 hex digits), or None when the engine has no such image."""
        img = build.image(self.client, ref)
        return img.short_id.split(":")[-1] if img else None

    def base_image_path(self) -> str | None:
        """How the stack's base image came to the engine (pulled, debootstrap), or None when there is none."""
        return base_image.describe_stack_base(self.client)

    def ensure_stack_image(self, progress: Callable[[str], None], base_override: str | None = None) -> str:
        """Build the stack image (and the base image under it) unless it is current; returns its ref."""
        return images.ensure_stack_image(self.client, progress, base_override=base_override)

    def build_slug(
        self,
        *,
        app: str,
        version: int,
        src_dir: Path,
        progress: Callable[[str], None],
        build_env: Mapping[str, str] | None = None,
        process_types: list[str] | None = None,
    ) -> str:
        """Build release ``version`` of ``app`` from ``src_dir`` as the buildpack does; returns the image's tag.
        Raises BuildFailed (no Procfile, no stack image, a failing step)."""
        return images.build_slug(
            self.client,
            lab=self.lab,
            app=app,
            version=version,
            src_dir=src_dir,
            progress=progress,
            build_env=build_env,
            process_types=process_types,
        )

    # -- teardown ---------------------------------------------------------------------------------
    def remove_app_images(self, app: str) -> None:
        """Slug images of one app of this lab, build-cache layers included."""
        self._remove_images([f"{const.LABEL_LAB}={self.lab}", f"{const.LABEL_APP}={app}"])

    def _remove_images(self, label_filters: list[str]) -> int:
        """Tagged images first (their untagged parents go with them), then leftover cache layers."""
        removed = 0
        for _ in range(3):
            images = self.client.images.list(all=True, filters={"label": label_filters})
            if not images:
                break
            images.sort(key=lambda i: not i.tags)
            for img in images:
                try:
                    self.client.images.remove(img.id, force=True)
                    removed += 1
                except docker.errors.APIError:
                    pass  # already gone with its child, or still a parent: the next round takes it
        return removed

    def stop_controller_containers(self) -> int:
        """Stop the containers running this lab's controller (compose/: label io.labctl.controller=<lab>).

        Stopped through the engine, a container's restart policy leaves it stopped; removing it is Compose's job."""
        stopped = 0
        for c in self.client.containers.list(filters={"label": f"{const.LABEL_CONTROLLER}={self.lab}"}):
            try:
                c.stop(timeout=10)
                stopped += 1
            except docker.errors.NotFound:
                pass
        return stopped

    def controller_mount_source(self, destination: str) -> str | None:
        """The host path mounted at ``destination`` in this lab's controller container (compose/), if one runs."""
        for c in self.client.containers.list(filters={"label": f"{const.LABEL_CONTROLLER}={self.lab}"}):
            for m in c.attrs.get("Mounts") or []:
                if m.get("Destination") == destination:
                    return m.get("Source")
        return None

    def remove_lab(self) -> dict[str, int]:
        """Remove every container, network and slug image labelled with this lab, and nothing else."""
        label = f"{const.LABEL_LAB}={self.lab}"
        counts = {"containers": 0, "networks": 0, "images": 0}
        conts = [c.id for c in self.containers()]  # on every engine the lab knows
        self.remove_many(conts)
        counts["containers"] = len(conts)
        for net in self.client.networks.list(filters={"label": label}):
            try:
                net.reload()
                for cid in net.attrs.get("Containers") or {}:
                    net.disconnect(cid, force=True)
                net.remove()
                counts["networks"] += 1
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as err:
                raise LabError(f"could not remove network {net.name}: {_short(err)}") from None
        counts["images"] = self._remove_images([label])
        return counts


_CGROUPS = Cgroups()  # finds a dyno's cgroup under docker/ or under its instance's parent


def generation_host(space: str | None) -> str:
    """The Host under which a router answers its configuration's generation (a space's via the common router)."""
    return f"{space}.labctl-router.internal" if space else "labctl-router.internal"


def _hup(pid: int) -> None:
    """SIGHUP to a router's init (docker-init passes it on to nginx's master: a graceful reload)."""
    os.kill(pid, signal.SIGHUP)


def router_conf_path(pid: int) -> str:
    """The router's nginx.conf as seen from this host, through its init's ``/proc/<pid>/root``."""
    return f"/proc/{pid}/root/etc/nginx/nginx.conf"


def _write_through_proc(pid: int, conf: str) -> None:
    """Write beside and rename, so nginx never reads half a file."""
    target = router_conf_path(pid)
    with open(target + ".labctl-new", "w") as f:
        f.write(conf)
    os.chmod(target + ".labctl-new", 0o644)
    os.replace(target + ".labctl-new", target)


def _init_on_this_host(c: Any) -> tuple[int, str]:
    """The container's init as ``_host_process`` names it, if it runs on this host (its cgroup names the
    container: a remote engine's pid means nothing here), else ``(0, "")``."""
    pid = c.attrs["State"].get("Pid") or 0
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            if not pid or c.id not in f.read():
                return 0, ""
    except OSError:
        return 0, ""
    return _host_process(pid)


def _host_process(pid: int) -> tuple[int, str]:
    """``(pid, start time)`` of a process on this host, ``(0, "")`` when it cannot be read; together they name one
    process (a pid is reused, its start time with it is not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return pid, f.read().rsplit(")", 1)[1].split()[19]  # field 22, starttime
    except (OSError, IndexError):
        return 0, ""


def _container_info(c: Any, node: str | None = None) -> ContainerInfo:
    st = c.attrs["State"]
    return ContainerInfo(
        c.id, c.name, c.labels, c.status, st.get("ExitCode", 0), st.get("Pid", 0), bool(st.get("OOMKilled")), node
    )


def _split_ts(line: str) -> tuple[float, str]:
    from datetime import datetime

    stamp, _, text = line.partition(" ")
    try:
        # Docker gives RFC3339 with nanoseconds: trim to microseconds for fromisoformat.
        head, _, frac = stamp.rstrip("Z").partition(".")
        ts = datetime.fromisoformat(f"{head}.{(frac + '000000')[:6]}+00:00").timestamp()
    except ValueError:
        import time

        return time.time(), line
    return ts, text.rstrip("\r")


def parse_proc_listen(text: str) -> set[int]:
    """Ports in LISTEN state (st 0A) on a non-loopback address, from /proc/net/tcp{,6} text."""
    ports = set()
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 4 or parts[3] != "0A" or ":" not in parts[1]:
            continue
        addr, port = parts[1].rsplit(":", 1)
        if addr in ("0100007F", "00000000000000000000000001000000") or addr.endswith("0100007F"):
            continue  # 127.0.0.1 / ::1 / ::ffff:127.0.0.1
        ports.add(int(port, 16))
    return ports
