"""Lab lifecycle: ``up``, ``down``, ``status`` (lab-spec §10). Used by the CLI and by tests."""

from __future__ import annotations

import ipaddress
import os
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from labctl.client import Client, controller_answers
from labctl.controller.daemon import spawn_supervisor
from labctl.domain.placement import POLICIES
from labctl.engine import swarm_tls
from labctl.engine.docker import Engine, connect
from labctl.engine.engines import connect_nodes
from labctl.errors import ControllerUnavailable, InvalidInput, LabError
from labctl.labdir import SWARM_TLS, LabDir
from labctl.settings import Settings, check_node_urls, check_settings

START_TIMEOUT = 60.0
NODE_CHECK_TIMEOUT = 10.0  # seconds a swarm node has to answer `up`'s check


def up(
    lab: str,
    progress: Callable[[str], None],
    *,
    http_port: int | None = None,
    timescale: float | None = None,
    pool_size: int | None = None,
    provision_time: float | None = None,
    cycle_period: float | None = None,
    base_image: str | None = None,
    https_port: int | None = None,
    debug_headers: bool | None = None,
    placement: str | None = None,
    swarm_nodes: list[str] | None = None,
    swarm_tls_dir: str | None = None,
) -> dict[str, Any]:
    """Build images if needed, start the controller (which starts the router). Idempotent.

    ``swarm_nodes`` (DOCKER_HOST-style URLs) and ``swarm_tls_dir`` (ca.pem, cert.pem, key.pem) name the swarm
    nodes the controller connects to (docs/swarm.md); they are checked, each node must answer, before anything
    is changed."""
    d = LabDir(lab)
    if placement is not None and placement not in POLICIES:  # before any build or comparison with a running lab
        raise InvalidInput(f"Invalid placement {placement!r}: it must be one of {', '.join(POLICIES)}")
    client = connect()
    tls_src = check_swarm(swarm_nodes, swarm_tls_dir)
    if tls_src is not None and tls_src.resolve().is_relative_to(d.path.resolve()):
        raise InvalidInput(
            f"--swarm-tls-dir {tls_src} is inside lab {lab!r}'s own state: give the directory the certificates "
            "came from (labctl swarm:local status names it)"
        )
    if d.exists() and controller_answers(lab):
        s = d.settings()
        if (
            http_port not in (None, s.http_port)
            or timescale not in (None, s.timescale)
            or https_port not in (None, s.https_port)
            and not (https_port == 0 and http_port == 0)
            or pool_size not in (None, s.pool_size)
            or provision_time not in (None, s.provision_time)
            or cycle_period not in (None, s.cycle_period)
            or debug_headers not in (None, s.debug_headers)
            or placement not in (None, s.placement)
            or swarm_nodes not in (None, s.swarm_nodes)
            or (swarm_nodes is not None and not _same_certs(tls_src, s.swarm_tls_dir))
        ):
            raise LabError(f"Lab {lab!r} is already up with other settings; run `labctl down` first to change them")
        return {"changed": False, **Client(lab).lab_status()}
    Engine(client, lab).ensure_stack_image(progress, base_override=base_image)
    if d.exists():
        s = d.settings()
    else:
        s = Settings(lab=lab)
    if https_port is None and http_port == 0:
        https_port = 0  # "any free port" for HTTP means the same for HTTPS (tests, scenarios, bench)
    s.http_port = http_port if http_port is not None else s.http_port
    s.https_port = https_port if https_port is not None else s.https_port
    s.timescale = timescale if timescale is not None else s.timescale
    s.pool_size = pool_size if pool_size is not None else s.pool_size
    s.provision_time = provision_time if provision_time is not None else s.provision_time
    s.cycle_period = cycle_period if cycle_period is not None else s.cycle_period
    s.debug_headers = debug_headers if debug_headers is not None else s.debug_headers
    s.placement = placement if placement is not None else s.placement
    if swarm_nodes is not None:
        s.swarm_nodes = list(swarm_nodes)
        s.swarm_tls_dir = str(d.file(SWARM_TLS)) if tls_src else ""
    check_settings(s)
    if swarm_nodes is not None:
        shutil.rmtree(d.file(SWARM_TLS), ignore_errors=True)
        if tls_src:
            swarm_tls.copy_cert_dir(tls_src, d.file(SWARM_TLS))
    d.create(s)
    progress(f"Starting the controller of lab {lab}…")
    spawn_supervisor(lab)
    deadline = time.time() + START_TIMEOUT
    while time.time() < deadline:
        if controller_answers(lab):
            return {"changed": True, **Client(lab).lab_status()}
        time.sleep(0.2)
    raise ControllerUnavailable(
        f"The controller did not start within {START_TIMEOUT:.0f} s; see {d.file('controller.log')}"
    )


