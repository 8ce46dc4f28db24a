"""The nodes of a local swarm (``labctl swarm:local``): Docker-in-Docker containers on the host engine, each a
Docker engine of its own, reached over its API at ``tcp://<node address>:2376`` with TLS: the node verifies
the client's certificate, the client the node's (``labctl/engine/swarm_tls.py``).

Not ``--privileged`` (which fails on this machine kind): the capability, security-option and device set below,
a named volume on ``/var/lib/docker`` (overlay2 works there; vfs starts containers about 10x slower) and the
image's entry script (``images/swarm-node/node-entry.sh``). The nodes share a bridge network of their own on the
host; the host engine's own Swarm state is never read or changed here.

Everything made here carries ``io.labctl.swarm=<lab>`` and an ``io.labctl.kind``; ``remove`` removes exactly
those objects. The node image is shared (``io.labctl.image=swarm-node``) and kept, as the stack image is.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
import docker.tls

from labctl import const, resources
from labctl.engine import build, images, swarm_tls
from labctl.engine.translate import SDK_ERRORS, translate_errors
from labctl.errors import EngineError, LabError

Progress = Callable[[str], None]

NODE_PORT = 2376  # the node's Docker API: TLS, client certificates verified (never plain TCP: a node is root)
API_TIMEOUT = 60.0  # seconds from a node's start to its API answering (3-6 s here; generous for a loaded host)
MAX_NODES = 9
_STATS_ERRORS: tuple[type[Exception], ...] = (*SDK_ERRORS, KeyError, TypeError, ValueError)
NODE_ENTRY = "node-entry.sh"

# What `docker run` would be given (issue 23's measured set), minus --privileged.
CAP_ADD = ["ALL"]
CAP_DROP = ["SYS_RESOURCE"]
SECURITY_OPT = ["seccomp=unconfined", "apparmor=unconfined"]
DEVICE_CGROUP_RULES = ["a *:* rwm"]
DEVICES = ["/dev/fuse:/dev/fuse:rwm"]


@dataclass(frozen=True)
class Node:
    """One node container as the host engine sees it."""

    name: str  # the container's name, also the node's hostname (what the swarm lists)
    index: int  # 1 = the manager
    state: str  # the container's: running | exited | created | …
    address: str | None  # on the nodes' bridge network, while it runs

    @property
    def docker_host(self) -> str | None:
        """The node's Docker API, ``DOCKER_HOST``-style."""
        return f"tcp://{self.address}:{NODE_PORT}" if self.address else None


RESOLV_CONFS = (Path("/etc/resolv.conf"), Path("/run/systemd/resolve/resolv.conf"))


def host_resolvers(paths: tuple[Path, ...] = RESOLV_CONFS) -> list[str]:
    """The host's DNS servers that a container can reach (loopback ones are the host's own stub resolver): what
    the inner dockerd gets as ``--dns``; otherwise it falls back to public resolvers."""
    for path in paths:
        try:
            text = path.read_text()
        except OSError:
            continue
        found = []
        for m in re.finditer(r"^\s*nameserver\s+(\S+)", text, re.MULTILINE):
            with contextlib.suppress(ValueError):
                if not ipaddress.ip_address(m.group(1)).is_loopback:
                    found.append(m.group(1))
        if found:
            return found
    return []


def node_image_files() -> dict[str, bytes]:
    """The node image's build context: its Dockerfile and entry script (package data when installed)."""
    folder = resources.data_path("images", "swarm-node")
    return {name: (folder / name).read_bytes() for name in ("Dockerfile", NODE_ENTRY)}


