"""The Heroku router as an nginx configuration, and its access log read back as Heroku router lines.

Pure text in, text out: no Docker here (``engine/docker.py`` installs the file and runs ``nginx -s reload``).
The behaviour copied is heroku-reference §3: random pick among up web dynos, the router's headers (§3.3),
its timeouts (§3.2), retries on a refused/timed-out connect in the Common Runtime only (§3.1), a 503
"Application Error" page and an H-code for every error the router itself answers (§3.5), and the log
line ``at=info method=GET path="/" … protocol=http`` (§3.4).

How nginx is bent into that shape:

* one ``server`` per app (``server_name <app>.localhost``) plus a default server answering 404;
* an ``upstream`` per app with ``random`` and ``max_fails=0``: the controller owns the routing set, nginx
  never takes a dyno out on its own;
* Common Runtime retries: ``proxy_next_upstream error timeout`` within ``proxy_next_upstream_timeout`` =
  the first-byte timeout, so a refused or timed-out connect moves on to another dyno (§3.1) but an H12
  is never retried (nginx would otherwise resend a GET that already reached a dyno); Private Space: off;
* the H-code of an upstream failure is decided in named locations from ``$upstream_connect_time``: the
  last attempt never connected → H21 (refused, 502) / H19 (connect timeout, 504); it connected → H13
  (closed without response, 502) / H12 (no first byte in time, 504);
* ``proxy_intercept_errors`` stays off, so an app's own 500/502/504 reaches the client untouched;
* the access log is one JSON object a line (``escape=json``); the dyno name and release come from
  ``map``s keyed on the app and the last address of ``$upstream_addr`` (the dyno that answered).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

LOG_KIND = "labctl-router"  # marks our access-log lines among nginx's other output

# heroku-reference §3.5
DESCRIPTIONS = {
    "H10": "App crashed",
    "H12": "Request timeout",
    "H13": "Connection closed without response",
    "H14": "No web dynos running",
    "H19": "Backend connection timeout",
    "H20": "App boot timeout",
    "H21": "Backend connection refused",
    "H27": "Client Request Interrupted",
    "H80": "Maintenance mode",
    "H81": "Blank app",
    "H99": "Platform error",
}
INFO_CODES = frozenset({"H80", "H81", "H82"})
WARNING_CODES = frozenset({"H27", "H28"})
EMPTY_CODES = frozenset({"H10", "H14", "H20", "H81", "H99"})
MAX_TRIES = 10  # heroku-reference §3.1: up to 10 attempts, or the number of dynos if fewer


@dataclass(frozen=True)
class Backend:
    dyno: str  # "web.1"
    addr: str  # "172.18.0.5:5001" (ip:port the router connects to)
    release: int  # release version this dyno runs


@dataclass(frozen=True)
class AppRoute:
    app: str
    backends: tuple[Backend, ...]  # the routing set: up web dynos only
    retry: bool  # Common Runtime True (retry a refused/timed-out connect elsewhere); Private Space False
    empty_code: str = "H14"  # answered when backends is empty: H14, H10, H81 or H20
    maintenance: bool = False  # every request answered 503 / H80 (at=info)


@dataclass(frozen=True)
class RouterSettings:
    http_port_public: int  # the loopback port users use (X-Forwarded-Port); 0 = take it from Host
    timescale: float = 1.0  # multiplies every platform duration below
    connect_timeout_s: float = 5.0
    first_byte_timeout_s: float = 30.0  # H12
    idle_timeout_s: float = 55.0
    listen_port: int = 80  # inside the router container
    worker_processes: int = 2
    tls_cert: str | None = None  # path inside the container; with tls_key adds `listen 443 ssl`
    tls_key: str | None = None
    https_port_public: int = 0  # X-Forwarded-Port for https requests
    https_listen_port: int = 443
    generation: int = 0  # answered at /__labctl/generation so the controller can tell a reload took effect


@dataclass(frozen=True)
class RouterEntry:
    """One request as the router saw it; ``format_router_line`` prints it the Heroku way."""

    time: datetime  # UTC, when the request completed
    app: str  # "" for a Host that names no app
    method: str
    path: str
    host: str
    request_id: str
    fwd: str
    dyno: str  # "" when no dyno was involved
    connect_ms: int | None
    service_ms: int | None
    status: int
    bytes: int | None
    protocol: str
    code: str | None
    desc: str | None
    at: str  # info | warning | error
    release: int | None = None  # release of the dyno that answered (lab extension, not printed)
    request_ms: int = 0  # total time in the router
    upstream: str = ""  # nginx's $upstream_addr (every address tried)


# -- validation: everything rendered into nginx.conf comes from here --------------------------------
_APP_RE = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
_DYNO_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_ADDR_RE = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}$")
_PATH_RE = re.compile(r"^[A-Za-z0-9_./-]+$")


def _check(pattern: re.Pattern[str], value: str, what: str) -> str:
    if not pattern.match(value):
        raise ValueError(f"invalid {what} for the router: {value!r}")
    return value


def _ms(seconds: float) -> str:
    """An nginx duration in ms (nginx's smallest unit; never 0, which would mean 'no timeout')."""
    return f"{max(1, round(seconds * 1000))}ms"


# -- pages (no `$`, `'` or `\`: they are nginx string literals) ------------------------------------
def _page(title: str, heading: str, body: str) -> str:
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8"><title>' + title + "</title>"
        "<style>body{font-family:sans-serif;margin:4em auto;max-width:40em;color:#333}"
        "h1{font-size:1.4em}</style></head><body><h1>" + heading + "</h1><p>" + body + "</p></body></html>"
    )


