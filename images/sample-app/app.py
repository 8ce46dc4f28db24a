"""labctl's sample app: a stdlib-only web/worker process with knobs for every lab failure.

web:    python3 app.py            binds $BIND_HOST:$PORT (see README.md for the knobs)
worker: python3 app.py --worker   prints a heartbeat every few seconds
"""

from __future__ import annotations

import json
import os
import signal
import socket
import socketserver
import sys
import threading
import time
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

HELD: list[bytearray] = []  # memory kept by /mem and MEM_MB
MB = 1024 * 1024


def log(msg: str) -> None:
    print(msg, flush=True)


def env_float(name: str, default: float = 0.0) -> float:
    try:
        return float(os.environ.get(name, "") or default)
    except ValueError:
        return default


def info(port: int | None) -> dict:
    return {
        "app": os.environ.get("LABCTL_APP") or os.environ.get("HEROKU_APP_NAME"),
        "dyno": os.environ.get("DYNO"),
        "release": os.environ.get("HEROKU_RELEASE_VERSION"),
        "instance": os.environ.get("LABCTL_INSTANCE_ID"),
        "port": port,
        "greeting": os.environ.get("GREETING"),
        "pid": os.getpid(),
    }


def hold_memory(mb: float) -> int:
    """Allocate and touch ``mb`` MB (written, so it is resident) and keep it; returns MB held in all."""
    if mb > 0:
        HELD.append(bytearray(b"\x01") * int(mb * MB))
    return sum(len(b) for b in HELD) // MB


def burn_cpu(ms: float) -> None:
    end = time.monotonic() + ms / 1000
    while time.monotonic() < end:
        pass


def burn_cpu_time(ms: float) -> None:
    """Burn ``ms`` of this thread's CPU time: on a throttled instance the same work takes longer to finish."""
    end = time.thread_time() + ms / 1000
    while time.thread_time() < end:
        pass


HOGS: list[int] = []  # pids of the busy processes of CPU_HOG and /hog


def start_hogs(n: int, seconds: float | None) -> int:
    """Fork ``n`` processes that burn CPU (for ``seconds``, or until stopped); stops the earlier ones first.
    Processes, not threads: one Python process's threads share a single CPU (the GIL)."""
    stop_hogs()
    parent = os.getpid()
    for _ in range(max(0, min(n, 64))):
        with warnings.catch_warnings():  # the child only burns CPU: no lock of the parent's threads is needed
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            end = time.monotonic() + seconds if seconds else float("inf")
            while time.monotonic() < end and os.getppid() == parent:  # never outlives the app
                pass
            os._exit(0)
        HOGS.append(pid)
    if n > 0:
        log(f"burning CPU in {n} processes" + (f" for {seconds:g}s" if seconds else ""))
    return len(HOGS)


def stop_hogs() -> None:
    while HOGS:
        pid = HOGS.pop()
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


def exit_soon(code: int, why: str) -> None:
    log(f"{why}: exiting with status {code}")
    sys.stdout.flush()
    os._exit(code)


