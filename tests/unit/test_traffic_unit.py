"""Traffic statistics (percentiles, grouping per dyno and instance, windows) and a run against a local fake
router on 127.0.0.1 (steady rate, bounded count, timeouts counted as errors, instance map following moves)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from labctl import traffic
from labctl.cli import render
from labctl.errors import InvalidInput


def rec(
    t: float,
    status: int | None,
    ms: float,
    dyno: str | None,
    inst: str | None = None,
    code: str | None = None,
    release: str | None = "v1",
    error: str | None = None,
) -> dict[str, Any]:
    return {
        "t": t,
        "ts": 1000 + t,
        "status": status,
        "latency_ms": ms,
        "dyno": dyno,
        "instance": inst,
        "release": release,
        "code": code,
        "error": error,
    }


def test_percentile_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert traffic.percentile(values, 50) == 50
    assert traffic.percentile(values, 95) == 95
    assert traffic.percentile(values, 99) == 99
    assert traffic.percentile(values, 100) == 100
    assert traffic.percentile(list(reversed(values)), 50) == 50  # order does not matter
    assert traffic.percentile([7.0], 99) == 7.0
    assert traffic.percentile([1.0, 2.0], 50) == 1.0
    assert traffic.percentile([1.0, 2.0], 51) == 2.0
    assert traffic.percentile([], 50) is None


def test_stats_counts_errors_by_status_and_code():
    rs = [
        rec(0, 200, 10, "web.1"),
        rec(0.1, 200, 20, "web.1", release="v2"),
        rec(0.2, 503, 1500, "web.1", code="H12", release=None),
        rec(0.3, None, 6500, None, error="timeout", release=None),
        rec(0.4, 404, 5, "web.1"),
    ]
    s = traffic.stats(rs)
    assert s["count"] == 5 and s["errors"] == 2 and s["error_rate"] == 0.4
    assert s["statuses"] == {"200": 2, "404": 1, "503": 1, "timeout": 1}
    assert s["codes"] == {"H12": 1}
    assert s["error_kinds"] == {"503 H12": 1, "timeout": 1}
    assert s["releases"] == {"v1": 2, "v2": 1}
    assert s["p50"] == 20 and s["p95"] == 6500 and s["max"] == 6500
    empty = traffic.stats([])
    assert empty["count"] == 0 and empty["p50"] is None and empty["error_rate"] == 0.0


def test_summarize_groups_per_dyno_and_instance_and_windows():
    rs = [
        rec(0.0, 200, 10, "web.1", "i-a"),
        rec(0.5, 200, 12, "web.2", "i-b"),
        rec(1.0, 200, 900, "web.1", "i-a"),
        rec(5.0, 200, 11, "web.1", "i-c"),  # web.1 moved i-a -> i-c
        rec(5.5, 503, 3, "", None, code="H14", release=None),
        rec(6.0, 200, 14, "web.10", "i-b"),
    ]
    s = traffic.summarize(rs)
    assert list(s["by_dyno"]) == ["web.1", "web.2", "web.10", "-"]  # natural order, unrouted last
    w1 = s["by_dyno"]["web.1"]
    assert w1["count"] == 3 and w1["instances"] == {"i-a": 2, "i-c": 1} and w1["p99"] == 900
    assert s["by_instance"]["i-a"]["dynos"] == ["web.1"] and s["by_instance"]["i-a"]["count"] == 2
    assert s["by_instance"]["i-b"]["dynos"] == ["web.2", "web.10"]
    assert s["by_instance"]["-"]["errors"] == 1 and s["by_dyno"]["-"]["codes"] == {"H14": 1}
    assert s["total"]["count"] == 6 and s["total"]["errors"] == 1
    win = traffic.summarize(rs, since=4.0)
    assert win["total"]["count"] == 3 and set(win["by_dyno"]) == {"web.1", "web.10", "-"}
    text = render.traffic_tables(s)
    assert "web.1" in text and "503 H14×1" in text and "i-a,i-c" in text


def test_check_params_bounds():
    traffic.check_params(50, 30)
    for rps, dur, to in [(0, 10, None), (201, 10, None), (10, 0, None), (10, 3601, None), (10, 10, 0)]:
        with pytest.raises(InvalidInput):
            traffic.check_params(rps, dur, to)
    assert traffic.default_timeout(0.05) == 8.75
    assert traffic.default_timeout(0.001) == 5.075
    assert traffic.default_timeout(1.0) == 80.0


# -- a run against a fake router ---------------------------------------------------------------------------------
class FakeRouter(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    hits: list[str] = []
    log: list[str] = []  # the app's heroku[router] lines
    lock = threading.Lock()

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        with FakeRouter.lock:  # one number per request (concurrent handlers could read the same count)
            FakeRouter.hits.append(self.headers.get("Host", ""))
            n = len(FakeRouter.hits)
        if self.path.startswith("/hang"):
            time.sleep(1.0)
        dyno = "web.1" if n % 2 else "web.2"
        # As the router: no header of its own; the app's JSON names the dyno, the router's log line the error.
        rid = self.headers.get("X-Request-Id", "")
        if self.path.startswith("/cut"):  # the dyno closed mid-body: a 200 begun, its body cut, H18 logged
            line = f'sock=backend at=error code=H18 desc="Server Request Interrupted" method=GET path="/cut" host=demo.localhost request_id={rid}'  # noqa: E501
            FakeRouter.log.append(f'{line} fwd="127.0.0.1" dyno={dyno} connect=0ms service=2ms status=503 bytes=5')
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            self.wfile.write(b'{"dyn')
            self.wfile.flush()
            self.close_connection = True
            return
        if n % 4 == 0:
            body, kind = b"<html>Application error</html>", "text/html"
            line = f'at=error code=H12 desc="Request timeout" method=GET path="/" host=demo.localhost request_id={rid}'
            FakeRouter.log.append(f'{line} fwd="127.0.0.1" dyno={dyno} connect=0ms service=1500ms status=503 bytes=0')
        else:
            body, kind = json.dumps({"dyno": dyno, "release": "v3"}).encode(), "application/json"
        self.send_response(503 if n % 4 == 0 else 200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class FakeApi:
    def __init__(self, port: int):
        self.port = port
        self.calls = 0

    def lab_status(self) -> dict[str, Any]:
        return {"router": {"port": self.port}, "timescale": 0.05}

    def app_info(self, app: str) -> dict[str, Any]:
        return {"name": app}

    def log_lines(self, app: str, *, n: int, after: int, dyno: str, source: str) -> list[dict[str, Any]]:
        assert (dyno, source) == ("router", "heroku")
        rows = [{"id": i, "msg": line} for i, line in enumerate(list(FakeRouter.log), start=1)]
        return [r for r in rows if r["id"] > after][-n:]

    def dynos(self, app: str) -> list[dict[str, Any]]:
        self.calls += 1
        moved = self.calls > 1
        return [{"name": "web.1", "instance": "i-new" if moved else "i-old"}, {"name": "web.2", "instance": "i-b"}]


@pytest.fixture
def router():
    FakeRouter.hits = []
    FakeRouter.log = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeRouter)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_run_traffic_holds_the_rate_and_bounds(router):
    ticks: list[traffic.Live] = []
    begun = time.time()
    result = traffic.run_traffic("demo", rps=40, duration=1.5, client=FakeApi(router), on_tick=ticks.append)
    took = time.time() - begun
    assert len(result.records) == 60  # exactly rps × duration, never more
    assert 1.3 < took < 3.0
    assert set(FakeRouter.hits) == {"demo.localhost"}
    ts = [r["t"] for r in result.records]
    assert ts == sorted(ts) and ts[-1] < 1.6 and 1.3 < ts[-1]
    s = result.summary
    assert s["total"]["count"] == 60 and s["total"]["errors"] == 15
    assert s["by_dyno"]["web.1"]["count"] == 30 and s["by_dyno"]["web.2"]["codes"] == {"H12": 15}
    assert s["by_dyno"]["web.1"]["releases"] == {"v3": 30}
    assert ticks and ticks[-1].done == 60 and ticks[-1].in_flight == 0
    # the dyno -> instance map is refreshed every second: web.1 moved and the records follow
    assert {r["instance"] for r in result.records if r["dyno"] == "web.1"} <= {"i-old", "i-new"}
    assert result.moves and result.moves[0]["dyno"] == "web.1" and result.moves[0]["to"] == "i-new"
    assert "web.1 moved i-old → i-new" in render.traffic_summary_text(result)
    live = render.traffic_live_text("demo", ticks[-1], traffic.WINDOW_S)
    assert "Last 5 s:" in live and "web.2" in live


def test_a_cut_body_is_an_error_with_its_router_lines_code(router):
    result = traffic.run_traffic("demo", rps=10, duration=0.4, path="/cut", timeout=2.0, client=FakeApi(router))
    assert len(result.records) == 4
    assert all(r["status"] is None and r["error"] == "truncated" for r in result.records)
    assert {r["code"] for r in result.records} == {"H18"} and {r["dyno"] for r in result.records} == {"web.1", "web.2"}
    assert result.summary["total"]["codes"] == {"H18": 4}
    assert result.summary["total"]["error_kinds"] == {"truncated H18": 4}


def test_timeouts_are_errors_not_hangs(router):
    begun = time.time()
    result = traffic.run_traffic("demo", rps=10, duration=0.5, path="/hang", timeout=0.3, client=FakeApi(router))
    assert time.time() - begun < 3.0
    assert len(result.records) == 5
    assert all(r["status"] is None and r["error"] == "timeout" for r in result.records)
    assert result.summary["total"]["error_kinds"] == {"timeout": 5}
    assert all(250 <= r["latency_ms"] < 1000 for r in result.records)


def test_stop_event_ends_early_and_json_shape(router, tmp_path):
    stop = threading.Event()
    threading.Timer(0.4, stop.set).start()
    result = traffic.run_traffic("demo", rps=20, duration=5, client=FakeApi(router), stop=stop)
    assert result.interrupted and 4 <= len(result.records) <= 12
    out = tmp_path / "t.json"
    result.write_json(str(out))
    import json

    data = json.loads(out.read_text())
    assert set(data["records"][0]) == {
        "t",
        "ts",
        "status",
        "latency_ms",
        "dyno",
        "instance",
        "release",
        "code",
        "error",
    }
    assert data["summary"]["total"]["count"] == len(result.records)


def test_bad_path_is_refused(router):
    with pytest.raises(InvalidInput):
        traffic.run_traffic("demo", rps=1, duration=1, path="http://elsewhere/", client=FakeApi(router))


class ClosingRouter(BaseHTTPRequestHandler):
    """Answers the first request of each connection (keep-alive), then closes the connection when the next
    request arrives on it without answering: what an nginx worker leaving on a reload does to an idle client
    connection that a request is already on its way on."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        served = getattr(self, "served", 0)
        if served:
            self.close_connection = True
            return
        self.served = 1
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "17")
        self.end_headers()
        self.wfile.write(b'{"dyno": "web.1"}')


