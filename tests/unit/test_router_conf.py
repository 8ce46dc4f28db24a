"""The router's nginx.conf and its log lines (engine/router.py; heroku-reference §3). No Docker needed.

``nginx -t`` checks run when an nginx binary is on PATH (the stack image and dev machines have one).
"""

from __future__ import annotations

import http.client
import re
import shutil
import subprocess
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from labctl.engine import router_hold
from labctl.engine.router import (
    HOLD_ADDR,
    AppRoute,
    Backend,
    RouterEntry,
    RouterLogReader,
    RouterSettings,
    format_router_line,
    parse_access_line,
    parse_router_fields,
    render_nginx_conf,
    router_command,
)

SETTINGS = RouterSettings(http_port_public=5080, timescale=0.02)
DEMO = AppRoute("demo", (Backend("web.1", "172.18.0.5:5001", 3), Backend("web.2", "172.18.0.6:5002", 4)), retry=True)
PRIVATE = AppRoute("secret", (Backend("web.1", "172.19.0.2:5001", 7),), retry=False)

# Real lines printed by nginx with this module's log_format (captured from a run).
OK_LINE = (
    '{"kind":"labctl-router","msec":"1795437246.869","app":"demo","method":"GET","path":"/?q=1",'
    '"host":"demo.localhost","request_id":"8601b555-6a83-4c12-8269-97c8e32cdb22","fwd":"9.9.9.9, 172.17.0.1",'
    '"scheme":"http","status":"200","bytes":"113","request_time":"0.019","upstream":"172.18.0.6:5002, '
    '172.18.0.5:5001","upstream_status":"502, 200","connect_time":"-, 0.001","response_time":"0.000, 0.019",'
    '"dyno":"web.1","release":"3","code":"","desc":""}'
)
H12_LINE = (
    '{"kind":"labctl-router","msec":"1795437300.706","app":"demo","method":"GET","path":"/slow?ms=2500",'
    '"host":"demo.localhost","request_id":"438c3b95-0089-6b33-050b-c7cfbf806ddd","fwd":"127.0.0.1",'
    '"scheme":"http","status":"503","bytes":"471","request_time":"1.502","upstream":"127.0.0.1:49027",'
    '"upstream_status":"504","connect_time":"0.000","response_time":"1.501","dyno":"web.2","release":"4",'
    '"code":"H12","desc":"Request timeout"}'
)
H19_LINE = (
    '{"kind":"labctl-router","msec":"1795437299.195","app":"full","method":"GET","path":"/",'
    '"host":"full.localhost","request_id":"2d82abb4-b082-dd6d-ca62-4e0d9baeda8a","fwd":"127.0.0.1",'
    '"scheme":"http","status":"503","bytes":"471","request_time":"0.250","upstream":"127.0.0.1:56863",'
    '"upstream_status":"504","connect_time":"-","response_time":"0.250","dyno":"web.1","release":"1",'
    '"code":"H19","desc":"Backend connection timeout"}'
)
H14_LINE = (
    '{"kind":"labctl-router","msec":"1795437301.633","app":"other","method":"GET","path":"/",'
    '"host":"other.localhost","request_id":"656fe1f8-119f-db2d-0510-ab92f886c688","fwd":"127.0.0.1",'
    '"scheme":"http","status":"503","bytes":"471","request_time":"0.000","upstream":"","upstream_status":"",'
    '"connect_time":"","response_time":"","dyno":"","release":"","code":"H14","desc":"No web dynos running"}'
)
H80_LINE = H14_LINE.replace('"H14","desc":"No web dynos running"', '"H80","desc":"Maintenance mode"')
ABORT_LINE = (
    '{"kind":"labctl-router","msec":"1795437301.009","app":"demo","method":"GET","path":"/slow?ms=800",'
    '"host":"demo.localhost","request_id":"8e991c70-45d9-99be-aae1-3412f5e50b8b","fwd":"127.0.0.1",'
    '"scheme":"http","status":"499","bytes":"0","request_time":"0.300","upstream":"127.0.0.1:34115",'
    '"upstream_status":"-","connect_time":"0.001","response_time":"0.301","dyno":"web.1","release":"3",'
    '"code":"","desc":""}'
)
HEROKU_ORDER = [
    "at",
    "method",
    "path",
    "host",
    "request_id",
    "fwd",
    "dyno",
    "connect",
    "service",
    "status",
    "bytes",
    "protocol",
]


def _block(conf: str, head: str) -> str:
    """The text of the ``head { … }`` block (first one), nested braces included."""
    start = conf.index(head)
    depth, i = 0, conf.index("{", start)
    while True:
        depth += {"{": 1, "}": -1}.get(conf[i], 0)
        if depth == 0:
            return conf[start : i + 1]
        i += 1