class Handler(BaseHTTPRequestHandler):
    server_version = "labctl-sample-app/1.0"

    def do_GET(self) -> None:
        self.dispatch()

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.dispatch()

    def do_HEAD(self) -> None:
        self.dispatch(head=True)

    def dispatch(self, head: bool = False) -> None:
        url = urlsplit(self.path)
        q = {k: v[-1] for k, v in parse_qs(url.query).items()}
        self.started = time.monotonic()
        if env_float("SLOW_MS"):
            time.sleep(env_float("SLOW_MS") / 1000)
        if env_float("CPU_MS"):
            burn_cpu(env_float("CPU_MS"))
        route = ROUTES.get(url.path.rstrip("/") or "/")
        if route is None:
            self.reply(404, {"error": "not found", "path": url.path}, head)
            return
        route(self, q, head)

    def reply(self, status: int, body: dict, head: bool = False) -> None:
        data = (json.dumps(body) + "\n").encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if not head:
                self.wfile.write(data)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            log(f'client went away before the answer to "{self.path}" (e.g. the router timed out)')

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        ms = round((time.monotonic() - getattr(self, "started", time.monotonic())) * 1000)
        log(f'{self.command} "{self.path}" status={code} duration={ms}ms from={self.client_address[0]}')

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        log(format % args)

    # -- routes ----------------------------------------------------------------------------------
    def index(self, q: dict, head: bool) -> None:
        self.reply(200, info(self.server.server_address[1]), head)

    def headers_echo(self, q: dict, head: bool) -> None:
        self.reply(200, {"headers": dict(self.headers.items()), "path": self.path, "dyno": os.environ.get("DYNO")}, head)

    def slow(self, q: dict, head: bool) -> None:
        ms = float(q.get("ms", 1000))
        time.sleep(ms / 1000)
        log(f"finished slow request after {ms:g} ms")
        self.reply(200, {**info(self.server.server_address[1]), "slept_ms": ms}, head)

    def cpu(self, q: dict, head: bool) -> None:
        ms = float(q.get("ms", 1000))
        burn_cpu(ms)
        self.reply(200, {**info(self.server.server_address[1]), "cpu_ms": ms}, head)

    def work(self, q: dict, head: bool) -> None:
        ms = float(q.get("ms", 20))
        started = time.monotonic()
        burn_cpu_time(ms)
        took = round((time.monotonic() - started) * 1000, 1)
        self.reply(200, {**info(self.server.server_address[1]), "cpu_ms": ms, "wall_ms": took}, head)

    def hog(self, q: dict, head: bool) -> None:
        n = int(float(q.get("procs", 2)))
        running = start_hogs(n, float(q.get("s", 10)) or None)
        self.reply(200, {**info(self.server.server_address[1]), "hogs": running}, head)

    def mem(self, q: dict, head: bool) -> None:
        held = hold_memory(float(q.get("mb", 10)))
        self.reply(200, {**info(self.server.server_address[1]), "held_mb": held}, head)

    def stream(self, q: dict, head: bool) -> None:
        """A response that dribbles: headers at once, then one byte every ``every`` ms, ``count`` times."""
        every, count = float(q.get("every", 1000)) / 1000, int(q.get("count", 5))
        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(count + 1))
            self.send_header("X-Dyno", os.environ.get("DYNO", ""))
            self.end_headers()
            self.wfile.write(b"<")
            self.wfile.flush()
            for _ in range(count):
                time.sleep(every)
                self.wfile.write(b".")
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            log(f'client went away during the stream "{self.path}"')

    def big(self, q: dict, head: bool) -> None:
        """A large answer: the usual JSON padded to about ``kb`` KB (default 64), for bandwidth faults."""
        pad = max(0, int(float(q.get("kb", 64)) * 1024) - 200)
        self.reply(200, {**info(self.server.server_address[1]), "pad": "x" * pad}, head)

    def cut(self, q: dict, head: bool) -> None:
        """Promise ``Content-Length: 1000``, send ``bytes`` of it, then close the socket (a truncated response)."""
        sent = min(int(q.get("bytes", 10)), 999)
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", "1000")
        self.end_headers()
        self.wfile.write(b"x" * sent)
        self.wfile.flush()
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)

    def hangup(self, q: dict, head: bool) -> None:
        """Close the connection without writing a byte (after ``ms``)."""
        time.sleep(float(q.get("ms", 0)) / 1000)
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)

    def crash(self, q: dict, head: bool) -> None:
        self.reply(200, {"crashing": True, "status": 1}, head)
        exit_soon(1, "crash requested (/crash)")

    def exit(self, q: dict, head: bool) -> None:
        code = int(q.get("code", 0))
        self.reply(200, {"exiting": True, "status": code}, head)
        exit_soon(code, "exit requested (/exit)")


ROUTES = {
    "/": Handler.index,
    "/headers": Handler.headers_echo,
    "/slow": Handler.slow,
    "/cpu": Handler.cpu,
    "/work": Handler.work,
    "/mem": Handler.mem,
    "/hog": Handler.hog,
    "/big": Handler.big,
    "/stream": Handler.stream,
    "/cut": Handler.cut,
    "/hangup": Handler.hangup,
    "/crash": Handler.crash,
    "/exit": Handler.exit,
}


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls getfqdn(), which can wait on DNS in a sandbox: skip it.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])


def on_sigterm(signum: int, frame: object) -> None:
    if os.environ.get("IGNORE_SIGTERM") == "1":
        log("ignoring SIGTERM")
        return
    log("received SIGTERM, shutting down")
    sys.stdout.flush()
    os._exit(128 + signal.SIGTERM)  # 143, what Heroku logs for a process that stops on SIGTERM


def start_crash_timer() -> None:
    after = env_float("CRASH_AFTER")
    if after > 0:
        code = int(env_float("CRASH_CODE", 1))
        timer = threading.Timer(after, exit_soon, (code, f"CRASH_AFTER={after:g}s reached"))
        timer.daemon = True
        timer.start()


def idle_forever(what: str, every: float) -> None:
    n = 0
    while True:
        time.sleep(every)
        n += 1
        log(f"{what} n={n} dyno={os.environ.get('DYNO')}")


def serve() -> None:
    if env_float("BIND_DELAY") > 0:
        log(f"sleeping {env_float('BIND_DELAY'):g}s before binding (BIND_DELAY)")
        time.sleep(env_float("BIND_DELAY"))
    if os.environ.get("NO_BIND") == "1":
        log("not binding any port (NO_BIND=1)")
        idle_forever("still running without a port", env_float("HEARTBEAT_S", 5))
    host = os.environ.get("BIND_HOST") or "0.0.0.0"
    port = int(os.environ.get("BIND_PORT") or os.environ.get("PORT") or 5000)
    Server.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
    httpd = Server((host, port), Handler)
    log(f"listening on {host}:{httpd.server_address[1]} as {os.environ.get('DYNO')} (pid {os.getpid()})")
    httpd.serve_forever(poll_interval=0.2)


def main(argv: list[str]) -> None:
    signal.signal(signal.SIGTERM, on_sigterm)
    hold_memory(env_float("MEM_MB"))
    if env_float("CPU_HOG") > 0:
        start_hogs(int(env_float("CPU_HOG")), None)
    start_crash_timer()
    if "--worker" in argv:
        log(f"worker starting as {os.environ.get('DYNO')} (pid {os.getpid()})")
        idle_forever("worker heartbeat", env_float("HEARTBEAT_S", 5))
    serve()


if __name__ == "__main__":
    main(sys.argv[1:])
