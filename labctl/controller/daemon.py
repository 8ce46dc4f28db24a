"""The controller process and its supervisor.

``supervise`` keeps one ``serve`` child alive (restarting it if it dies, even by ``kill -9``); ``serve``
runs the dyno manager and the API. Each takes a file lock so a lab never has two of either.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from labctl.labdir import SWARM_TLS, LabDir
from labctl.settings import Settings

if TYPE_CHECKING:  # the controller's heavy modules are imported when it starts, not when the CLI imports this
    from labctl.engine.docker import Engine
    from labctl.records import SwarmNodeRow

log = logging.getLogger("labctl.daemon")


def _lock(path: Path):  # noqa: ANN202 - returns the open file holding the lock
    f = open(path, "a")  # noqa: SIM115 - kept open for the process lifetime
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        return None
    return f


def _setup_logging(d: LabDir) -> None:
    logging.basicConfig(
        filename=d.file("controller.log"),
        level=logging.INFO,
        format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s",
    )


def serve(lab: str) -> int:
    from labctl.controller.api import Api, make_server
    from labctl.controller.drains import DrainManager
    from labctl.controller.faults import FaultManager
    from labctl.controller.faults_router import RouterFaults
    from labctl.controller.logsessions import LogSessions
    from labctl.controller.logsink import LogSink
    from labctl.controller.manager import Manager
    from labctl.controller.runtime import Runtime
    from labctl.engine.docker import Engine, connect
    from labctl.engine.engines import connect_nodes
    from labctl.errors import EngineError
    from labctl.records import LabStatus, RouterStatus
    from labctl.store import Store

    d = LabDir(lab)
    _setup_logging(d)
    held = _lock(d.file("controller.lock"))
    if held is None:
        log.info("another controller holds the lock; exiting")
        return 0
    settings = d.settings()
    store = Store(d.file("lab.db"))
    # No swarm nodes: the one engine, as before; with them, TLS from the lab's copy of the client certificate,
    # found in the state directory as this process sees it (a controller in a container mounts it elsewhere).
    node_tls = d.file(SWARM_TLS) if settings.swarm_tls_dir else None
    # A node that is gone is left out (logged): nothing is placed on nodes yet, and the lab's own dynos run on.
    unreached: list[str] = []
    nodes = connect_nodes(settings.swarm_nodes, node_tls, timeout=30, skip_unreachable=True, skipped=unreached)
    engine = Engine(connect(), lab, nodes=nodes)
    sink = LogSink(store)
    tls_files = _router_tls(d)
    runtime = Runtime(
        store,
        engine,
        sink,
        timescale=settings.timescale,
        http_port=settings.http_port,
        pool_size=settings.pool_size,
        provision_time=settings.provision_time,
        cycle_period=settings.cycle_period,
        https_port=settings.https_port,
        tls=tls_files,
        debug_headers=settings.debug_headers,
        placement=settings.placement,
    )
    runtime.start()
    manager = Manager(store, runtime, sink, lab)
    started = time.time()
    shown = _host_state_dir(d, engine)

    def status() -> LabStatus:
        s = d.settings()
        # The ports the runtime put the router on; the engine's view wins when it has one. A router that is
        # restarting (or an engine that is away) publishes no ports for a moment, and `up --http-port 0`
        # must still answer with the real port, never 0.
        ports = {"http": runtime.http_port, **({"https": runtime.https_port} if runtime.https_port else {})}
        try:
            ports.update(engine.router_ports())
        except EngineError:
            pass
        port, tport = ports.get("http") or s.http_port, ports.get("https")
        router: RouterStatus = {
            "url": f"http://127.0.0.1:{port}",
            "port": port,
            "app_url": f"http://<app>.localhost:{port}",
        }
        if tport:
            router["https_url"] = f"https://127.0.0.1:{tport}"
            router["https_port"] = tport
            router["https_app_url"] = f"https://<app>.localhost:{tport}"
            router["ca_cert"] = str(shown / "ca.crt")
        try:
            routers = runtime.routing.routers()
        except EngineError:
            routers = []
        return {
            "lab": lab,
            "router": router,
            "routers": routers,
            "timescale": runtime.scale.factor,
            "pool_size": s.pool_size,
            "provision_time": s.provision_time,
            "placement": s.placement,
            "controller_pid": os.getpid(),
            "uptime_s": round(time.time() - started, 1),
            "apps": len(store.apps()),
            "spaces": len(store.spaces()),
            "dynos": len(store.dynos()),
            "instances": len(store.instances()),
            "state_dir": str(shown),
            "api": {"url": f"http://127.0.0.1:{(d.api() or {}).get('port', 0)}"},
            "engine": "unreachable" if runtime.engine_lost else "ok",
            "swarm_nodes": _node_rows(engine, unreached, bool(settings.swarm_tls_dir)),
        }

    api = Api(manager, status)
    faults = FaultManager(store, runtime, sink)  # instance faults (lab-spec §8): hooks, routes, expiry timer
    faults.register(api)
    RouterFaults(faults).attach(api)  # router-end faults (issue 17), listed and expired with the others
    faults.start()
    drains = DrainManager(store, sink, runtime.scale, ca_file=d.file("ca.crt"))  # log drains (#19): forwarders
    drains.register(api)
    drains.start()
    sessions = LogSessions(store)  # log sessions: their logplex_url is served on a port of their own
    sessions.register(api)
    sessions.start()
    from labctl.controller.dashboard import Dashboard

    dashboard = Dashboard(api, store, lab, lambda: runtime.http_port)  # the live page (#21), on this same port
    dashboard.register()
    previous = d.api()
    server = None
    for port in ([previous["port"]] if previous else []) + [0]:
        try:
            server = make_server(api, d.token(), port)
            break
        except OSError:
            continue
    assert server is not None
    d.write_api(server.server_address[1], os.getpid())
    log.info("controller serving on 127.0.0.1:%s", server.server_address[1])
    dashboard.start(server.server_address[1])
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    server.serve_forever(poll_interval=0.2)
    dashboard.stop()
    sessions.stop()
    drains.stop()
    runtime.stop()
    store.close()
    return 0


def _host_state_dir(d: LabDir, engine) -> Path:  # noqa: ANN001 - the Engine adapter, imported lazily above
    """The lab's state folder as the host names it: in a Compose container, where the state root comes from."""
    from labctl.controller.releases import ENV_HOST_ROOT

    if not os.environ.get(ENV_HOST_ROOT):
        return d.path
    try:
        source = engine.controller_mount_source(str(d.path.parent))
    except Exception:  # noqa: BLE001 - only a label for the status: the container's own path will do
        log.exception("could not find the state folder's host path")
        source = None
    return Path(source, d.lab) if source else d.path