# -- nginx.conf --------------------------------------------------------------------------------------
def test_upstream_per_app_random_and_never_marked_down():
    conf = render_nginx_conf([DEMO], SETTINGS)
    up = _block(conf, "upstream labctl_app_demo")
    assert "random;" in up
    assert "server 172.18.0.5:5001 max_fails=0;" in up and "server 172.18.0.6:5002 max_fails=0;" in up
    server = _block(conf, "server {\n        listen 80;\n        server_name demo.localhost;")
    assert "proxy_pass http://labctl_app_demo;" in server
    assert "set $labctl_app demo;" in server


def test_dyno_and_release_maps_key_on_app_and_last_upstream_address():
    conf = render_nginx_conf([DEMO, PRIVATE], SETTINGS)
    dyno_map = _block(conf, 'map "$labctl_app $labctl_last_addr" $labctl_dyno')
    assert '"demo 172.18.0.5:5001" web.1;' in dyno_map
    assert '"demo 172.18.0.6:5002" web.2;' in dyno_map
    assert '"secret 172.19.0.2:5001" web.1;' in dyno_map
    release_map = _block(conf, 'map "$labctl_app $labctl_last_addr" $labctl_release')
    assert '"demo 172.18.0.6:5002" 4;' in release_map
    # $upstream_addr lists every try ("a, b"): the last address is the dyno that answered.
    last = _block(conf, "map $upstream_addr $labctl_last_addr")
    pattern = re.search(r'"~(.*)" \$labctl_la;', last).group(1).replace("?<labctl_la>", "?P<labctl_la>")
    assert re.search(pattern, "172.18.0.6:5002, 172.18.0.5:5001").group("labctl_la") == "172.18.0.5:5001"


def test_timeouts_are_scaled_and_never_zero():
    conf = render_nginx_conf([DEMO], SETTINGS)
    assert "proxy_connect_timeout 100ms;" in conf  # 5 s × 0.02
    assert "proxy_read_timeout 1100ms;" in conf  # the rolling 55 s × 0.02 (H15)
    assert '# labctl-timing {"first_byte_ms": 600}' in conf  # 30 s × 0.02 (H12), for the watchdog
    assert "proxy_buffering off;" in conf  # a dribbling response streams
    assert "proxy_send_timeout 1100ms;" in conf and "send_timeout 1100ms;" in conf  # 55 s × 0.02
    tiny = render_nginx_conf([DEMO], RouterSettings(5080, timescale=1e-6))
    assert "proxy_connect_timeout 1ms;" in tiny
    real = render_nginx_conf([DEMO], RouterSettings(5080))
    assert "proxy_read_timeout 55000ms;" in real and '{"first_byte_ms": 30000}' in real


def test_retry_only_in_the_common_runtime_and_at_most_ten_tries():
    conf = render_nginx_conf([DEMO, PRIVATE], SETTINGS)
    demo = _block(conf, "server {\n        listen 80;\n        server_name demo.localhost;")
    assert "proxy_next_upstream error timeout;" in demo and "proxy_next_upstream_tries 2;" in demo
    assert "proxy_next_upstream_timeout 600ms;" in demo  # never retry after a first-byte timeout (H12)
    secret = _block(conf, "server {\n        listen 80;\n        server_name secret.localhost;")
    assert "proxy_next_upstream off;" in secret
    many = AppRoute("big", tuple(Backend(f"web.{i}", f"10.0.0.{i}:5000", 1) for i in range(1, 13)), True)
    assert "proxy_next_upstream_tries 10;" in render_nginx_conf([many], SETTINGS)


def test_router_headers_and_app_errors_pass_through():
    conf = render_nginx_conf([DEMO], SETTINGS)
    for header in (
        "X-Request-Id $labctl_request_id",
        "X-Forwarded-For $labctl_fwd",
        "X-Forwarded-Proto $labctl_proto",
        "X-Forwarded-Port $labctl_forwarded_port",
        "X-Request-Start $labctl_request_start",
        'Via "1.1 vegur"',
        "Host $http_host",
    ):
        assert f"proxy_set_header {header};" in conf
    assert "default $proxy_add_x_forwarded_for;" in _block(conf, "map $http_host $labctl_fwd")
    assert "default $scheme;" in _block(conf, "map $http_host $labctl_proto")
    assert "default 5080;" in _block(conf, "map $scheme $labctl_forwarded_port")
    assert "proxy_intercept_errors off;" in conf  # an app's own 500 reaches the client untouched