@translate_errors
class LocalNodes:
    """The node containers, their volumes and their network, for one lab's local swarm, on the host engine."""

    def __init__(self, host: docker.DockerClient, lab: str, ca: swarm_tls.SwarmCa):
        self.host = host
        self.lab = lab
        self.ca = ca
        self.prefix = f"labctl-{lab}-swarm"

    # -- names and labels -----------------------------------------------------------------------------
    def network_name(self) -> str:
        return f"{self.prefix}-net"

    def node_name(self, index: int) -> str:
        return f"{self.prefix}-{index}"

    def volume_name(self, index: int) -> str:
        return f"{self.node_name(index)}-docker"

    def labels(self, kind: str) -> dict[str, str]:
        return {const.LABEL_SWARM: self.lab, const.LABEL_KIND: kind}

    # -- the image ------------------------------------------------------------------------------------
    def ensure_image(self, progress: Progress) -> str:
        """Build ``const.NODE_IMAGE`` FROM the lab's base image unless it exists from the same recipe and base."""
        files = node_image_files()
        base = images.ensure_base_image(self.host, progress)
        want = _node_hash(files, _image_id(self.host, base))
        old = build.image(self.host, const.NODE_IMAGE)
        if old is not None and (old.labels or {}).get(const.LABEL_NODE_HASH) == want:
            return const.NODE_IMAGE
        with build.file_lock("swarm-node", progress):
            old = build.image(self.host, const.NODE_IMAGE)
            if old is not None and (old.labels or {}).get(const.LABEL_NODE_HASH) == want:
                return const.NODE_IMAGE
            progress(f"Building the swarm node image {const.NODE_IMAGE} from {base} (about a minute)…")
            build.run_build(
                self.host,
                build.tar_context(files),
                tag=const.NODE_IMAGE,
                what=f"The build of {const.NODE_IMAGE}",
                progress=progress,
                buildargs={"BASE": base},
                labels={const.LABEL_IMAGE: "swarm-node", const.LABEL_NODE_HASH: want},
            )
            if old is not None:
                build.remove_unused(self.host, old.id)
        return const.NODE_IMAGE

    # -- the nodes ------------------------------------------------------------------------------------
    def nodes(self) -> list[Node]:
        """Every node container of this lab's local swarm, by index."""
        rows = self.host.api.containers(all=True, filters={"label": [f"{const.LABEL_SWARM}={self.lab}"]})
        found = []
        for row in rows:
            name = (row.get("Names") or ["/"])[0].lstrip("/")
            m = re.fullmatch(re.escape(self.prefix) + r"-(\d+)", name)
            if m and (row.get("Labels") or {}).get(const.LABEL_KIND) == const.KIND_SWARM_NODE:
                nets = (row.get("NetworkSettings") or {}).get("Networks") or {}
                addr = (nets.get(self.network_name()) or {}).get("IPAddress") or None
                found.append(Node(name, int(m.group(1)), row.get("State") or "", addr))
        return sorted(found, key=lambda n: n.index)

    def ensure_network(self) -> str:
        name = self.network_name()
        if not any(n.name == name for n in self.host.networks.list(names=[name])):  # names= matches substrings
            self.host.networks.create(name, driver="bridge", labels=self.labels(const.KIND_SWARM_NETWORK))
        return name

    def ensure_node(self, index: int, image: str, dns: list[str]) -> Node:
        """The node container ``index``, created (with its volume) if missing, started if not running, with a
        server certificate for the address it has (its dockerd waits for that certificate)."""
        name = self.node_name(index)
        try:
            c = self.host.containers.get(name)
        except docker.errors.NotFound:
            self._create(index, image, dns)
            c = self.host.containers.get(name)
        if c.status != "running":
            c.start()
        node = self.node(index)
        if node.address:
            swarm_tls.ensure_node_cert(self.ca, name, node.address)
        return node

    def _create(self, index: int, image: str, dns: list[str]) -> None:
        api = self.host.api
        volume = self.volume_name(index)
        certs = swarm_tls.prepare_node_dir(self.ca, self.node_name(index))  # this node's own, read-only
        if not self.host.volumes.list(filters={"name": f"^{volume}$"}):
            self.host.volumes.create(volume, labels=self.labels(const.KIND_SWARM_VOLUME))
        hc = api.create_host_config(
            cap_add=CAP_ADD,
            cap_drop=CAP_DROP,
            security_opt=SECURITY_OPT,
            device_cgroup_rules=DEVICE_CGROUP_RULES,
            devices=DEVICES,
            binds={
                volume: {"bind": "/var/lib/docker", "mode": "rw"},
                str(certs): {"bind": swarm_tls.NODE_TLS_DIR, "mode": "ro"},
            },
            network_mode=self.network_name(),
        )
        # `--security-opt systempaths=unconfined` is the CLI's word for these two: nothing masked, nothing
        # read-only under /proc and /sys (the daemon takes an empty list as "none").
        hc["MaskedPaths"] = []
        hc["ReadonlyPaths"] = []
        api.create_container(
            image,
            command=[arg for server in dns for arg in ("--dns", server)],
            name=self.node_name(index),
            hostname=self.node_name(index),
            labels=self.labels(const.KIND_SWARM_NODE),
            host_config=hc,
        )

    def node(self, index: int) -> Node:
        found = [n for n in self.nodes() if n.index == index]
        if not found:
            raise EngineError(f"swarm node {self.node_name(index)} is gone")
        return found[0]

    def wait_api(self, node: Node, since: float, timeout: float = API_TIMEOUT) -> float:
        """Seconds from ``since`` (``time.monotonic()`` at the node's start) until its Docker API answers;
        EngineError (with dockerd's last words) when the node stops first or does not answer in ``timeout``."""
        while time.monotonic() - since < timeout:
            node = self.node(node.index)
            if node.state != "running":
                raise EngineError(f"swarm node {node.name} stopped while starting: {self._last_words(node)}")
            if node.docker_host and _answers(node.docker_host, swarm_tls.tls_config(self.ca.client_dir)):
                return time.monotonic() - since
            time.sleep(0.1)
        raise EngineError(f"swarm node {node.name}'s Docker API did not answer in {timeout:.0f} s")

    def _last_words(self, node: Node) -> str:
        try:
            text = self.host.containers.get(node.name).logs(tail=5).decode(errors="replace").strip()
        except docker.errors.NotFound:
            return "its container is gone"
        return text.splitlines()[-1][:300] if text else "no output"

    def rss_bytes(self, node: Node) -> int | None:
        """The node container's resident memory (dockerd, containerd and whatever runs inside), if the engine says."""
        try:
            stats = self.host.api.stats(node.name, stream=False, one_shot=True)
            mem = stats["memory_stats"]
            return int(mem["stats"].get("total_rss", mem["stats"].get("anon", 0)))
        except _STATS_ERRORS:
            return None

    # -- removal --------------------------------------------------------------------------------------
    def remove(self) -> dict[str, int]:
        """Remove every node container, volume and network of this lab's local swarm, then its certificates;
        counts of each."""
        label = f"{const.LABEL_SWARM}={self.lab}"
        counts = {"nodes": 0, "volumes": 0, "networks": 0}
        for row in self.host.api.containers(all=True, filters={"label": [label]}):
            with contextlib.suppress(docker.errors.NotFound):
                self.host.api.remove_container(row["Id"], force=True, v=True)
                counts["nodes"] += 1
        for vol in self.host.volumes.list(filters={"label": label}):
            with contextlib.suppress(docker.errors.NotFound):
                vol.remove(force=True)
                counts["volumes"] += 1
        for net in self.host.networks.list(filters={"label": label}):
            with contextlib.suppress(docker.errors.NotFound):
                net.remove()
                counts["networks"] += 1
        swarm_tls.remove(self.ca)
        return counts


def _answers(url: str, tls: docker.tls.TLSConfig) -> bool:
    try:
        probe = swarm_tls.api_client(url, tls, timeout=2)
    except SDK_ERRORS:
        return False
    try:
        return bool(probe.ping())
    except SDK_ERRORS:
        return False
    finally:
        probe.close()


def _image_id(client: docker.DockerClient, ref: str) -> str:
    img = build.image(client, ref)
    if img is None:
        raise LabError(f"The base image {ref} is not on the engine")
    return str(img.id)


def _node_hash(files: dict[str, bytes], base_id: str) -> str:
    h = hashlib.sha256(base_id.encode())
    for name in sorted(files):
        h.update(b"\0" + name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    return h.hexdigest()[:16]