def _router_tls(d: LabDir):  # noqa: ANN202 - returns a function: app names -> files for the router
    """The router's certificate from the lab's local CA (created once, under the state dir).

    Browsers and curl do not accept a ``*.localhost`` wildcard (one label under a top-level name), so the
    certificate names every app: it is issued again when an app appears.
    """
    from labctl import const
    from labctl.engine import tls

    def files_for(apps: list[str]) -> dict[str, str]:
        try:
            files = tls.ensure_ca(d.path, [f"{a}.localhost" for a in apps])
        except Exception:  # noqa: BLE001 - HTTPS is optional: log why and serve HTTP only
            log.exception("no TLS for the router")
            return {}
        return {const.ROUTER_CERT: files.router_cert.read_text(), const.ROUTER_KEY: files.router_key.read_text()}

    return files_for


def supervise(lab: str, init: Settings | None = None) -> int:
    """Keep one ``serve`` child alive. With ``init`` (the controller as a Compose service) it first makes what
    the lab needs: the state folder with these settings if there is none yet, owned by the state root's owner
    (whose uid the process takes), and the stack image; while another controller holds the lab it waits."""
    d = LabDir(lab)
    if init is None:
        if not d.exists():
            print(f"labctl.controller: lab {lab!r} has no state in {d.path}; run `labctl up`", file=sys.stderr)
            return 1
        _setup_logging(d)
        held = _lock(d.file("supervisor.lock"))
        if held is None:
            return 0
    else:
        held = _init_lab(d, init)
    child: subprocess.Popen | None = None
    stopping = False

    def on_term(*_: object) -> None:
        nonlocal stopping
        stopping = True
        if child and child.poll() is None:
            child.terminate()

    signal.signal(signal.SIGTERM, on_term)
    d.file("supervisor.pid").write_text(str(os.getpid()))
    failures = 0
    while not stopping:
        begun = time.time()
        child = subprocess.Popen(
            [sys.executable, "-m", "labctl.controller", "serve", "--lab", lab],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        code = child.wait()
        if stopping:
            break
        failures = failures + 1 if time.time() - begun < 5 else 0
        log.warning("controller exited with %s; restarting", code)
        time.sleep(min(0.2 * (2**failures), 10))
    return 0


def _init_lab(d: LabDir, settings: Settings):  # noqa: ANN202 - returns the open file holding the lock
    """Compose's controller: the state folder, the supervisor lock (waiting while another controller holds the
    lab) and the images. Log lines go to the lab's controller.log and to stderr (``docker-compose logs``)."""
    from labctl.errors import LabError

    _become_owner_of(d.path.parent)
    announced = False
    while True:
        if not d.exists():
            d.create(settings)
        if not logging.getLogger().handlers:
            _setup_logging(d)
            logging.getLogger().addHandler(logging.StreamHandler(sys.stderr))
        held = _lock(d.file("supervisor.lock"))
        if held is not None:
            break
        if not announced:
            log.info("lab %s already has a controller; this one takes over when it stops", d.lab)
            announced = True
        time.sleep(2)
    d.file("supervisor.pid").write_text(str(os.getpid()))  # `labctl down` finds it before the images are built
    try:
        from labctl.engine.docker import Engine, connect

        Engine(connect(), d.lab).ensure_stack_image(lambda line: log.info("%s", line))
    except (LabError, OSError) as err:  # the controller stays up and says what is missing; deploys name it too
        log.error("the stack image is missing and could not be built: %s", err)
    log.info("controller of lab %s starting (state in %s)", d.lab, d.path)
    return held


def _become_owner_of(root: Path) -> None:
    """Run as the user who owns the state root (a host user's ~/.local/state/labctl mounted into the container),
    keeping access to the Docker socket, so that the files the controller writes are theirs."""
    try:
        st = root.stat()
    except FileNotFoundError:
        root.mkdir(parents=True, exist_ok=True)
        return
    if os.getuid() != 0 or st.st_uid == 0:
        return
    groups = {st.st_gid}
    sock = Path(os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock").removeprefix("unix://"))
    try:
        groups.add(sock.stat().st_gid)
    except OSError:
        pass
    os.setgroups(sorted(groups))
    os.setgid(st.st_gid)
    os.setuid(st.st_uid)


def spawn_supervisor(lab: str) -> None:
    """Start the supervisor detached from the terminal (it outlives the CLI)."""
    subprocess.Popen(
        [sys.executable, "-m", "labctl.controller", "supervise", "--lab", lab],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        close_fds=True,
    )


def _node_rows(engine: Engine, unreached: list[str], tls: bool) -> list[SwarmNodeRow]:
    """``status``'s swarm nodes: those the controller reached, then those that did not answer at its start."""
    rows: list[SwarmNodeRow] = [
        {"name": name, "url": c.api.base_url, "tls": c.api.base_url.startswith("https"), "reached": True}
        for name, c in engine.engines.nodes.items()
    ]
    rows += [{"name": "", "url": url, "tls": tls, "reached": False} for url in unreached]
    return rows