APP_ERROR_PAGE = _page(
    "Application Error", "Application error",
    "An error occurred in the application and your page could not be served. If you are the application "
    "owner, check your logs for details. You can do this from the labctl CLI with the command "
    "<code>labctl logs --tail -a APP</code>",
)
MAINTENANCE_PAGE = _page(
    "Offline for Maintenance", "Offline for Maintenance",
    "This app is undergoing maintenance right now. Please check back later.",
)
NO_SUCH_APP_PAGE = _page(
    "No such app", "There&#39;s nothing here, yet.",
    "Build something amazing: deploy an app with <code>labctl deploy DIR -a APP</code>",
)
for _p in (APP_ERROR_PAGE, MAINTENANCE_PAGE, NO_SUCH_APP_PAGE):
    assert not set(_p) & set("$'\\"), "page text must be a plain nginx string"


# -- nginx.conf ------------------------------------------------------------------------------------
_LOG_FIELDS = {
    "kind": LOG_KIND,
    "msec": "$msec",
    "app": "$labctl_app",
    "method": "$request_method",
    "path": "$request_uri",
    "host": "$host",
    "request_id": "$labctl_request_id",
    "fwd": "$proxy_add_x_forwarded_for",
    "scheme": "$scheme",
    "status": "$status",
    "bytes": "$body_bytes_sent",
    "request_time": "$request_time",
    "upstream": "$upstream_addr",
    "upstream_status": "$upstream_status",
    "connect_time": "$upstream_connect_time",
    "response_time": "$upstream_response_time",
    "dyno": "$labctl_dyno",
    "release": "$labctl_release",
    "code": "$labctl_code",
    "desc": "$labctl_desc",
}


def render_nginx_conf(routes: Sequence[AppRoute], settings: RouterSettings) -> str:
    """The whole nginx.conf for these routes. Valid with no route at all (every Host → 404).

    Meant for ``nginx -g 'daemon off;'`` as the router container's main process, logging to stdout/stderr;
    a changed config is applied with ``nginx -s reload``, which lets in-flight requests finish.
    """
    routes = sorted(routes, key=lambda r: r.app)
    parts = [_main(settings), _http_head(settings), _maps(routes), _forwarded_port(settings)]
    for route in routes:
        _check(_APP_RE, route.app, "app name")
        parts.append(_app_blocks(route, settings))
    parts.append(_default_server(settings))
    parts.append("}\n")
    return "\n".join(parts)


def _main(s: RouterSettings) -> str:
    return (
        "# Generated by labctl (engine/router.py); rewritten on every change of the routing set.\n"
        f"worker_processes {int(s.worker_processes)};\n"
        "error_log stderr error;\n"
        "events {\n    worker_connections 4096;\n}\n"
    )