def test_a_request_on_a_keepalive_connection_the_router_closed_is_sent_once_more():
    server = ThreadingHTTPServer(("127.0.0.1", 0), ClosingRouter)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        result = traffic.run_traffic("demo", rps=20, duration=0.5, client=FakeApi(port))
    finally:
        server.shutdown()
        server.server_close()
    assert result.summary["total"]["count"] == 10
    assert [r for r in result.records if r["status"] != 200] == []
    assert any(r.get("retried") for r in result.records), "the close was never met: the test proves nothing"


def test_stale_keepalive_is_only_a_closed_reused_connection():
    import http.client

    import requests
    import urllib3

    def wrap(cause: BaseException) -> requests.ConnectionError:
        return requests.ConnectionError(urllib3.exceptions.ProtocolError("Connection aborted.", cause))

    assert traffic.stale_keepalive(wrap(http.client.RemoteDisconnected("closed")))
    assert traffic.stale_keepalive(wrap(ConnectionResetError(104, "reset")))
    refused = urllib3.exceptions.NewConnectionError(None, "refused")  # type: ignore[arg-type]
    assert not traffic.stale_keepalive(requests.ConnectionError(urllib3.exceptions.MaxRetryError(None, "/", refused)))
    assert not traffic.stale_keepalive(requests.ConnectionError("no cause"))
