"""``labctl swarm:local``: a Docker Swarm of Docker-in-Docker nodes on this machine, for tests and demos (the
local multi-node setup of docs/swarm.md).

``up`` builds the node image if needed, starts the node containers, forms a swarm among them (the first node
the manager; the host engine's own Swarm state is never touched), creates an attachable overlay network and
loads the stack image into every node. The nodes' APIs answer only over TLS with a client certificate of the
swarm's own CA (``engine/swarm_tls.py``), kept beside the lab's state directory. ``down`` removes every node
container, volume and network it made, and the certificates. Labels are the truth for the Docker objects, so
``status`` and ``down`` work from any process.
"""

from __future__ import annotations

import contextlib
import shlex
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from labctl import const
from labctl.engine import swarm_tls
from labctl.engine.docker import Engine, connect
from labctl.engine.swarm import Member, NodeApi, await_ready, connect_node, ensure_overlay, ensure_swarm, members
from labctl.engine.swarm_images import distribute
from labctl.engine.swarm_nodes import MAX_NODES, LocalNodes, Node, host_resolvers
from labctl.engine.swarm_tls import SwarmCa
from labctl.errors import Conflict, InvalidInput, LabError
from labctl.labdir import LabDir, validate_lab_name

DEFAULT_NODES = 3
Progress = Callable[[str], None]


def overlay_name(lab: str) -> str:
    """The attachable overlay network every node of the lab's local swarm shares."""
    return f"labctl-{lab}-overlay"


def certificates(lab: str) -> SwarmCa:
    """Where the lab's local swarm keeps its CA and certificates: beside the lab's state directory, not in it
    (``labctl down`` removes that directory, and the swarm outlives a lab)."""
    d = LabDir(lab).path
    return SwarmCa(d.parent / f"{d.name}.swarm-tls")


def check_nodes(nodes: int | None) -> None:
    if nodes is not None and not 1 <= nodes <= MAX_NODES:
        raise InvalidInput(f"--nodes must be between 1 and {MAX_NODES} (got {nodes})")


def up(lab: str, progress: Progress, nodes: int | None = None) -> dict[str, Any]:
    """Start (or complete) the lab's local swarm; idempotent. When this call made the first node, a failure or
    Ctrl-C on the way removes everything it made before the error goes on."""
    validate_lab_name(lab)
    check_nodes(nodes)
    host = connect()
    local = LocalNodes(host, lab, certificates(lab))
    existing = local.nodes()
    if existing and nodes is not None and len(existing) != nodes:
        raise Conflict(
            f"The local swarm of lab {lab!r} has {len(existing)} nodes; run `labctl swarm:local down` to change that"
        )
    if existing and not local.ca.exists():
        raise Conflict(
            f"The certificates of lab {lab!r}'s local swarm are gone (or its nodes predate TLS); "
            "run `labctl swarm:local down`, then `up`"
        )
    count = nodes or len(existing) or DEFAULT_NODES
    try:
        timings = _up(local, host, count, progress)
    except BaseException:
        if not existing:
            with _no_interrupts():
                progress(f"Removing the partial local swarm of lab {lab}…")
                local.remove()
        raise
    changed = bool(timings["api_s"] or timings["join_s"] or timings["load_s"])
    return {"changed": changed, **_status(local, host), "timings": timings}


def _up(local: LocalNodes, host: Any, count: int, progress: Progress) -> dict[str, Any]:
    Engine(host, local.lab).ensure_stack_image(progress)  # what the nodes get: built here first if missing
    image = local.ensure_image(progress)
    swarm_tls.ensure_ca(local.ca)
    local.ensure_network()
    dns = host_resolvers()
    started: dict[int, float] = {}
    for i in range(1, count + 1):  # start them all, then wait: their starts overlap
        if local.node_name(i) not in {n.name for n in local.nodes() if n.state == "running"}:
            progress(f"Starting swarm node {local.node_name(i)}…")
            started[i] = time.monotonic()
        local.ensure_node(i, image, dns)
    api_s = {local.node_name(i): round(local.wait_api(local.node(i), since), 2) for i, since in started.items()}
    for n in local.nodes():
        if n.index not in started:
            local.wait_api(n, time.monotonic())
    apis = [_api(local, n) for n in local.nodes()]
    join_s = ensure_swarm(apis[0], apis[1:])
    if join_s:
        progress(f"Formed the swarm: {apis[0].name} manages {len(apis) - 1} worker(s).")
    ready_s = await_ready(apis[0], [a.name for a in apis])
    ensure_overlay(apis[0], overlay_name(local.lab), local.labels(const.KIND_SWARM_NETWORK))
    load_s = distribute(host, const.STACK_IMAGE, apis, progress)
    return {
        "api_s": api_s,
        "join_s": {k: round(v, 2) for k, v in join_s.items()},
        "ready_s": round(ready_s, 2),
        "load_s": {k: round(v, 2) for k, v in load_s.items()},
    }