def _http_head(s: RouterSettings) -> str:
    t = s.timescale
    fields = ",".join(f'"{k}":"{v}"' for k, v in _LOG_FIELDS.items())
    tls = ""
    if s.tls_cert and s.tls_key:
        tls = (f"    ssl_certificate {_check(_PATH_RE, s.tls_cert, 'certificate path')};\n"
               f"    ssl_certificate_key {_check(_PATH_RE, s.tls_key, 'key path')};\n")
    return f"""http {{
    log_format labctl escape=json '{{{fields}}}';
    access_log /dev/stdout labctl;
    server_tokens off;
    uninitialized_variable_warn off;
    server_names_hash_bucket_size 128;
    map_hash_bucket_size 128;
    client_max_body_size 0;
{tls}
    # heroku-reference §3.2; nginx has one read timeout, so the first-byte window (H12) also bounds the
    # gaps between reads from the dyno after the first byte.
    proxy_connect_timeout {_ms(s.connect_timeout_s * t)};
    proxy_read_timeout {_ms(s.first_byte_timeout_s * t)};
    proxy_send_timeout {_ms(s.idle_timeout_s * t)};
    send_timeout {_ms(s.idle_timeout_s * t)};
    client_body_timeout {_ms(s.idle_timeout_s * t)};

    # The body streams to the dyno as on Heroku (§3.2); nginx then never retries a request whose body
    # a dyno has begun to receive.
    proxy_request_buffering off;
    proxy_intercept_errors off;
    proxy_http_version 1.1;
    proxy_set_header Connection close;

    # heroku-reference §3.3
    proxy_set_header Host $http_host;
    proxy_set_header X-Request-Id $labctl_request_id;
    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    proxy_set_header X-Forwarded-Proto $scheme;
    proxy_set_header X-Forwarded-Port $labctl_forwarded_port;
    proxy_set_header X-Request-Start $labctl_request_start;
    proxy_set_header Via "1.1 vegur";
"""


def _maps(routes: Sequence[AppRoute]) -> str:
    uuid = "".join(f"(?<labctl_r{i}>[0-9a-f]{{{n}}})" for i, n in enumerate((8, 4, 4, 4, 12)))
    dynos, releases = [], []
    for route in routes:
        for b in _unique(route.backends):
            key = f'"{route.app} {b.addr}"'
            dynos.append(f"        {key} {_check(_DYNO_RE, b.dyno, 'dyno name')};")
            releases.append(f"        {key} {int(b.release)};")
    desc = "\n".join(f'        {code} "{text}";' for code, text in DESCRIPTIONS.items())
    return f"""
    # A client's own X-Request-Id is kept when Heroku would keep it (20-200 of [A-Za-z0-9+/=-]).
    map $http_x_request_id $labctl_request_id {{
        "~^[A-Za-z0-9+/=-]{{20,200}}$" $http_x_request_id;
        default $labctl_generated_id;
    }}
    map $request_id $labctl_generated_id {{
        "~^{uuid}$" "$labctl_r0-$labctl_r1-$labctl_r2-$labctl_r3-$labctl_r4";
        default $request_id;
    }}
    map $msec $labctl_request_start {{
        "~^(?<labctl_s>[0-9]+)[.](?<labctl_ms>[0-9]{{3}})$" "$labctl_s$labctl_ms";
        default $msec;
    }}
    map $upstream_addr $labctl_last_addr {{
        "~(?<labctl_la>[^ ,]+)$" $labctl_la;
        default "";
    }}
    map "$labctl_app $labctl_last_addr" $labctl_dyno {{
{chr(10).join(dynos)}
        default "";
    }}
    map "$labctl_app $labctl_last_addr" $labctl_release {{
{chr(10).join(releases)}
        default "";
    }}
    # Did the last attempt connect? 502: refused (H21) or closed without response (H13);
    # 504: connect timeout (H19) or no first byte in time (H12).
    map $upstream_connect_time $labctl_code_502 {{
        "~[0-9]$" H13;
        default H21;
    }}
    map $upstream_connect_time $labctl_code_504 {{
        "~[0-9]$" H12;
        default H19;
    }}
    map $labctl_code $labctl_desc {{
        volatile;
{desc}
        default "";
    }}
    map $host $labctl_page_app_error {{
        default '{APP_ERROR_PAGE}';
    }}
    map $host $labctl_page_maintenance {{
        default '{MAINTENANCE_PAGE}';
    }}
    map $host $labctl_page_no_such_app {{
        default '{NO_SUCH_APP_PAGE}';
    }}
"""


