"""The router's hold service: a small HTTP server next to nginx, inside the router container.

Standard library only and no labctl imports: ``engine/docker.py`` copies this file into the router
container (``router.HOLD_SCRIPT``) and the container's command runs it with the stack's python3
(``router.router_command``). It listens on 127.0.0.1 only; nginx is its only client.

Why it exists (heroku-reference §2.2, §3.1, §3.5, §5): the Heroku router *waits* in two cases nginx
cannot wait in by itself.

* **Boot hold (H20).** While an app's web dynos are starting and none is up, the router queues a
  request up to 75 s; a dyno that comes up in time serves it, else ``H20 App boot timeout``. A request
  held in an nginx worker keeps that worker's configuration even after a reload, so nginx can never
  route it to a dyno that did not exist when it arrived. Instead nginx hands it here ("boot" mode); this
  service polls the routing set the controller writes into nginx.conf (the ``# labctl-routes`` line, read
  fresh on every change) and answers with an ``X-Accel-Redirect`` to a named location of the request's
  own configuration: ``@labctl_held`` with the address of a now-up dyno (nginx proxies there, from a
  variable, so the old configuration needs no upstream for it), or ``@labctl_<code>`` to end the hold
  with that router error (H20 when the time is up, H10 when the dynos crashed for good meanwhile, …).
* **Private Space refused connect (H12).** The Private Space router does not retry another dyno and
  the request "times out after 30 s with H12"; nginx learns of a refused connect at once, so it hands
  the request here ("wait" mode) to sit out the rest of the first-byte window, then ``@labctl_H12``.

* **First-byte window (H12).** nginx has a single read timeout, used for the response header and for
  every read after it; it is set to the rolling 55 s window (H15), and the 30 s to the first byte is
  kept here: a watchdog looks at the router's TCP connections (``ss``) and aborts (``ss -K``, needs
  CAP_NET_ADMIN) an upstream connection that has received nothing for the first-byte window; nginx
  then sees a 502 that its ``$labctl_late`` map turns into H12. The window comes from nginx.conf (the
  ``# labctl-timing`` line). Without the capability the watchdog stays off and H12 comes at 55 s.

Only headers travel: nginx keeps the request (and its buffered body) and does the proxying itself, so
a held request is logged once, with the dyno that finally answered.
"""

from __future__ import annotations

import json
import os
import random
import select
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ROUTES_MARK = "# labctl-routes "  # the nginx.conf line carrying the routing set as JSON
TIMING_MARK = "# labctl-timing "  # the nginx.conf line carrying the first-byte window: {"first_byte_ms": N}
LISTEN_PORTS = ("80", "443")  # nginx's own ports in the router container: client connections, not upstream
# how often a held request looks at the routing set again (a stat of nginx.conf; a new read only when it changed):
# a request held through a restart waits up to this long after the new dyno is routed (issue 18: 50 ms was up to
# a sixth of a Private Space ps:restart)
POLL_S = 0.01
CODE_LOCATIONS = ("H10", "H14", "H20", "H80", "H81", "H99")  # each one a named location of the hold form


def decide(
    route: dict[str, Any] | None, elapsed_s: float, limit_s: float, rng: random.Random | None = None
) -> tuple[str, dict[str, str]] | None:
    """Where a boot-held request goes now: ``(named location, headers)``, or ``None`` to keep holding.

    ``route`` is the app's entry of the routing set (``{"b": [[dyno, addr, release], …], "c": code,
    "m": maintenance}``), ``None`` when the app is gone.
    """
    if route is None:
        return "@labctl_gone", {}
    if route.get("m"):
        return "@labctl_H80", {}
    backends = route.get("b") or []
    if backends:
        dyno, addr, release = (rng or random).choice(backends)
        return "@labctl_held", {
            "X-Labctl-Addr": str(addr),
            "X-Labctl-Dyno": str(dyno),
            "X-Labctl-Release": str(release),
        }
    code = route.get("c") or "H20"
    if code != "H20":  # nothing is starting any more (crashed in a cool-off, scaled to 0, …): no reason to wait
        return f"@labctl_{code if code in CODE_LOCATIONS else 'H99'}", {}
    if elapsed_s >= limit_s:
        return "@labctl_H20", {}
    return None


def read_routes(text: str, mark: str = ROUTES_MARK) -> dict[str, Any] | None:
    """The routing set (or the ``mark`` line's JSON) from nginx.conf's text; ``None`` when missing or cut short."""
    for line in text.splitlines():
        if line.startswith(mark):
            try:
                data = json.loads(line[len(mark) :])
            except ValueError:
                return None
            return data if isinstance(data, dict) else None
    return None


def stalled(ss_output: str, limit_ms: float) -> list[tuple[str, str]]:
    return waiting(ss_output, limit_ms)[0]