def test_router_errors_are_503_with_a_code():
    conf = render_nginx_conf([DEMO], SETTINGS)
    assert "error_page 502 = @labctl_502;" in conf and "error_page 504 = @labctl_504;" in conf
    at502 = _block(conf, "location @labctl_502")
    assert "set $labctl_code $labctl_code_502;" in at502 and "return 503 $labctl_page_app_error;" in at502
    code_502 = _block(conf, 'map "$upstream_connect_time $labctl_late" $labctl_code_502')
    assert '"~[0-9] 1$" H12;' in code_502 and '"~[0-9] 0$" H13;' in code_502 and "default H21;" in code_502
    # $labctl_late: the first-byte window (600 ms here) is over, the watchdog aborted the connection
    late = re.search(r'"~(.*)" 1;', _block(conf, "map $request_time $labctl_late"))[1]
    for t, over in (("0.599", False), ("0.600", True), ("0.601", True), ("1.000", True), ("12.345", True)):
        assert bool(re.match(late, t)) is over, t
    assert "H12" in _block(conf, "map $upstream_connect_time $labctl_code_504")
    assert "H19" in _block(conf, "map $upstream_connect_time $labctl_code_504")


@pytest.mark.parametrize("code", ["H14", "H10", "H81"])
def test_empty_routing_set_answers_the_empty_code(code):
    conf = render_nginx_conf([AppRoute("demo", (), True, empty_code=code)], SETTINGS)
    server = _block(conf, "server {\n        listen 80;\n        server_name demo.localhost;")
    assert f"set $labctl_code {code};" in server and "return 503 $labctl_page_app_error;" in server
    assert "upstream labctl_app_demo" not in conf


def test_maintenance_wins_over_backends():
    conf = render_nginx_conf([AppRoute("demo", DEMO.backends, True, maintenance=True)], SETTINGS)
    server = _block(conf, "server {\n        listen 80;\n        server_name demo.localhost;")
    assert "set $labctl_code H80;" in server and "return 503 $labctl_page_maintenance;" in server
    assert "proxy_pass" not in server


def test_unknown_host_is_404_and_empty_route_list_is_valid():
    conf = render_nginx_conf([], RouterSettings(http_port_public=0))
    default = _block(conf, "server {\n        listen 80 default_server;")
    assert "return 404 $labctl_page_no_such_app;" in default
    assert "upstream labctl_app_" not in conf and "proxy_pass" not in conf
    assert "default $labctl_host_port;" in conf  # port unknown yet: taken from the Host header


def test_rendering_is_deterministic_and_rejects_unsafe_names():
    assert render_nginx_conf([DEMO, PRIVATE], SETTINGS) == render_nginx_conf([PRIVATE, DEMO], SETTINGS)
    with pytest.raises(ValueError):
        render_nginx_conf([AppRoute("demo; evil", (), True)], SETTINGS)
    with pytest.raises(ValueError):
        render_nginx_conf([AppRoute("demo", (Backend("web.1", "1.2.3.4:80; x", 1),), True)], SETTINGS)
    with pytest.raises(ValueError):
        render_nginx_conf([AppRoute("demo", (Backend("web.1 x", "1.2.3.4:80", 1),), True)], SETTINGS)


NGINX = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None)


