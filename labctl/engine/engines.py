"""Which Docker engine a container lives on (the seam of issue 23's backends; docs/swarm.md).

The *home* engine is the one of ``DOCKER_HOST``: the routers, the networks, the images, and every container of a
lab whose settings name no nodes (today's default, unchanged: no lookup is ever made then). When the settings name
swarm nodes (their Docker API URLs), each node's engine is known by its name (the engine's hostname, which is also
its name in the swarm), and a container's engine is found once, then remembered. Placement on nodes does not exist
yet: nothing here decides where a container goes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import docker
import docker.errors

from labctl.engine import swarm_tls
from labctl.engine.translate import SDK_ERRORS, short
from labctl.errors import EngineUnavailable, LabError

log = logging.getLogger("labctl.engine")

HOME: str | None = None  # the node name of the home engine


class Engines:
    """The home engine's client and the nodes' clients; a container id → its node, learned as containers are met."""

    def __init__(self, home: Any, nodes: dict[str, Any] | None = None):
        self.home = home
        self.nodes = dict(nodes or {})
        self._where: dict[str, str | None] = {}
        self._lock = threading.Lock()

    def items(self) -> Iterator[tuple[str | None, Any]]:
        """(node name, client) of every engine, the home engine (name None) first."""
        yield HOME, self.home
        yield from self.nodes.items()

    def client(self, node: str | None) -> Any:
        if node is HOME:
            return self.home
        if node not in self.nodes:
            raise LabError(f"No swarm node named {node!r} in this lab's settings")
        return self.nodes[node]

    def remember(self, container_id: str, node: str | None) -> None:
        if self.nodes:
            with self._lock:
                self._where[container_id] = node

    def forget(self, container_id: str) -> None:
        with self._lock:
            self._where.pop(container_id, None)

    def node_of(self, container_id: str) -> str | None:
        """The node a container lives on (None: the home engine, also for a container no engine has: the caller's
        next call then meets the home engine's NotFound, as with one engine)."""
        if not self.nodes:
            return HOME
        with self._lock:
            if container_id in self._where:
                return self._where[container_id]
        for node, client in self.items():
            try:
                client.api.inspect_container(container_id)
            except docker.errors.NotFound:
                continue
            except SDK_ERRORS:  # a node that does not answer: not there as far as this call can tell
                continue
            self.remember(container_id, node)
            return node
        return HOME

    def client_of(self, container_id: str) -> Any:
        """The client of the engine the container lives on."""
        return self.client(self.node_of(container_id))


def connect_nodes(
    urls: Sequence[str],
    tls_dir: str | Path | None = None,
    timeout: float = 120.0,
    skip_unreachable: bool = False,
    skipped: list[str] | None = None,
) -> dict[str, Any]:
    """A client per node API URL (``DOCKER_HOST``-style), named by its engine's hostname.

    EngineUnavailable names the first that does not answer, unless ``skip_unreachable`` (the controller: a node that
    is gone must not keep the lab's own dynos from running; it is logged, left out and its URL added to
    ``skipped``). With ``tls_dir`` (ca.pem, cert.pem, key.pem) every client presents that certificate and verifies
    the node's against ca.pem."""
    nodes: dict[str, Any] = {}
    tls = swarm_tls.tls_config(tls_dir) if tls_dir else None
    for url in urls:
        try:
            client = swarm_tls.client(url, tls, timeout=timeout, max_pool_size=50)
            name = str(client.info()["Name"])
        except SDK_ERRORS as err:
            if skip_unreachable:
                log.warning("swarm node at %s does not answer (%s): left out", url, short(err))
                if skipped is not None:
                    skipped.append(url)
                continue
            raise EngineUnavailable(f"The swarm node at {url} does not answer ({short(err)})") from None
        if name in nodes:
            raise LabError(f"Two swarm node URLs reach the same engine ({name}): {url}")
        nodes[name] = client
    return nodes