def waiting(ss_output: str, limit_ms: float) -> tuple[list[tuple[str, str]], float | None]:
    """``stalled``'s answer, and how many ms until the next waiting connection reaches the limit (or None)."""
    """Upstream connections waiting ``limit_ms`` for a first byte: ``[(local addr:port, peer addr:port)]``.

    ``ss_output`` is ``ss -tinHO state established`` (one line a socket). An upstream connection is one whose
    local port is not nginx's and whose peer is not on the loopback (the hold service). It is waiting when it
    has received nothing yet (no ``bytes_received``), or, reused, received last before it sent last, and
    its last send (``lastsnd``) was ``limit_ms`` ago. An idle kept-alive connection last received (a
    response), and so does a response dribbling along: neither is touched.
    """
    found: list[tuple[str, str]] = []
    soonest: float | None = None
    for line in ss_output.splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        local, peer = fields[2], fields[3]
        if local.rsplit(":", 1)[-1] in LISTEN_PORTS or peer.rsplit(":", 1)[-1] in LISTEN_PORTS:
            continue  # a client of nginx, or the common router's hop to a space router (which keeps its own time)
        if peer.startswith(("127.", "[::1]", "[::ffff:127.")):
            continue
        info = {k: v for k, _, v in (f.partition(":") for f in fields[4:]) if v.isdigit()}
        rcv, snd = int(info.get("lastrcv", -1)), int(info.get("lastsnd", -1))
        # Nothing received yet, or (a reused connection) the last receive is older than the last send. The
        # kernel counts in jiffies: a fast answer can show the same figure for both, hence the strict ">".
        if snd < 0 or not ("bytes_received:" not in line or rcv > snd):
            continue
        if snd >= limit_ms:
            found.append((local, peer))
        elif soonest is None or limit_ms - snd < soonest:
            soonest = limit_ms - snd
    return found, soonest


def watchdog(routes: Routes) -> None:
    """Abort upstream connections that got no first byte within the window (see the module's docstring)."""
    pause = 1.0
    while True:
        time.sleep(pause)
        limit = _number(str(routes.timing().get("first_byte_ms", 0)))
        # ss costs a process each time (several ms of CPU in a container): look twice a second at most, and
        # wake up exactly when a connection seen waiting is due (``soonest``), which keeps H12 on time.
        pause = min(0.5, max(0.05, limit / 3000)) if limit else 1.0
        if not limit:
            continue
        try:
            out = subprocess.run(
                ["ss", "-tinHO", "state", "established"], capture_output=True, text=True, timeout=5
            ).stdout
        except (OSError, subprocess.SubprocessError):
            return  # no ss here: H12 comes with the rolling window instead
        found, soonest = waiting(out, limit)
        if soonest is not None:  # wake up when the next one is due, not a period later
            pause = max(0.005, min(pause, soonest / 1000))
        for local, peer in found:
            lhost, lport = local.rsplit(":", 1)
            phost, pport = peer.rsplit(":", 1)
            filt = ["src", lhost, "sport", "=", f":{lport}", "dst", phost, "dport", "=", f":{pport}"]
            try:
                subprocess.run(["ss", "-K", *filt], capture_output=True, timeout=5)
            except (OSError, subprocess.SubprocessError):
                pass


class Routes:
    """nginx.conf's routing set, read again whenever the file changes (a half-written file is skipped)."""

    def __init__(self, path: str):
        self.path = path
        self.key: tuple[int, int] | None = None
        self.data: dict[str, Any] = {}
        self.timing_data: dict[str, Any] = {}
        self.lock = threading.Lock()

    def timing(self) -> dict[str, Any]:
        """nginx.conf's ``# labctl-timing`` line (read with the routing set)."""
        self.get()
        return self.timing_data

    def get(self) -> dict[str, Any]:
        try:
            st = os.stat(self.path)
        except OSError:
            return self.data
        key = (st.st_mtime_ns, st.st_size)
        with self.lock:
            if key != self.key:
                try:
                    with open(self.path, encoding="utf-8", errors="replace") as f:
                        text = f.read()
                except OSError:
                    text = ""
                parsed = read_routes(text)
                if parsed is not None:
                    self.data, self.key = parsed, key
                    self.timing_data = read_routes(text, TIMING_MARK) or {}
            return self.data


def _number(text: str | None) -> float:
    try:
        return max(0.0, float(text or 0))
    except ValueError:
        return 0.0


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    routes: Routes  # set by serve()

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        # nginx tells how long the request has been in the router ($request_time) and the window.
        started = time.monotonic() - _number(self.headers.get("X-Labctl-Elapsed"))
        limit = _number(self.headers.get("X-Labctl-Limit-Ms")) / 1000.0
        if self.headers.get("X-Labctl-Hold") == "wait":
            if self.headers.get("X-Labctl-Code") != "H21":
                return self._redirect("@labctl_now", {})
            if self._sleep(started + limit - time.monotonic()):
                self._redirect("@labctl_H12", {})
            return
        app = self.headers.get("X-Labctl-App", "")
        while True:
            choice = decide(self.routes.get().get(app), time.monotonic() - started, limit)
            if choice is not None:
                return self._redirect(*choice)
            if not self._sleep(min(POLL_S, started + limit - time.monotonic())):
                return

    def _sleep(self, seconds: float) -> bool:
        """Wait; False when nginx closed the connection meanwhile (the client gave up)."""
        if seconds <= 0:
            return True
        readable, _, _ = select.select([self.connection], [], [], seconds)
        if readable:
            try:
                return self.connection.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""  # b"": closed
            except BlockingIOError:
                return True
            except OSError:
                return False
        return True

    def _redirect(self, location: str, headers: dict[str, str]) -> None:
        self.send_response_only(200)
        self.send_header("X-Accel-Redirect", location)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", "0")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet: nginx logs requests
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024


def serve(port: int, conf_path: str) -> None:
    Handler.routes = Routes(conf_path)
    threading.Thread(target=watchdog, args=(Handler.routes,), daemon=True).start()
    with Server(("127.0.0.1", port), Handler) as server:
        server.serve_forever(poll_interval=1.0)


if __name__ == "__main__":
    serve(int(sys.argv[1]), sys.argv[2])