def _nginx_t(tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``nginx -t`` of tmp_path/nginx.conf: the host's nginx, else the router's own nginx in the stack image
    (the image the router runs; the integration tests build it before the unit tests run)."""
    if NGINX is not None:
        return subprocess.run(
            [
                NGINX,
                "-t",
                "-q",
                "-p",
                str(tmp_path),
                "-e",
                "stderr",
                "-c",
                str(tmp_path / "nginx.conf"),
                "-g",
                f"pid {tmp_path}/nginx.pid;",
            ],
            capture_output=True,
            text=True,
        )
    from labctl import const

    if (
        shutil.which("docker") is None
        or subprocess.run(["docker", "image", "inspect", const.STACK_IMAGE], capture_output=True).returncode != 0
    ):
        pytest.skip(
            f"neither an nginx binary nor the {const.STACK_IMAGE} image here (pytest runs the "
            "integration tests first: they build it)"
        )
    return subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "--label",
            "io.labctl.lab=unit-nginx-t",
            "--network",
            "none",
            "-v",
            f"{tmp_path}:/conf",
            const.STACK_IMAGE,
            "nginx",
            "-t",
            "-q",
            "-p",
            "/conf",
            "-e",
            "stderr",
            "-c",
            "/conf/nginx.conf",
            "-g",
            "pid /conf/nginx.pid;",
        ],
        capture_output=True,
        text=True,
    )


@pytest.mark.parametrize(
    "routes",
    [
        [],
        [
            DEMO,
            PRIVATE,
            AppRoute("empty", (), True, "H10"),
            AppRoute("maint", DEMO.backends, False, maintenance=True),
            AppRoute("booting", (), True, "H20"),
            AppRoute("psboot", (), False, "H20"),
        ],
    ],
    ids=["empty", "mixed"],
)
def test_nginx_accepts_the_config(routes, tmp_path):
    (tmp_path / "nginx.conf").write_text(render_nginx_conf(routes, SETTINGS))
    r = _nginx_t(tmp_path)
    assert r.returncode == 0, r.stderr


# -- access log → Heroku line -------------------------------------------------------------------------
def test_success_line_in_heroku_field_order():
    e = parse_access_line(OK_LINE)
    assert e is not None and e.app == "demo" and e.dyno == "web.1" and e.release == 3
    assert e.time == datetime(2026, 11, 23, 12, 34, 6, 869000, tzinfo=UTC)
    assert format_router_line(e) == (
        'at=info method=GET path="/?q=1" host=demo.localhost request_id=8601b555-6a83-4c12-8269-97c8e32cdb22 '
        'fwd="9.9.9.9, 172.17.0.1" dyno=web.1 connect=1ms service=18ms status=200 bytes=113 protocol=http'
    )


def test_timeout_lines():
    h12 = format_router_line(parse_access_line(H12_LINE))
    assert h12.startswith('at=error code=H12 desc="Request timeout" method=GET path="/slow?ms=2500" ')
    assert h12.endswith("dyno=web.2 connect=0ms service=1501ms status=503 bytes=0 protocol=http")
    h19 = format_router_line(parse_access_line(H19_LINE))
    assert 'code=H19 desc="Backend connection timeout"' in h19
    assert "dyno=web.1 connect=250ms service= status=503 bytes=0 protocol=http" in h19


def test_error_without_dyno_leaves_fields_empty():
    line = format_router_line(parse_access_line(H14_LINE))
    assert line == (
        'at=error code=H14 desc="No web dynos running" method=GET path="/" host=other.localhost '
        'request_id=656fe1f8-119f-db2d-0510-ab92f886c688 fwd="127.0.0.1" '
        "dyno= connect= service= status=503 bytes= protocol=http"
    )
    h80 = format_router_line(parse_access_line(H80_LINE))
    assert h80.startswith('at=info code=H80 desc="Maintenance mode" ')


def test_client_abort_is_h27_warning():
    e = parse_access_line(ABORT_LINE)
    assert (e.code, e.at, e.status, e.bytes) == ("H27", "warning", 499, 0)
    assert format_router_line(e).startswith('sock=client at=warning code=H27 desc="Client Request Interrupted" ')


# Real lines (a run of tests/integration/test_router_nginx.py): an error line, then its request's access line.
STREAM_OK = (
    '{"kind":"labctl-router","msec":"1796657124.914","app":"demo","method":"GET","path":"/stream",'
    '"host":"demo.localhost","request_id":"7d3d17a5","fwd":"192.168.16.1","scheme":"http","status":"200",'
    '"bytes":"1","request_time":"2.750","upstream":"192.168.16.2:5000","upstream_status":"200",'
    '"connect_time":"0.001","response_time":"2.751","dyno":"web.2","release":"4","code":"","desc":"",'
    '"hold":"","pid":"19","conn":"11"}'
)
NGINX_ERRORS = {
    "H15": "upstream timed out (110: Connection timed out) while reading upstream",
    "H18": "upstream prematurely closed connection while sending to client",
    "H27": "epoll_wait() reported that client prematurely closed connection, so upstream connection is closed "
    "too while reading upstream",
}


@pytest.mark.parametrize("code", sorted(NGINX_ERRORS))
def test_an_error_line_gives_its_request_the_code(code):
    reader = RouterLogReader()
    err = f"2026/12/07 15:25:24 [error] 19#19: *11 {NGINX_ERRORS[code]}, client: 192.168.16.1, server: demo"
    assert reader.feed(err) is None
    e = reader.feed(STREAM_OK)
    assert e is not None and e.code == code and e.dyno == "web.2" and e.bytes == 1
    line = format_router_line(e)
    if code == "H15":
        assert line.startswith('at=error code=H15 desc="Idle connection" method=GET path="/stream" ')
    elif code == "H18":
        assert line.startswith('sock=backend at=error code=H18 desc="Server Request Interrupted" method=GET ')
    else:
        assert line.startswith('sock=client at=warning code=H27 desc="Client Request Interrupted" method=GET ')
    status = "499" if code == "H27" else "503"
    assert line.endswith(f" dyno=web.2 connect=1ms service=2750ms status={status} bytes=1 protocol=http")
    assert reader.feed(STREAM_OK).code is None  # used once: the connection's next request is not touched


def test_error_lines_of_another_connection_or_before_the_header_change_nothing():
    reader = RouterLogReader()
    reader.feed("2026/12/07 15:25:24 [error] 19#19: *12 upstream timed out (110) while reading upstream, x")
    reader.feed("2026/12/07 15:25:24 [error] 18#18: *11 upstream timed out (110) while reading upstream, x")
    reader.feed("2026/12/07 15:25:24 [info] 19#19: *11 client 192.168.16.1 closed keepalive connection")
    reader.feed("2026/12/07 15:25:24 [alert] 19#19: *11 recv() failed (103) while reading response header from up")
    assert reader.feed(STREAM_OK).code is None


def test_an_error_line_naming_another_host_changes_nothing():
    """The common router logs no line for a request it forwarded to a space router: an error line about one
    (its host a Private Space app's) must not mark the next request of the same client connection."""
    reader = RouterLogReader()
    front = '2026/12/07 15:25:24 [error] 19#19: *11 {}, client: 192.168.16.1, server: ps.localhost, host: "{}"'
    reader.feed(front.format(NGINX_ERRORS["H18"], "ps.localhost:5080"))
    assert reader.feed(STREAM_OK).code is None
    reader.feed(front.format(NGINX_ERRORS["H18"], "Demo.localhost:5080"))  # its own request: marked
    assert reader.feed(STREAM_OK).code == "H18"


def test_the_front_logs_only_what_it_answers_itself():
    from labctl.engine.router_model import FrontRoute

    conf = render_nginx_conf([DEMO], SETTINGS, [FrontRoute("secret", "tokyo", "172.20.0.2")])
    front = _block(conf, "server {\n        listen 80;\n        server_name secret.localhost;")
    logs = [line.strip() for line in front.splitlines() if line.strip().startswith("access_log")]
    assert logs == ["access_log /dev/stdout labctl if=$labctl_code;"]


def test_the_watchdog_picks_upstream_connections_without_a_first_byte():
    out = "\n".join(
        [
            "0 0 172.18.0.2:41000 172.18.0.5:5000 cubic lastsnd:1600 lastrcv:1600 lastack:1600",  # stalled
            "0 0 172.18.0.2:41002 172.18.0.5:5000 cubic bytes_received:120 lastsnd:9000 lastrcv:200",  # dribbling
            "0 0 172.18.0.2:41006 172.18.0.5:5000 cubic bytes_received:90 lastsnd:1700 lastrcv:5000",  # reused, waiting
            "0 0 172.18.0.2:41004 172.18.0.6:5000 cubic lastsnd:100 lastrcv:100",  # young
            "0 0 172.18.0.2:41008 172.18.0.6:5000 cubic bytes_received:9 lastsnd:1800 lastrcv:1800",  # answered at once
            "0 0 172.18.0.2:80 172.18.0.1:50000 cubic lastsnd:9000 lastrcv:9000",  # a client of nginx
            "0 0 127.0.0.1:50002 127.0.0.1:8099 cubic lastsnd:9000 lastrcv:9000",  # the hold service
        ]
    )
    assert router_hold.stalled(out, 1500) == [
        ("172.18.0.2:41000", "172.18.0.5:5000"),
        ("172.18.0.2:41006", "172.18.0.5:5000"),
    ]


def test_round_trip_through_heroku_fields():
    for raw in (OK_LINE, H12_LINE, H14_LINE, H19_LINE):
        e = parse_access_line(raw)
        fields = parse_router_fields(format_router_line(e))
        keys = [k for k in fields if k not in ("code", "desc")]
        assert keys == HEROKU_ORDER
        assert fields["request_id"] == e.request_id and fields["path"] == e.path and fields["fwd"] == e.fwd
        assert fields["dyno"] == e.dyno and int(fields["status"]) == e.status
        assert fields.get("code") == e.code


def test_other_output_is_not_an_entry():
    assert parse_access_line("") is None
    assert parse_access_line("2026/11/23 12:34:06 [error] 7#7: *47 connect() failed (111: refused)") is None
    assert parse_access_line('{"kind":"something-else","status":"200"}') is None
    assert parse_access_line('{"kind":"labctl-router", broken') is None
    assert parse_access_line('{"kind":"labctl-router","status":"x"}') is None


def test_entry_can_be_built_directly():
    e = RouterEntry(
        time=datetime.now(UTC),
        app="demo",
        method="POST",
        path='/a"b',
        host="demo.localhost",
        request_id="r" * 20,
        fwd="1.2.3.4",
        dyno="",
        connect_ms=None,
        service_ms=None,
        status=503,
        bytes=None,
        protocol="https",
        code="H81",
        desc="Blank app",
        at="info",
    )
    assert format_router_line(e) == (
        'at=info code=H81 desc="Blank app" method=POST path="/a%22b" host=demo.localhost '
        f'request_id={"r" * 20} fwd="1.2.3.4" dyno= connect= service= status=503 bytes= protocol=https'
    )


def test_tls_listens_on_443_and_forwards_the_https_port(tmp_path):
    settings = RouterSettings(
        5080, tls_cert="/etc/labctl/tls.crt", tls_key="/etc/labctl/tls.key", https_port_public=5443
    )
    conf = render_nginx_conf([DEMO], settings)
    assert "ssl_certificate /etc/labctl/tls.crt;" in conf
    assert "ssl_certificate_key /etc/labctl/tls.key;" in conf
    assert "listen 443 ssl;" in conf and "listen 443 ssl default_server;" in conf
    port_map = _block(conf, "map $scheme $labctl_forwarded_port")
    assert "https 5443;" in port_map and "default 5080;" in port_map
    if NGINX and shutil.which("openssl"):
        crt, key = tmp_path / "tls.crt", tmp_path / "tls.key"
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=*.localhost",
                "-keyout",
                str(key),
                "-out",
                str(crt),
            ],
            check=True,
            capture_output=True,
        )
        path = tmp_path / "nginx.conf"
        path.write_text(render_nginx_conf([DEMO], RouterSettings(5080, tls_cert=str(crt), tls_key=str(key))))
        r = subprocess.run(
            [
                NGINX,
                "-t",
                "-q",
                "-p",
                str(tmp_path),
                "-e",
                "stderr",
                "-c",
                str(path),
                "-g",
                f"pid {tmp_path}/nginx.pid;",
            ],
            capture_output=True,
            text=True,
        )
        assert r.returncode == 0, r.stderr