def _unique(backends: Sequence[Backend]) -> list[Backend]:
    seen: dict[str, Backend] = {}
    for b in backends:
        seen[_check(_ADDR_RE, b.addr, "backend address")] = b
    return list(seen.values())


def _listen(s: RouterSettings, default: bool = False) -> str:
    flag = " default_server" if default else ""
    lines = [f"        listen {int(s.listen_port)}{flag};"]
    if s.tls_cert and s.tls_key:
        lines.append(f"        listen {int(s.https_listen_port)} ssl{flag};")
    return "\n".join(lines)


def _forwarded_port(s: RouterSettings) -> str:
    """X-Forwarded-Port: the port the user typed, by scheme; from the Host header when unknown."""
    http = str(s.http_port_public) if s.http_port_public else "$labctl_host_port"
    https = str(s.https_port_public) if s.https_port_public else "$labctl_host_port"
    return f"""
    map $http_host $labctl_host_port {{
        "~:(?<labctl_hp>[0-9]+)$" $labctl_hp;
        default $server_port;
    }}
    map $scheme $labctl_forwarded_port {{
        https {https};
        default {http};
    }}
"""


def _error_location(name: str, code: str, page: str) -> str:
    return f"""        location {name} {{
            set $labctl_code {code};
            default_type "text/html; charset=utf-8";
            add_header X-Labctl-Error $labctl_code always;
            add_header X-Labctl-Dyno $labctl_dyno always;
            return 503 ${page};
        }}"""


def _app_blocks(route: AppRoute, s: RouterSettings) -> str:
    backends = _unique(route.backends)
    head = f"""    server {{
{_listen(s)}
        server_name {route.app}.localhost;
        set $labctl_app {route.app};
        set $labctl_code "";
"""
    if route.maintenance:
        body = _error_location("/", "H80", "labctl_page_maintenance")
        return head + body + "\n    }\n"
    if not backends:
        code = route.empty_code if route.empty_code in EMPTY_CODES else "H14"
        return head + _error_location("/", code, "labctl_page_app_error") + "\n    }\n"
    upstream = f"labctl_app_{route.app}"
    # Private Space: no retry on another dyno; a connect that never completes ends as H12 when the
    # 30 s first-byte window runs out (heroku-reference §3.1, §5). Lab choice: a refused connect
    # answers H21 at once (nginx cannot hold a refused request open).
    retry = (f"proxy_next_upstream off;\n"
             f"            proxy_connect_timeout {_ms(s.first_byte_timeout_s * s.timescale)};")
    code_504 = "H12"
    if route.retry:
        code_504 = "$labctl_code_504"
        # Retries must stop before a first-byte timeout can happen, else an H12 would be retried on
        # another dyno: nginx retries a GET that already reached a dyno (proxy_request_buffering off
        # only protects requests with a body), so bound the retry window by the first-byte timeout.
        retry = (f"proxy_next_upstream error timeout;\n"
                 f"            proxy_next_upstream_tries {min(MAX_TRIES, len(backends))};\n"
                 f"            proxy_next_upstream_timeout {_ms(s.first_byte_timeout_s * s.timescale)};")
    servers = "\n".join(f"        server {b.addr} max_fails=0;" for b in backends)
    return f"""    upstream {upstream} {{
        random;
{servers}
    }}
{head}        location / {{
            proxy_pass http://{upstream};
            {retry}
            error_page 502 = @labctl_502;
            error_page 504 = @labctl_504;
            add_header X-Labctl-Dyno $labctl_dyno always;
            add_header X-Labctl-Release $labctl_release always;
        }}
{_error_location("@labctl_502", "$labctl_code_502", "labctl_page_app_error")}
{_error_location("@labctl_504", code_504, "labctl_page_app_error")}
    }}
"""


def _default_server(s: RouterSettings) -> str:
    return f"""
    # A Host that names no app: Heroku's "There's nothing here, yet." (no app, so no app log line).
    server {{
{_listen(s, default=True)}
        server_name _;
        set $labctl_app "";
        set $labctl_code "";
        location = /__labctl/generation {{
            access_log off;
            default_type text/plain;
            return 200 "{int(s.generation)}";
        }}
        location / {{
            default_type "text/html; charset=utf-8";
            return 404 $labctl_page_no_such_app;
        }}
    }}
"""


