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

from labctl.labdir import LabDir

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
    from labctl.controller.faults import FaultManager
    from labctl.controller.logsink import LogSink
    from labctl.controller.manager import Manager
    from labctl.controller.runtime import Runtime
    from labctl.engine.docker import Engine, connect
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
    engine = Engine(connect(), lab)
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
        https_port=settings.https_port,
        tls=tls_files,
    )
    runtime.start()
    manager = Manager(store, runtime, sink, lab)
    started = time.time()

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
            router["ca_cert"] = str(d.file("ca.crt"))
        return {
            "lab": lab,
            "router": router,
            "timescale": runtime.scale.factor,
            "pool_size": s.pool_size,
            "provision_time": s.provision_time,
            "controller_pid": os.getpid(),
            "uptime_s": round(time.time() - started, 1),
            "apps": len(store.apps()),
            "spaces": len(store.spaces()),
            "dynos": len(store.dynos()),
            "instances": len(store.instances()),
            "state_dir": str(d.path),
            "api": {"url": f"http://127.0.0.1:{(d.api() or {}).get('port', 0)}"},
            "engine": "unreachable" if runtime.engine_lost else "ok",
        }

    api = Api(manager, status)
    faults = FaultManager(store, runtime, sink)  # instance faults (lab-spec §8): hooks, routes, expiry timer
    faults.register(api)
    faults.start()
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
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    server.serve_forever(poll_interval=0.2)
    runtime.stop()
    store.close()
    return 0


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


def supervise(lab: str) -> int:
    d = LabDir(lab)
    _setup_logging(d)
    held = _lock(d.file("supervisor.lock"))
    if held is None:
        return 0
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