# -- the hold service: H20 boot hold, Private Space refused connect -----------------------------------
BOOTING = AppRoute("boot", (), True, empty_code="H20")
H20_LINE = (
    '{"kind":"labctl-router","msec":"1795437310.100","app":"boot","method":"GET","path":"/",'
    '"host":"boot.localhost","request_id":"0d4c2a7e-1b1e-4a57-9d55-6f1e0c1d2b3a","fwd":"127.0.0.1",'
    '"scheme":"http","status":"503","bytes":"471","request_time":"1.503","upstream":"127.0.0.1:8099",'
    '"upstream_status":"200","connect_time":"0.000","response_time":"1.502","dyno":"","release":"",'
    '"code":"H20","desc":"App boot timeout","hold":"boot"}'
)
HELD_LINE = (
    '{"kind":"labctl-router","msec":"1795437311.200","app":"boot","method":"GET","path":"/",'
    '"host":"boot.localhost","request_id":"5e0f3b8a-2c2f-4b68-8e66-7a2f1d2e3c4b","fwd":"127.0.0.1",'
    '"scheme":"http","status":"200","bytes":"120","request_time":"0.812","upstream":"127.0.0.1:8099 : '
    '172.18.0.5:5001","upstream_status":"200 : 200","connect_time":"0.000 : 0.001","response_time":'
    '"0.800 : 0.010","dyno":"web.1","release":"3","code":"","desc":"","hold":"boot"}'
)
PS_REFUSED_LINE = (
    '{"kind":"labctl-router","msec":"1795437312.300","app":"secret","method":"GET","path":"/",'
    '"host":"secret.localhost","request_id":"6f1a4c9b-3d3a-4c79-9f77-8b3a2e3f4d5c","fwd":"127.0.0.1",'
    '"scheme":"http","status":"503","bytes":"471","request_time":"0.603","upstream":"172.19.0.2:5001 : '
    '127.0.0.1:8099","upstream_status":"502 : 200","connect_time":"- : 0.000","response_time":"0.000 : 0.602",'
    '"dyno":"web.1","release":"7","code":"H12","desc":"Request timeout","hold":"wait"}'
)