def check_swarm(urls: list[str] | None, tls_dir: str | None) -> Path | None:
    """``--swarm-node`` URLs and ``--swarm-tls-dir``, checked before anything changes (one line each): the URLs
    well-formed, the directory holding ca.pem, cert.pem and key.pem, no node reached over plain TCP unless it is
    on this machine's loopback, and every node answering (over TLS with that certificate when given). Returns
    the certificate directory."""
    if urls is None:
        if tls_dir is not None:
            raise InvalidInput("--swarm-tls-dir needs the nodes it is for: give --swarm-node URL (repeatable)")
        return None
    check_node_urls(urls)
    src = swarm_tls.check_cert_dir(tls_dir) if tls_dir is not None else None
    for url in urls:
        parts = urlsplit(url)
        if (
            parts.scheme == "http"
            and not _loopback(parts.hostname or "")
            or (parts.scheme == "tcp" and src is None and not _loopback(parts.hostname or ""))
        ):
            raise InvalidInput(
                f"Swarm node {url} would be reached without TLS: give --swarm-tls-dir (and tcp://) for a node "
                "that is not on this machine's loopback (whoever reaches a node's API is root on it)"
            )
    for client in connect_nodes(urls, src, timeout=NODE_CHECK_TIMEOUT).values():
        client.close()
    return src


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _same_certs(src: Path | None, lab_copy: str) -> bool:
    """The certificate directory given to ``up`` is the one the running lab copied (or neither has one)."""
    if src is None or not lab_copy:
        return src is None and not lab_copy
    try:
        return all((src / f).read_bytes() == (Path(lab_copy) / f).read_bytes() for f in swarm_tls.CLIENT_FILES)
    except OSError:
        return False


def down(lab: str) -> dict[str, int]:
    """Stop the controller and remove every Docker object labelled with this lab, then its state."""
    d = LabDir(lab)
    engine = Engine(connect(), lab)
    engine.stop_controller_containers()  # a controller run by Compose, before its restart policy can revive it
    _stop_processes(d)
    counts = engine.remove_lab()
    _remove_budgets(lab)
    if d.path.exists():
        shutil.rmtree(d.path, ignore_errors=True)
    return counts


def _remove_budgets(lab: str) -> None:
    """The instances' parent cgroups (controller/instances.py): their containers are gone, so they go too."""
    from labctl.engine.cgroups import InstanceCgroups

    host = os.environ.get("DOCKER_HOST", "")
    cg = InstanceCgroups(lab)
    if cg.enabled and (not host or host.startswith("unix://")):
        for _ in range(20):  # a container's own cgroup may outlive its removal by a moment
            if not cg.sweep(set()):
                return
            time.sleep(0.1)


def _stop_processes(d: LabDir) -> None:
    pids = []
    for name in ("supervisor.pid",):
        try:
            pids.append(int(d.file(name).read_text()))
        except (OSError, ValueError):
            pass
    api = d.api()
    if api:
        pids.append(int(api["pid"]))
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
    deadline = time.time() + 10
    for pid in pids:
        while time.time() < deadline and _pid_alive(pid):
            time.sleep(0.05)
        if _pid_alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours counts as gone
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False
