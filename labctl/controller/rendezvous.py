"""Attached one-offs as Heroku attaches them (issue 19 item 1; heroku-reference §1.6): ``POST /apps/{app}/dynos``
with ``attach: true`` answers the dyno with an ``attach_url`` ``rendezvous://127.0.0.1:PORT/SECRET``. The client
opens a TCP connection to that port, sends the secret and a CRLF, reads ``rendezvous`` CRLF, then the dyno's
output until it ends; the lab then writes Heroku's exit-status marker line (``\\uFFFF heroku-command-exit-status:
N``, the line the Heroku CLI appends to the command and reads back) and closes. Plain TCP on loopback where
Heroku's rendezvous speaks TLS.

A client that closes the connection early, or never connects within ``CONNECT_WAIT`` seconds, gets Heroku's
treatment of a vanished terminal: SIGHUP to the dyno's processes, then R16 and a stop if it keeps running.
"""

from __future__ import annotations

import logging
import queue
import secrets
import socket
import threading
import time
from typing import Any

from labctl.controller.manager import Manager

log = logging.getLogger("labctl.rendezvous")
CONNECT_WAIT = 30.0  # seconds an attach_url waits for its client
EXIT_MARKER = "\uffff heroku-command-exit-status: "


class Rendezvous:
    """The loopback rendezvous service of one controller."""

    def __init__(self, manager: Manager):
        self.m = manager
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.waiting: dict[str, tuple[str, dict[str, Any], float]] = {}
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True, name="rendezvous").start()
        threading.Thread(target=self._expire, daemon=True, name="rendezvous-expiry").start()

    def offer(self, app: str, view: dict[str, Any]) -> str:
        """An ``attach_url`` for an attached one-off that just started."""
        secret = secrets.token_urlsafe(24)
        with self.lock:
            self.waiting[secret] = (app, view, time.monotonic() + CONNECT_WAIT)
        return f"rendezvous://127.0.0.1:{self.port}/{secret}"

    def _expire(self) -> None:
        while True:
            time.sleep(1.0)
            now = time.monotonic()
            with self.lock:
                late = [s for s, (_, _, until) in self.waiting.items() if until < now]
                gone = [self.waiting.pop(s) for s in late]
            for app, view, _ in gone:  # nobody came: as a terminal that went away
                self._hang_up(app, view)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True, name="rendezvous-session").start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(10.0)
            try:
                line = conn.makefile("rb").readline(256)
            except OSError:
                return
            with self.lock:
                found = self.waiting.pop(line.strip().decode(errors="replace").lstrip("/"), None)
            if found is None:
                return
            app, view, _ = found
            conn.settimeout(None)
            try:
                conn.sendall(b"rendezvous\r\n")
            except OSError:
                self._hang_up(app, view)
                return
            try:
                self._pump(conn, app, view)
            finally:
                try:  # a FIN now: close() alone waits for the thread blocked in recv() on this socket
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _pump(self, conn: socket.socket, app: str, view: dict[str, Any]) -> None:
        cid = view.get("container")
        if not cid:
            return
        chunks: queue.Queue[str | None] = queue.Queue()
        gone = threading.Event()

        def read_output() -> None:
            for chunk in self.m.rt.engine.output(cid):
                chunks.put(chunk)
            chunks.put(None)

        def watch_client() -> None:  # the lab takes no stdin: a read returning nothing means the client left
            try:
                while conn.recv(4096):
                    pass
            except OSError:
                pass
            gone.set()

        threading.Thread(target=read_output, daemon=True).start()
        threading.Thread(target=watch_client, daemon=True).start()
        finished = False
        try:
            while not gone.is_set():
                try:
                    chunk = chunks.get(timeout=0.5)
                except queue.Empty:
                    continue
                if chunk is None:
                    status = self.m.rt.engine.wait(cid)
                    conn.sendall(f"{EXIT_MARKER}{'' if status is None else status}\n".encode())
                    finished = True
                    break
                conn.sendall(chunk.encode())
        except OSError:
            pass
        finally:
            if not finished:
                self.m.hang_up(app, view["name"], cid)
            self.m.finish_attached(app, view["name"], cid)

    def _hang_up(self, app: str, view: dict[str, Any]) -> None:
        cid = view.get("container")
        if cid:
            try:
                self.m.hang_up(app, view["name"], cid)
                self.m.finish_attached(app, view["name"], cid)
            except Exception:  # noqa: BLE001 - a timer thread: logged, never raised
                log.exception("hanging up %s %s", app, view.get("name"))