def test_booting_app_hands_requests_to_the_hold_service():
    conf = render_nginx_conf([BOOTING], SETTINGS)
    server = _block(conf, "server {\n        listen 80;\n        server_name boot.localhost;")
    root = _block(server, "location / ")
    assert f"proxy_pass http://{HOLD_ADDR};" in root and "set $labctl_hold boot;" in root
    assert "proxy_set_header X-Labctl-Limit-Ms 1500;" in root  # 75 s × 0.02
    assert "proxy_set_header X-Labctl-App $labctl_app;" in root and "proxy_pass_request_body off;" in root
    assert "error_page 502 504 = @labctl_H20;" in root  # no hold service: H20 at once, as before
    held = _block(server, "location @labctl_held")
    assert "set $labctl_held_addr $upstream_http_x_labctl_addr;" in held
    assert "proxy_pass http://$labctl_held_addr;" in held and "error_page 502 = @labctl_502;" in held
    for code in router_hold.CODE_LOCATIONS:
        assert f"set $labctl_code {code};" in _block(server, f"location @labctl_{code} ")
    assert "return 503 $labctl_page_maintenance;" in _block(server, "location @labctl_H80 ")
    assert "upstream labctl_app_boot" not in conf


def test_boot_hold_is_the_scaled_75_s_with_a_floor():
    assert SETTINGS.boot_hold() == pytest.approx(1.5)
    assert RouterSettings(5080).boot_hold() == 75.0
    floored = RouterSettings(5080, timescale=0.02, boot_hold_floor_s=2.3)
    assert floored.boot_hold() == 2.3
    assert "X-Labctl-Limit-Ms 2300;" in render_nginx_conf([BOOTING], floored)


