"""A Docker Swarm among a local swarm's nodes, formed and read through the nodes' own Docker APIs.

The host engine is never asked to init, join or leave anything: Swarm mode is global to an engine, and the host's
engine is shared by every other lab and test. The first node is the manager; the others join it as workers.
Swarm **services** are not used (this kernel has no IPVS: no service virtual IPs, no routing mesh); standalone
containers on an attachable overlay network reach each other across nodes by name.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import docker
import docker.errors
import docker.tls

from labctl.engine import swarm_tls
from labctl.engine.translate import SDK_ERRORS, translating
from labctl.errors import EngineError, EngineUnavailable

SWARM_PORT = 2377  # the managers' cluster port (TCP); 7946 TCP/UDP (gossip) and 4789 UDP (VXLAN) besides
READY_TIMEOUT = 60.0


@dataclass(frozen=True)
class NodeApi:
    """A node's engine: its name (and hostname), its address on the nodes' network, a client of its API."""

    name: str
    address: str
    client: Any  # docker.DockerClient


@dataclass(frozen=True)
class Member:
    """One node as the swarm's manager lists it."""

    hostname: str
    role: str  # manager | worker
    status: str  # ready | down | unknown | disconnected
    availability: str  # active | pause | drain
    leader: bool
    address: str


def connect_node(url: str, tls: docker.tls.TLSConfig | None, timeout: float = 300.0) -> docker.DockerClient:
    """A client of a node's Docker API (long timeout: an image load answers when it is done), with TLS: this
    client's certificate, the node's verified (``swarm_tls.tls_config``)."""
    try:
        return swarm_tls.client(url, tls, timeout=timeout)
    except SDK_ERRORS as err:
        raise EngineUnavailable(f"The swarm node at {url} does not answer ({err})") from None


@translating
def ensure_swarm(manager: NodeApi, workers: list[NodeApi]) -> dict[str, float]:
    """The manager leads a swarm at its address and every worker is a member of it; seconds each init or join
    took (nodes already in place are left alone, so a second call changes nothing)."""
    took: dict[str, float] = {}
    sw = manager.client.info()["Swarm"]
    if not (
        sw.get("LocalNodeState") == "active" and sw.get("ControlAvailable") and sw.get("NodeAddr") == manager.address
    ):
        _leave(manager)
        started = time.monotonic()
        manager.client.swarm.init(advertise_addr=manager.address, listen_addr=f"{manager.address}:{SWARM_PORT}")
        took[manager.name] = time.monotonic() - started
    manager.client.swarm.reload()
    token = manager.client.swarm.attrs["JoinTokens"]["Worker"]
    members = {n.id for n in manager.client.nodes.list()}
    for w in workers:
        if w.client.info()["Swarm"].get("NodeID") in members:
            continue
        _leave(w)
        started = time.monotonic()
        w.client.swarm.join(
            remote_addrs=[f"{manager.address}:{SWARM_PORT}"],
            join_token=token,
            listen_addr=f"{w.address}:{SWARM_PORT}",
            advertise_addr=w.address,
        )
        took[w.name] = time.monotonic() - started
    return took


def _leave(node: NodeApi) -> None:
    """Out of whatever swarm the node's engine is in (a re-formed manager's old one, a half-done join)."""
    if node.client.info()["Swarm"].get("LocalNodeState") != "inactive":
        node.client.swarm.leave(force=True)


@translating
def await_ready(manager: NodeApi, names: list[str], timeout: float = READY_TIMEOUT) -> float:
    """Seconds until the manager lists every node of ``names`` as ready; entries of nodes that left (a node
    that re-joined is listed twice, once ``down``) are removed on the way."""
    started = time.monotonic()
    while True:
        rows = manager.client.nodes.list()
        ready = {_member(n).hostname for n in rows if _member(n).status == "ready"}
        for n in rows:
            if _member(n).status == "down" and _member(n).hostname in ready:
                manager.client.api.remove_node(n.id, force=True)
        if set(names) <= ready:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            late = ", ".join(sorted(set(names) - ready))
            raise EngineError(f"swarm nodes not ready after {timeout:.0f} s: {late}")
        time.sleep(0.2)


@translating
def members(manager: NodeApi) -> list[Member]:
    """The swarm's nodes as its manager lists them (empty when the manager leads no swarm)."""
    if not manager.client.info()["Swarm"].get("ControlAvailable"):
        return []
    return sorted((_member(n) for n in manager.client.nodes.list()), key=lambda m: m.hostname)


def _member(node: Any) -> Member:
    attrs = node.attrs
    status = attrs.get("Status") or {}
    return Member(
        hostname=(attrs.get("Description") or {}).get("Hostname", ""),
        role=(attrs.get("Spec") or {}).get("Role", ""),
        status=status.get("State", ""),
        availability=(attrs.get("Spec") or {}).get("Availability", ""),
        leader=bool((attrs.get("ManagerStatus") or {}).get("Leader")),
        address=status.get("Addr", ""),
    )


@translating
def ensure_overlay(manager: NodeApi, name: str, labels: dict[str, str]) -> str:
    """An attachable overlay network ``name`` on the swarm (standalone containers on any node may join it)."""
    found = [n for n in manager.client.networks.list(names=[name]) if n.name == name]
    if found:
        return str(found[0].id)
    return str(manager.client.networks.create(name, driver="overlay", attachable=True, labels=labels).id)


@translating
def local_state(node: NodeApi) -> str:
    """The node engine's own Swarm state: inactive | pending | active | error | locked."""
    return str(node.client.info()["Swarm"].get("LocalNodeState", ""))


@translating
def image_tags(node: NodeApi) -> list[str]:
    """The tagged images on the node's engine."""
    return sorted(t for img in node.client.images.list() for t in img.tags)


@translating
def has_image(node: NodeApi, ref: str, image_id: str) -> bool:
    try:
        return bool(node.client.images.get(ref).id == image_id)
    except docker.errors.ImageNotFound:
        return False
