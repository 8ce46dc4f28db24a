"""Lab lifecycle: ``up``, ``down``, ``status`` (lab-spec §10). Used by the CLI and by tests."""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Callable
from typing import Any

from labctl.client import Client, controller_answers
from labctl.controller.daemon import spawn_supervisor
from labctl.engine.docker import Engine, connect
from labctl.errors import ControllerUnavailable, LabError
from labctl.labdir import LabDir
from labctl.settings import Settings, check_settings

START_TIMEOUT = 60.0


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
) -> dict[str, Any]:
    """Build images if needed, start the controller (which starts the router). Idempotent."""
    d = LabDir(lab)
    client = connect()
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
    check_settings(s)
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