def test_private_space_refused_connect_waits_out_the_first_byte_window():
    conf = render_nginx_conf([DEMO, PRIVATE], SETTINGS)
    secret = _block(conf, "server {\n        listen 80;\n        server_name secret.localhost;")
    at502 = _block(secret, "location @labctl_502")
    assert "set $labctl_pin_dyno $labctl_dyno_out;" in at502 and "recursive_error_pages on;" in at502
    assert "proxy_set_header X-Labctl-Hold wait;" in at502 and "X-Labctl-Limit-Ms 600;" in at502  # 30 s × 0.02
    assert "proxy_set_header X-Labctl-Code $labctl_code;" in at502 and "= @labctl_now;" in at502
    assert "set $labctl_code H12;" in _block(secret, "location @labctl_H12 ")
    demo = _block(conf, "server {\n        listen 80;\n        server_name demo.localhost;")
    assert "proxy_pass" not in _block(demo, "location @labctl_502")  # Common Runtime: H21 at once, after retries


def test_router_command_runs_the_hold_service_next_to_nginx():
    cmd = router_command()
    assert cmd[:2] == ["sh", "-c"]
    assert "python3 /etc/nginx/labctl-hold.py 8099 /etc/nginx/nginx.conf" in cmd[2]
    assert cmd[2].endswith("exec nginx -g 'daemon off;'")


def test_routes_line_carries_the_routing_set():
    conf = render_nginx_conf([DEMO, BOOTING, AppRoute("maint", (), True, maintenance=True)], SETTINGS)
    routes = router_hold.read_routes(conf)
    assert routes["demo"] == {
        "b": [["web.1", "172.18.0.5:5001", 3], ["web.2", "172.18.0.6:5002", 4]],
        "c": "H14",
        "m": False,
    }
    assert routes["boot"] == {"b": [], "c": "H20", "m": False} and routes["maint"]["m"] is True
    assert router_hold.read_routes("worker_processes 2;\n") is None
    assert router_hold.read_routes(router_hold.ROUTES_MARK + '{"cut') is None


def test_hold_decisions():
    decide = router_hold.decide
    starting = {"b": [], "c": "H20", "m": False}
    assert decide(starting, 1.0, 3.75) is None  # keep holding
    assert decide(starting, 3.75, 3.75) == ("@labctl_H20", {})
    up = {"b": [["web.2", "10.0.0.2:5000", 4]], "c": "H14", "m": False}
    assert decide(up, 1.0, 3.75) == (
        "@labctl_held",
        {"X-Labctl-Addr": "10.0.0.2:5000", "X-Labctl-Dyno": "web.2", "X-Labctl-Release": "4"},
    )
    assert decide({"b": [], "c": "H10", "m": False}, 0.1, 3.75) == ("@labctl_H10", {})  # cool-off: no wait
    assert decide({"b": [], "c": "H14", "m": False}, 0.1, 3.75) == ("@labctl_H14", {})  # scaled to 0
    assert decide({"b": up["b"], "c": "H14", "m": True}, 0.1, 3.75) == ("@labctl_H80", {})
    assert decide(None, 0.1, 3.75) == ("@labctl_gone", {})  # app destroyed meanwhile
    assert decide({"b": [], "c": "H42"}, 0.1, 3.75) == ("@labctl_H99", {})