def _api(local: LocalNodes, node: Node, timeout: float = 300.0) -> NodeApi:
    if not node.address or not node.docker_host:
        raise LabError(f"swarm node {node.name} has no address on its network (state {node.state})")
    tls = swarm_tls.tls_config(local.ca.client_dir)
    return NodeApi(node.name, node.address, connect_node(node.docker_host, tls, timeout))


@contextlib.contextmanager
def _no_interrupts() -> Iterator[None]:
    """Ctrl-C is ignored while a partial swarm is removed (a second one would leave half of it)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


def down(lab: str) -> dict[str, int]:
    """Remove every node container, volume and network of the lab's local swarm (none: all counts 0), and its
    certificates."""
    validate_lab_name(lab)
    return LocalNodes(connect(), lab, certificates(lab)).remove()


def status(lab: str) -> dict[str, Any]:
    """The lab's local swarm: each node's container state, Docker API, swarm role and state, images."""
    validate_lab_name(lab)
    host = connect()
    return _status(LocalNodes(host, lab, certificates(lab)), host)


def _status(local: LocalNodes, host: Any) -> dict[str, Any]:
    nodes = local.nodes()
    apis: dict[str, NodeApi | None] = {n.name: _maybe_api(local, n) for n in nodes}
    manager = apis.get(nodes[0].name) if nodes else None
    listed = {m.hostname: m for m in _quiet(lambda: members(manager), [])} if manager else {}
    rows = [_node_row(local, n, apis[n.name], listed.get(n.name)) for n in nodes]
    urls = [n.docker_host for n in nodes if n.docker_host]
    return {
        "lab": local.lab,
        "up": bool(nodes),
        "manager": nodes[0].docker_host if nodes else None,
        "network": local.network_name(),
        "overlay": overlay_name(local.lab),
        "urls": urls,
        "tls_dir": str(local.ca.client_dir) if nodes else None,
        "labctl_up": lab_up_line(local.lab, urls, local.ca.client_dir) if urls else None,
        "nodes": rows,
    }


def lab_up_line(lab: str, urls: list[str], tls_dir: Any) -> str:
    """The ``labctl up`` command line that gives a lab these nodes and this client certificate."""
    lab_opt = "" if lab == const.DEFAULT_LAB else f" --lab {lab}"
    nodes = " ".join(f"--swarm-node {u}" for u in urls)
    return f"labctl up{lab_opt} {nodes} --swarm-tls-dir {shlex.quote(str(tls_dir))}"


def _node_row(local: LocalNodes, n: Node, api: NodeApi | None, member: Member | None) -> dict[str, Any]:
    from labctl.engine.swarm import image_tags, local_state

    rss = local.rss_bytes(n) if n.state == "running" else None
    return {
        "name": n.name,
        "container": n.state,
        "docker_host": n.docker_host,
        "swarm": _quiet(lambda: local_state(api), "unreachable") if api else "unreachable",
        "role": member.role if member else None,
        "status": member.status if member else None,
        "availability": member.availability if member else None,
        "leader": bool(member and member.leader),
        "images": _quiet(lambda: image_tags(api), []) if api else [],
        "rss_mb": round(rss / 2**20, 1) if rss is not None else None,
    }


def _maybe_api(local: LocalNodes, node: Node) -> NodeApi | None:
    if node.state != "running" or not node.address or not node.docker_host or not local.ca.exists():
        return None
    return _quiet(lambda: _api(local, node, timeout=10.0), None)


def _quiet(fn: Callable[[], Any], default: Any) -> Any:
    """``fn()``, or ``default`` when the node does not answer (status shows what it can)."""
    try:
        return fn()
    except LabError:
        return default