# -- access log → Heroku router line ------------------------------------------------------------------
def parse_access_line(raw: str) -> RouterEntry | None:
    """Read one line of the router's output; ``None`` for anything but one of our access-log lines."""
    start = raw.find("{")
    if start < 0 or LOG_KIND not in raw:
        return None
    try:
        d = json.loads(raw[start:])
    except ValueError:
        return None
    if not isinstance(d, dict) or d.get("kind") != LOG_KIND:
        return None
    try:
        return _entry(d)
    except (KeyError, ValueError, TypeError):
        return None


def _entry(d: dict[str, str]) -> RouterEntry:
    status = int(d["status"])
    dyno = _blank(d.get("dyno"))
    code = _blank(d.get("code")) or ("H27" if status == 499 else None)
    connected_s = _last_seconds(d.get("connect_time"))
    response_s = _last_seconds(d.get("response_time"))
    connect_ms = service_ms = None
    if _blank(d.get("upstream")):
        if connected_s is None:  # never connected: the time spent trying is the connect time (H19/H21)
            connect_ms = _to_ms(response_s)
        else:
            connect_ms = _to_ms(connected_s)
            service_ms = _to_ms(max(0.0, (response_s or 0.0) - connected_s))
    if code and code != "H27":
        nbytes = 0 if dyno else None  # the page is the router's, not the dyno's
    else:
        nbytes = int(d.get("bytes") or 0)
    release = _blank(d.get("release"))
    return RouterEntry(
        time=datetime.fromtimestamp(float(d["msec"]), tz=UTC),
        app=d.get("app", ""), method=d.get("method", ""), path=d.get("path", ""), host=d.get("host", ""),
        request_id=d.get("request_id", ""), fwd=d.get("fwd", ""), dyno=dyno or "",
        connect_ms=connect_ms, service_ms=service_ms, status=status, bytes=nbytes,
        protocol=d.get("scheme") or "http", code=code,
        desc=(_blank(d.get("desc")) or DESCRIPTIONS.get(code, "")) if code else None,
        at=_at(code), release=int(release) if release else None,
        request_ms=_to_ms(_seconds(d.get("request_time"))) or 0, upstream=_blank(d.get("upstream")) or "",
    )


def _blank(value: str | None) -> str | None:
    return None if value in (None, "", "-") else value


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if _blank(value) else None
    except ValueError:
        return None


def _last_seconds(value: str | None) -> float | None:
    """The last attempt's figure from nginx's ``a, b : c`` lists (``-``: that attempt never got there)."""
    if not _blank(value):
        return None
    return _seconds(re.split(r"[,:]", value)[-1].strip())


def _to_ms(seconds: float | None) -> int | None:
    return None if seconds is None else round(seconds * 1000)


def _at(code: str | None) -> str:
    if not code or code in INFO_CODES:
        return "info"
    return "warning" if code in WARNING_CODES else "error"


def format_router_line(e: RouterEntry) -> str:
    """The ``heroku[router]:`` message in Heroku's field order (heroku-reference §3.4), without the prefix."""
    head = [f"at={e.at}"]
    if e.code:
        head += [f"code={e.code}", f'desc="{e.desc or DESCRIPTIONS.get(e.code, "")}"']
    nbytes = "" if e.bytes is None else e.bytes
    return " ".join(head + [
        f"method={e.method}", f'path="{_quoted(e.path)}"', f"host={e.host}", f"request_id={e.request_id}",
        f'fwd="{_quoted(e.fwd)}"', f"dyno={e.dyno}", f"connect={_fmt_ms(e.connect_ms)}",
        f"service={_fmt_ms(e.service_ms)}", f"status={e.status}", f"bytes={nbytes}", f"protocol={e.protocol}",
    ])


def _quoted(text: str) -> str:
    return text.replace('"', "%22")


def _fmt_ms(ms: int | None) -> str:
    return "" if ms is None else f"{ms}ms"


_FIELD_RE = re.compile(r'(\w+)=("[^"]*"|\S*)')


def parse_router_fields(line: str) -> dict[str, str]:
    """``key=value`` pairs of a Heroku router line (quotes removed), e.g. for scenario expectations."""
    return {k: v[1:-1] if v.startswith('"') else v for k, v in _FIELD_RE.findall(line)}
