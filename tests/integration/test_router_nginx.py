"""The router's nginx.conf in a real nginx (stack image) in front of two sample-app containers.

Everything here carries ``io.labctl.lab=test-router`` and is removed by the fixture's finalizer.
"""

from __future__ import annotations

import io
import re
import socket
import tarfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import docker
import docker.errors
import pytest
import requests

from labctl import const
from labctl.engine.router import (
    HOLD_SCRIPT,
    AppRoute,
    Backend,
    RouterEntry,
    RouterLogReader,
    RouterSettings,
    format_router_line,
    hold_script,
    render_nginx_conf,
    router_command,
)
from tests.conftest import SAMPLE_APP, wait_until

pytestmark = [pytest.mark.docker, pytest.mark.xdist_group("test_router_nginx")]  # module fixtures: one worker

LAB = "test-router"
TIMESCALE = 0.05  # connect 250 ms, first byte 1.5 s, idle 2.75 s, boot hold (H20) 3.75 s
FIRST_BYTE = 30 * TIMESCALE
IDLE = 55 * TIMESCALE
BOOT_HOLD = 75 * TIMESCALE
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def _tar(name: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@dataclass
class RouterLab:
    client: docker.DockerClient
    router: docker.models.containers.Container
    port: int
    backends: list[Backend]
    extra: list[AppRoute] = field(default_factory=list)
    generation: int = 0  # answered at /__labctl/generation: tells when a reload is in force

    def routes(self) -> list[AppRoute]:
        web1, web2 = self.backends
        dead = Backend("web.1", web1.addr.rsplit(":", 1)[0] + ":5999", 1)  # nothing listens there
        return [
            AppRoute("demo", (web1, web2), retry=True),
            AppRoute("empty", (), retry=True, empty_code="H14"),
            AppRoute("maint", (web1,), retry=True, maintenance=True),
            AppRoute("refused", (dead,), retry=False),
            AppRoute("refusedcr", (dead,), retry=True),
            AppRoute("mixed", (dead, Backend("web.2", web2.addr, 4)), retry=True),
            *self.extra,
        ]

    def conf(self, public_port: int) -> str:
        settings = RouterSettings(http_port_public=public_port, timescale=TIMESCALE, generation=self.generation)
        return render_nginx_conf(self.routes(), settings)

    def route(self, route: AppRoute) -> None:
        """Add ``route``, or replace the one of that app, and reload."""
        self.extra = [r for r in self.extra if r.app != route.app] + [route]
        self.reload()

    def reload(self) -> None:
        self.generation += 1
        self.router.put_archive("/etc/nginx", _tar("nginx.conf", self.conf(self.port).encode()))
        code, out = self.router.exec_run(["nginx", "-s", "reload"])
        assert code == 0, out.decode()

        def live() -> bool:  # as the controller does: three answers in a row from the new configuration
            try:
                return requests.get(
                    f"http://127.0.0.1:{self.port}/__labctl/generation",
                    timeout=1,
                    headers={"Host": "labctl-router.internal"},
                ).text.strip() == str(self.generation)
            except requests.RequestException:
                return False

        wait_until(lambda: live() and live() and live(), 10, 0.01, f"router generation {self.generation}")

    def get(self, app: str, path: str = "/", timeout: float = 10.0, **headers: str) -> requests.Response:
        return requests.get(
            f"http://127.0.0.1:{self.port}{path}",
            timeout=timeout,
            headers={"Host": f"{app}.localhost:{self.port}", **headers},
        )

    def entries(self) -> list[RouterEntry]:
        lines = self.router.logs(stdout=True, stderr=False).decode(errors="replace").splitlines()
        reader = RouterLogReader()  # as the controller reads them: error lines explain the access line after
        return [e for e in map(reader.feed, lines) if e is not None]

    def entry(self, request_id: str) -> RouterEntry:
        def find():
            return next((e for e in self.entries() if e.request_id == request_id), None)

        return wait_until(find, 10, 0.1, f"router log line for {request_id}")


def _remove_all(client: docker.DockerClient) -> None:
    for c in client.containers.list(all=True, ignore_removed=True, filters={"label": f"{const.LABEL_LAB}={LAB}"}):
        c.remove(force=True)
    for n in client.networks.list(filters={"label": f"{const.LABEL_LAB}={LAB}"}):
        n.remove()


def _backend(client, net: str, dyno: str, release: int, suffix: str):
    c = client.containers.create(
        const.STACK_IMAGE,
        ["python3", "/app/app.py"],
        name=f"{LAB}-{dyno.replace('.', '-')}-{suffix}",
        init=True,
        network=net,
        working_dir="/app",
        labels={const.LABEL_LAB: LAB, const.LABEL_KIND: const.KIND_DYNO, const.LABEL_DYNO: dyno},
        environment={"PORT": "5000", "DYNO": dyno, "LABCTL_APP": "demo", "HEROKU_RELEASE_VERSION": f"v{release}"},
    )
    c.put_archive("/app", _tar("app.py", (SAMPLE_APP / "app.py").read_bytes()))
    c.start()
    return c


@pytest.fixture(scope="module")
def rlab() -> Iterator[RouterLab]:
    client = docker.from_env()
    try:
        client.images.get(const.STACK_IMAGE)
    except docker.errors.ImageNotFound:
        pytest.fail(f"{const.STACK_IMAGE} is missing: build it first (labctl up builds it)")
    _remove_all(client)  # leftovers of an interrupted run
    suffix = uuid.uuid4().hex[:6]
    try:
        net = client.networks.create(f"{LAB}-{suffix}", driver="bridge", labels={const.LABEL_LAB: LAB})
        dynos = [_backend(client, net.name, f"web.{i}", 2 + i, suffix) for i in (1, 2)]
        for c in dynos:
            wait_until(lambda c=c: b"listening on" in c.logs(), 20, 0.1, f"{c.name} listening")
            c.reload()
        ips = [c.attrs["NetworkSettings"]["Networks"][net.name]["IPAddress"] for c in dynos]
        backends = [Backend(f"web.{i}", f"{ip}:5000", 2 + i) for i, ip in enumerate(ips, start=1)]
        router = client.containers.create(
            const.STACK_IMAGE,
            router_command(),
            name=f"{LAB}-router-{suffix}",
            init=True,
            network=net.name,
            ports={"80/tcp": ("127.0.0.1", None)},
            cap_add=["NET_ADMIN"],  # as Engine.ensure_router: the first-byte watchdog
            labels={const.LABEL_LAB: LAB, const.LABEL_KIND: const.KIND_ROUTER},
        )
        lab = RouterLab(client, router, 0, backends)
        router.put_archive("/etc/nginx", _tar("nginx.conf", lab.conf(0).encode()))
        router.put_archive("/etc/nginx", _tar(HOLD_SCRIPT.rsplit("/", 1)[1], hold_script().encode()))
        router.start()
        router.reload()
        lab.port = int(router.attrs["NetworkSettings"]["Ports"]["80/tcp"][0]["HostPort"])
        wait_until(lambda: _answers(lab), 20, 0.1, "router answering")
        lab.reload()  # now that the published port is known (X-Forwarded-Port)
        yield lab
    finally:
        _remove_all(client)
        label = f"{const.LABEL_LAB}={LAB}"
        assert client.containers.list(all=True, ignore_removed=True, filters={"label": label}) == []


def _answers(lab: RouterLab) -> bool:
    try:
        return lab.get("nosuch", timeout=1).status_code == 404
    except requests.RequestException:
        return False


def test_routes_by_host_to_every_backend(rlab: RouterLab):
    seen = set()
    for _ in range(40):
        r = rlab.get("demo")
        assert r.status_code == 200
        assert not [h for h in r.headers if h.lower().startswith("x-labctl")], r.headers  # Heroku sends none
        seen.add(r.json()["dyno"])
        if seen == {"web.1", "web.2"}:
            break
    assert seen == {"web.1", "web.2"}
    r = requests.get(f"http://127.0.0.1:{rlab.port}/", headers={"Host": "demo.localhost"}, timeout=10)
    assert r.status_code == 200 and r.json()["app"] == "demo"  # Host without the port


def test_router_headers_reach_the_dyno(rlab: RouterLab):
    before = time.time() * 1000
    r = rlab.get("demo", "/headers")
    h = r.json()["headers"]
    assert UUID_RE.match(h["X-Request-Id"])
    assert h["X-Forwarded-For"] and h["X-Forwarded-Proto"] == "http"
    assert h["X-Forwarded-Port"] == str(rlab.port)
    assert before - 2000 <= int(h["X-Request-Start"]) <= time.time() * 1000 + 2000
    assert h["Via"] == "1.1 vegur" and h["Host"] == f"demo.localhost:{rlab.port}"
    e = rlab.entry(h["X-Request-Id"])
    line = format_router_line(e)
    assert line.startswith('at=info method=GET path="/headers" host=demo.localhost ')
    assert e.dyno in ("web.1", "web.2") and f" dyno={e.dyno} " in line
    assert re.search(r" connect=\d+ms service=\d+ms status=200 bytes=\d+ protocol=http$", line)
    # a client's own valid X-Request-Id is kept, XFF is appended to
    mine = {"X-Request-Id": "client-supplied-id-0123456789", "X-Forwarded-For": "9.9.9.9"}
    r = rlab.get("demo", "/headers", **mine)
    h = r.json()["headers"]
    assert h["X-Request-Id"] == "client-supplied-id-0123456789"
    assert h["X-Forwarded-For"].startswith("9.9.9.9, ")


def test_app_errors_pass_through_untouched(rlab: RouterLab):
    r = rlab.get("demo", "/no-such-path")
    assert r.status_code == 404 and r.json()["error"] == "not found"
    assert "X-Labctl-Error" not in r.headers


def _error(rlab: RouterLab, app: str, path: str = "/") -> tuple[requests.Response, str]:
    rid = uuid.uuid4().hex + "-labctl-test"
    r = rlab.get(app, path, **{"X-Request-Id": rid})
    return r, format_router_line(rlab.entry(rid))


def test_empty_routing_set_is_h14(rlab: RouterLab):
    r, line = _error(rlab, "empty")
    assert r.status_code == 503 and "Application error" in r.text
    assert line.startswith('at=error code=H14 desc="No web dynos running" method=GET path="/" ')
    assert line.endswith("dyno= connect= service= status=503 bytes= protocol=http")


def test_maintenance_is_h80_info(rlab: RouterLab):
    r, line = _error(rlab, "maint")
    assert r.status_code == 503 and "Maintenance" in r.text
    assert line.startswith('at=info code=H80 desc="Maintenance mode" ')
    assert line.endswith("dyno= connect= service= status=503 bytes= protocol=http")


def test_no_first_byte_in_time_is_h12_and_not_retried(rlab: RouterLab):
    r, line = _error(rlab, "demo", "/slow?ms=4000")
    took = r.elapsed.total_seconds()  # the request alone, not the wait for its log line
    assert r.status_code == 503
    assert 30 * TIMESCALE - 0.1 <= took < 2 * 30 * TIMESCALE  # one first-byte window, no retry
    assert line.startswith('at=error code=H12 desc="Request timeout" method=GET path="/slow?ms=4000" ')
    tail = r" dyno=web\.[12] connect=\d+ms service=(\d+)ms status=503 bytes=0 protocol=http$"
    ms = int(re.search(tail, line)[1])  # the watchdog's aim (a loaded machine makes it late), not the 55 s window
    assert FIRST_BYTE * 1000 - 50 <= ms < (FIRST_BYTE + IDLE) / 2 * 1000, line


def test_refused_is_h21_and_common_runtime_retries(rlab: RouterLab):
    r, line = _error(rlab, "refusedcr")
    assert r.elapsed.total_seconds() < FIRST_BYTE / 2, "every dyno refused: H21 at once"  # the request alone
    assert r.status_code == 503
    assert line.startswith('at=error code=H21 desc="Backend connection refused" ')
    assert " dyno=web.1 " in line and " service= status=503 bytes=0 " in line
    for _ in range(10):  # one dyno refuses, the router moves on to the other (heroku-reference §3.1)
        assert rlab.get("mixed").status_code == 200


def test_private_space_refused_connect_times_out_as_h12(rlab: RouterLab):
    # heroku-reference §3.1, §5: no retry on another dyno; the request times out after 30 s with H12.
    r, line = _error(rlab, "refused")
    took = r.elapsed.total_seconds()  # the request alone, not the wait for its log line
    assert r.status_code == 503 and "Application error" in r.text
    assert FIRST_BYTE - 0.05 <= took < FIRST_BYTE + 1.0, f"the scaled 30 s first-byte window (took {took:.2f}s)"
    assert line.startswith('at=error code=H12 desc="Request timeout" method=GET path="/" ')
    ms = int(re.search(r" dyno=web\.1 connect= service=(\d+)ms status=503 bytes=0 protocol=http$", line).group(1))
    assert FIRST_BYTE * 1000 - 50 <= ms < FIRST_BYTE * 1000 + 500


def _in_thread(fn) -> tuple[threading.Thread, dict[str, object]]:
    result: dict[str, object] = {}

    def run():
        t = time.monotonic()
        try:
            result["response"] = fn()
        except requests.RequestException as err:
            result["error"] = err
        result["took"] = time.monotonic() - t
        result["ended"] = time.monotonic()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, result


def test_boot_hold_serves_the_request_once_a_dyno_is_up(rlab: RouterLab):
    # heroku-reference §2.2 / §3.5 H20: while the web dynos are starting the router holds requests;
    # the dyno that comes up serves them, although they arrived under the config without it.
    web1 = rlab.backends[0]
    rlab.route(AppRoute("boot", (), retry=True, empty_code="H20"))
    rid = uuid.uuid4().hex + "-labctl-test"
    get, got = _in_thread(lambda: rlab.get("boot", "/headers", **{"X-Request-Id": rid}))
    post, posted = _in_thread(
        lambda: requests.post(
            f"http://127.0.0.1:{rlab.port}/headers?via=post",
            data=b"0123456789",
            timeout=10,
            headers={"Host": f"boot.localhost:{rlab.port}"},
        )
    )
    time.sleep(1.0)
    assert get.is_alive() and post.is_alive(), "held while no dyno is up"
    up_at = time.monotonic()
    rlab.route(AppRoute("boot", (web1,), retry=True))  # web.1 is up: a reload; the held requests keep the old config
    get.join(10)
    post.join(10)
    r = got["response"]
    assert r.status_code == 200 and r.json()["dyno"] == "web.1", got
    assert 1.0 <= got["took"] < BOOT_HOLD
    assert got["ended"] >= up_at and posted["ended"] >= up_at, "answered only once web.1 was in the route"
    h = r.json()["headers"]
    assert h["X-Request-Id"] == rid and h["Via"] == "1.1 vegur" and h["X-Forwarded-Port"] == str(rlab.port)
    assert abs(int(h["X-Request-Start"]) / 1000 - (time.time() - got["took"])) < 1.5, "when the router got it"
    p = posted["response"]
    assert p.status_code == 200 and p.json()["headers"]["Content-Length"] == "10", posted  # body and method kept
    line = format_router_line(rlab.entry(rid))
    assert line.startswith('at=info method=GET path="/headers" host=boot.localhost ')
    assert re.search(r" dyno=web\.1 connect=\d+ms service=\d+ms status=200 bytes=\d+ protocol=http$", line)


def test_boot_hold_ends_in_h20_after_the_scaled_75_s(rlab: RouterLab):
    rlab.route(AppRoute("slowboot", (), retry=False, empty_code="H20"))
    r, line = _error(rlab, "slowboot")
    took = r.elapsed.total_seconds()  # the request alone, not the wait for its log line
    assert r.status_code == 503 and "Application error" in r.text
    assert BOOT_HOLD - 0.05 <= took < BOOT_HOLD + 1.0, f"held the scaled 75 s (took {took:.2f}s)"
    assert line.startswith('at=error code=H20 desc="App boot timeout" method=GET path="/" host=slowboot.localhost ')
    assert line.endswith(" dyno= connect= service= status=503 bytes= protocol=http")


def test_boot_hold_ends_at_once_when_the_dynos_stop_starting(rlab: RouterLab):
    rlab.route(AppRoute("crashing", (), retry=True, empty_code="H20"))
    rid = _rid()
    held, result = _in_thread(lambda: rlab.get("crashing", **{"X-Request-Id": rid}))
    time.sleep(0.8)
    rlab.route(AppRoute("crashing", (), retry=True, empty_code="H10"))  # crashed, in a cool-off: nothing to wait for
    held.join(10)
    r = result["response"]
    assert r.status_code == 503 and rlab.entry(rid).code == "H10", result
    assert result["took"] < BOOT_HOLD - 1.0


def test_unknown_host_is_404(rlab: RouterLab):
    r = rlab.get("nosuch")
    assert r.status_code == 404 and "nothing here, yet" in r.text


def test_reload_keeps_the_request_in_flight(rlab: RouterLab):
    result: dict[str, object] = {}

    def slow():
        try:
            r = rlab.get("demo", "/slow?ms=1000")
            result["status"], result["body"] = r.status_code, r.json()
        except requests.RequestException as err:
            result["error"] = err

    thread = threading.Thread(target=slow)
    thread.start()
    time.sleep(0.3)
    rlab.extra.append(AppRoute("other", (), retry=True, empty_code="H81"))
    rlab.reload()
    assert rlab.get("other").status_code == 503  # the new config is live (404 before: no such app)
    thread.join(timeout=10)
    assert result.get("status") == 200, result
    assert result["body"]["slept_ms"] == 1000


# -- the router's timing after the first byte, and the connection errors (heroku-reference §3.2, §3.5, §11) --
def _raw_get(rlab: RouterLab, path: str, rid: str, read: int | None = None, close_after: float = 0.0) -> bytes:
    """A GET on a plain socket: read everything (or ``read`` bytes, or nothing for ``close_after`` s), then close."""
    sock = socket.create_connection(("127.0.0.1", rlab.port), timeout=30)
    head = f"GET {path} HTTP/1.1\r\nHost: demo.localhost\r\nX-Request-Id: {rid}\r\nConnection: close\r\n\r\n"
    sock.sendall(head.encode())
    got = b""
    try:
        if close_after:
            time.sleep(close_after)
            return b""
        while read is None or len(got) < read:
            chunk = sock.recv(65536)
            if not chunk:
                break
            got += chunk
        return got
    finally:
        sock.close()


def _rid() -> str:
    return uuid.uuid4().hex + "-labctl-test"


def test_a_response_dribbling_inside_the_rolling_window_completes(rlab: RouterLab):
    every_ms = round(40 * TIMESCALE * 1000)  # a byte every 40 s (scaled): past the first-byte 30 s, inside 55 s
    rid = _rid()
    t = time.monotonic()
    got = _raw_get(rlab, f"/stream?every={every_ms}&count=2", rid)
    took = time.monotonic() - t
    assert got.startswith(b"HTTP/1.1 200 ") and got.endswith(b"\r\n\r\n<.."), got[-40:]
    assert took >= 2 * every_ms / 1000 - 0.05
    line = format_router_line(rlab.entry(rid))
    assert line.startswith('at=info method=GET path="/stream?every=2000&count=2" '), line
    assert re.search(r" dyno=web\.[12] connect=\d+ms service=4\d\d\dms status=200 bytes=3 protocol=http$", line)


def test_a_response_idle_past_the_rolling_window_ends_with_h15(rlab: RouterLab):
    every_ms = round(60 * TIMESCALE * 1000)  # 60 s of silence (scaled) after the first byte
    rid = _rid()
    t = time.monotonic()
    got = _raw_get(rlab, f"/stream?every={every_ms}&count=1", rid)
    took = time.monotonic() - t
    assert got.startswith(b"HTTP/1.1 200 ") and got.endswith(b"\r\n\r\n<"), got[-40:]  # cut after "<"
    assert IDLE - 0.05 <= took < every_ms / 1000 + 1.0, f"closed at the scaled 55 s (took {took:.2f}s)"
    line = format_router_line(rlab.entry(rid))
    assert line.startswith('at=error code=H15 desc="Idle connection" method=GET path="/stream?every=3000&count=1" ')
    ms = int(re.search(r" dyno=web\.[12] connect=\d+ms service=(\d+)ms status=503 bytes=1 protocol=http$", line)[1])
    assert IDLE * 1000 - 50 <= ms < IDLE * 1000 + 600


def test_a_dyno_closing_mid_response_is_h18(rlab: RouterLab):
    rid = _rid()
    got = _raw_get(rlab, "/cut?bytes=10", rid)
    assert got.startswith(b"HTTP/1.1 200 ") and got.endswith(b"\r\n\r\n" + b"x" * 10)  # 10 of the 1000 promised
    line = format_router_line(rlab.entry(rid))
    assert line.startswith('sock=backend at=error code=H18 desc="Server Request Interrupted" method=GET ')
    assert re.search(r" dyno=web\.[12] connect=\d+ms service=\d+ms status=503 bytes=10 protocol=http$", line)


def test_a_dyno_closing_without_a_response_is_h13(rlab: RouterLab):
    r, line = _error(rlab, "demo", "/hangup")
    assert r.status_code == 503 and "Application error" in r.text
    assert line.startswith('at=error code=H13 desc="Connection closed without response" method=GET path="/hangup" ')
    assert re.search(r" dyno=web\.[12] connect=\d+ms service=\d+ms status=503 bytes=0 protocol=http$", line)


def test_a_client_leaving_before_the_response_is_h27(rlab: RouterLab):
    rid = _rid()
    _raw_get(rlab, "/slow?ms=1000", rid, close_after=0.3)
    line = format_router_line(rlab.entry(rid))
    assert line.startswith('sock=client at=warning code=H27 desc="Client Request Interrupted" method=GET ')
    assert re.search(r" dyno=web\.[12] connect=\d+ms service=\d+ms status=499 bytes=0 protocol=http$", line)


def test_a_client_leaving_mid_response_is_h27(rlab: RouterLab):
    rid = _rid()
    got = _raw_get(rlab, f"/stream?every={round(FIRST_BYTE * 200)}&count=5", rid, read=1)  # the head, then away
    assert got.startswith(b"HTTP/1.1 200 ")
    line = format_router_line(rlab.entry(rid))
    assert line.startswith('sock=client at=warning code=H27 desc="Client Request Interrupted" method=GET ')
    assert re.search(r" dyno=web\.[12] connect=\d+ms service=\d+ms status=499 bytes=\d+ protocol=http$", line)