def test_hold_lines_in_heroku_form():
    h20 = format_router_line(parse_access_line(H20_LINE))
    assert h20.startswith('at=error code=H20 desc="App boot timeout" method=GET path="/" host=boot.localhost ')
    assert h20.endswith("dyno= connect= service= status=503 bytes= protocol=http")
    held = format_router_line(parse_access_line(HELD_LINE))
    assert held.startswith("at=info method=GET ")
    assert held.endswith("dyno=web.1 connect=1ms service=9ms status=200 bytes=120 protocol=http")
    refused = format_router_line(parse_access_line(PS_REFUSED_LINE))
    assert refused.startswith('at=error code=H12 desc="Request timeout" ')
    assert refused.endswith("dyno=web.1 connect= service=603ms status=503 bytes=0 protocol=http")


@pytest.fixture
def hold_service(tmp_path):
    conf = tmp_path / "nginx.conf"
    conf.write_text(render_nginx_conf([BOOTING], SETTINGS))
    router_hold.Handler.routes = router_hold.Routes(str(conf))
    server = router_hold.Server(("127.0.0.1", 0), router_hold.Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], conf
    finally:
        server.shutdown()
        server.server_close()


def _ask(port: int, **headers: str) -> tuple[str | None, dict[str, str], float]:
    t = time.monotonic()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", "/", headers={k.replace("_", "-"): v for k, v in headers.items()})
    r = c.getresponse()
    c.close()
    return r.getheader("X-Accel-Redirect"), dict(r.getheaders()), time.monotonic() - t


def test_hold_service_releases_a_held_request_when_the_conf_names_a_dyno(hold_service):
    port, conf = hold_service
    result = {}
    held = threading.Thread(
        target=lambda: result.update(
            answer=_ask(
                port, X_Labctl_Hold="boot", X_Labctl_App="boot", X_Labctl_Elapsed="0.001", X_Labctl_Limit_Ms="5000"
            )
        )
    )
    held.start()
    time.sleep(0.3)
    assert held.is_alive()
    conf.write_text(render_nginx_conf([AppRoute("boot", DEMO.backends[:1], True)], SETTINGS))
    held.join(5)
    where, headers, took = result["answer"]
    assert where == "@labctl_held" and headers["X-Labctl-Addr"] == "172.18.0.5:5001"
    assert headers["X-Labctl-Dyno"] == "web.1" and headers["X-Labctl-Release"] == "3"
    assert 0.3 <= took < 2


def test_hold_service_times_out_and_waits(hold_service):
    port, _ = hold_service
    where, _, took = _ask(
        port, X_Labctl_Hold="boot", X_Labctl_App="boot", X_Labctl_Elapsed="0.1", X_Labctl_Limit_Ms="400"
    )
    assert where == "@labctl_H20" and 0.25 <= took < 1.0  # the time nginx already spent counts
    where, _, took = _ask(
        port, X_Labctl_Hold="wait", X_Labctl_Code="H21", X_Labctl_Elapsed="0.05", X_Labctl_Limit_Ms="300"
    )
    assert where == "@labctl_H12" and 0.2 <= took < 0.8
    where, _, took = _ask(
        port, X_Labctl_Hold="wait", X_Labctl_Code="H13", X_Labctl_Elapsed="0", X_Labctl_Limit_Ms="5000"
    )
    assert where == "@labctl_now" and took < 0.5  # accepted then closed: no wait


def test_no_lab_only_response_headers_unless_debugging():
    # heroku-reference §3.3: Heroku's router adds no header naming the dyno or the error; its log line does.
    routes = [
        DEMO,
        PRIVATE,
        AppRoute("empty", (), True, empty_code="H14"),
        AppRoute("boot", (), True, empty_code="H20"),
    ]
    plain = render_nginx_conf(routes, SETTINGS)
    assert "add_header" not in plain
    debug = render_nginx_conf(routes, RouterSettings(5080, timescale=0.02, debug_headers=True))
    for header in ("X-Labctl-Dyno", "X-Labctl-Release", "X-Labctl-Error"):
        assert f"add_header {header} " in debug


def test_the_front_retries_a_closed_kept_alive_connection_to_a_space_router_once():
    from labctl.engine.router_model import FrontRoute

    conf = render_nginx_conf([DEMO], SETTINGS, [FrontRoute("secret", "tokyo", "172.20.0.2")])
    front = _block(conf, "server {\n        listen 80;\n        server_name secret.localhost;")
    # a space router's reload closes idle kept-alive connections: one retry on a fresh one, not an H99
    assert "proxy_next_upstream error;" in front and "proxy_next_upstream_tries 2;" in front
    assert "proxy_next_upstream error timeout" not in front  # an answer that is slow is never sent twice
