"""The Heroku router as an nginx configuration: ``render_nginx_conf`` writes the whole nginx.conf.

Pure text in, text out: no Docker here (``engine/docker.py`` installs the file and reloads nginx with a SIGHUP).
The behaviour copied is heroku-reference §3 (see ``engine/router.py``); one app's blocks are rendered in
``router_nginx_app.py``.

How nginx is bent into the Heroku router's shape:

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
* no ``X-Labctl-*`` response header unless ``RouterSettings.debug_headers`` (Heroku's router sends none);
* the common router also fronts the Private Space apps (``_front_blocks``): it forwards them to their space's
  own router, rendered by this same module with ``behind_front`` (it then keeps the front's X-Forwarded-*,
  X-Request-Start and X-Request-Id instead of setting its own);
* the access log is one JSON object a line (``escape=json``); the dyno name and release come from
  ``map``s keyed on the app and the last address of ``$upstream_addr`` (the dyno that answered), unless
  a location pinned them (``$labctl_pin_dyno``: a held request, a Private Space refused connect);
* the two waits nginx cannot do itself go through the hold service (``router_hold.py``, next to nginx in
  the router container, 127.0.0.1:``HOLD_PORT``), which answers with an ``X-Accel-Redirect`` to a named
  location of the request's own configuration:
  - **boot hold** (heroku-reference §2.2, §3.5 H20): an app whose web dynos are all starting (none up) has
    no upstream; ``location /`` hands the request to the hold service, which watches the routing set
    (the ``# labctl-routes`` JSON line of this file) and sends it on to ``@labctl_held`` (a proxy to the
    address it names, so a config written before that dyno existed can still reach it) as soon as a web
    dyno is up, or to ``@labctl_H20`` once the scaled 75 s are over (``@labctl_H10`` etc. when the
    dynos stopped starting meanwhile). A request held in an old nginx worker keeps the old config after a
    reload; that is why the decision is made outside nginx and the address comes back as a variable;
  - **Private Space refused connect** (heroku-reference §3.1, §5: no retry, "request times out after
    30 s with H12"): nginx knows at once that the connect was refused, so ``@labctl_502`` lets the hold
    service sit out the rest of the first-byte window, then answers H12 naming the refusing dyno.
  Should the hold service be missing (a router container made by an older labctl), both fall back to
  answering at once (H20, H21), as before.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from labctl.engine import router_hold
from labctl.engine.router_model import (
    DESCRIPTIONS,
    EMPTY_CODES,
    LOG_KIND,
    AppRoute,
    FrontRoute,
    RouterSettings,
)
from labctl.engine.router_nginx_app import (
    _ADDR_RE,
    _APP_RE,
    _DYNO_RE,
    _PATH_RE,
    _app_blocks,
    _check,
    _listen,
    _ms,
    _unique,
)


# -- pages (no `$`, `'` or `\`: they are nginx string literals) ------------------------------------
def _page(title: str, heading: str, body: str) -> str:
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8"><title>' + title + "</title>"
        "<style>body{font-family:sans-serif;margin:4em auto;max-width:40em;color:#333}"
        "h1{font-size:1.4em}</style></head><body><h1>" + heading + "</h1><p>" + body + "</p></body></html>"
    )


APP_ERROR_PAGE = _page(
    "Application Error",
    "Application error",
    "An error occurred in the application and your page could not be served. If you are the application "
    "owner, check your logs for details. You can do this from the labctl CLI with the command "
    "<code>labctl logs --tail -a APP</code>",
)
MAINTENANCE_PAGE = _page(
    "Offline for Maintenance",
    "Offline for Maintenance",
    "This app is undergoing maintenance right now. Please check back later.",
)
NO_SUCH_APP_PAGE = _page(
    "No such app",
    "There&#39;s nothing here, yet.",
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
    "fwd": "$labctl_fwd",
    "scheme": "$labctl_proto",
    "status": "$status",
    "bytes": "$body_bytes_sent",
    "request_time": "$request_time",
    "upstream": "$upstream_addr",
    "upstream_status": "$upstream_status",
    "connect_time": "$upstream_connect_time",
    "response_time": "$upstream_response_time",
    "dyno": "$labctl_dyno_out",
    "release": "$labctl_release_out",
    "code": "$labctl_code",
    "desc": "$labctl_desc",
    "hold": "$labctl_hold",
    "pid": "$pid",
    "conn": "$connection",
}


def render_nginx_conf(routes: Sequence[AppRoute], settings: RouterSettings, fronts: Sequence[FrontRoute] = ()) -> str:
    """The whole nginx.conf for these routes. Valid with no route at all (every Host → 404).

    Meant for ``nginx -g 'daemon off;'`` as the router container's main process, logging to stdout/stderr;
    a changed config is applied by a reload (a SIGHUP to the master, ``Engine.reload_router``), which lets
    in-flight requests finish.
    """
    routes = sorted(routes, key=lambda r: r.app)
    for route in routes:
        _check(_APP_RE, route.app, "app name")
    parts = [
        _main(settings),
        _routes_line(routes),
        _timing_line(settings),
        _http_head(settings),
        _maps(routes, settings),
        _forwarded_port(settings),
    ]
    for route in routes:
        parts.append(_app_blocks(route, settings))
    parts.append(_front_blocks(fronts, settings))
    parts.append(_default_server(settings))
    parts.append("}\n")
    conf = "\n".join(parts)
    if not settings.debug_headers:  # heroku-reference §3.3: the router sends no such header; the log line says it
        conf = "\n".join(line for line in conf.split("\n") if "add_header X-Labctl-" not in line)
    return conf


def _main(s: RouterSettings) -> str:
    return (
        "# Generated by labctl (engine/router.py); rewritten on every change of the routing set.\n"
        f"worker_processes {int(s.worker_processes)};\n"
        "error_log stderr error;\n"
        "events {\n    worker_connections 4096;\n}\n"
    )


def _routes_line(routes: Sequence[AppRoute]) -> str:
    """The routing set as one JSON comment line, read by the hold service (router_hold.py)."""
    data = {
        r.app: {
            "b": [[_check(_DYNO_RE, b.dyno, "dyno name"), b.addr, int(b.release)] for b in _unique(r.backends)],
            "c": r.empty_code if r.empty_code in EMPTY_CODES else "H14",
            "m": bool(r.maintenance),
        }
        for r in routes
    }
    return router_hold.ROUTES_MARK + json.dumps(data, sort_keys=True, separators=(",", ":")) + "\n"


def _timing_line(s: RouterSettings) -> str:
    """The first-byte window as one JSON comment line, read by the hold service's watchdog (router_hold.py)."""
    data = {"first_byte_ms": max(1, round(s.first_byte_timeout_s * s.timescale * 1000))}
    return router_hold.TIMING_MARK + json.dumps(data, sort_keys=True) + "\n"


def _http_head(s: RouterSettings) -> str:
    t = s.timescale
    fields = ",".join(f'"{k}":"{v}"' for k, v in _LOG_FIELDS.items())
    tls = ""
    if s.tls_cert and s.tls_key:
        tls = (
            f"    ssl_certificate {_check(_PATH_RE, s.tls_cert, 'certificate path')};\n"
            f"    ssl_certificate_key {_check(_PATH_RE, s.tls_key, 'key path')};\n"
        )
    fwd, proto = "$proxy_add_x_forwarded_for", "$scheme"
    if s.behind_front:  # the common router in front already appended the client and knows the scheme
        fwd, proto = "$http_x_forwarded_for", "$http_x_forwarded_proto"
    return f"""http {{
    log_format labctl escape=json '{{{fields}}}';
    access_log /dev/stdout labctl;
    # The same stream as the access log, so a request's error line comes just before its access line
    # (router_log.RouterLogReader turns "upstream timed out while reading upstream" into H15, etc.).
    error_log /dev/stdout info;
    server_tokens off;
    uninitialized_variable_warn off;
    server_names_hash_bucket_size 128;
    map_hash_bucket_size 128;
    client_max_body_size 0;
{tls}
    # heroku-reference §3.2, §11: 30 s to the first byte (H12), then a rolling 55 s window (H15). nginx has
    # one read timeout, for the response header and for every later read alike: it is the rolling window
    # here, and the first-byte window is enforced by the hold service's watchdog, which aborts an upstream
    # connection that received nothing for that long (a 502 that $labctl_late turns into H12).
    proxy_connect_timeout {_ms(s.connect_timeout_s * t)};
    proxy_read_timeout {_ms(s.idle_timeout_s * t)};
    proxy_send_timeout {_ms(s.idle_timeout_s * t)};
    send_timeout {_ms(s.idle_timeout_s * t)};
    client_body_timeout {_ms(s.idle_timeout_s * t)};

    # The body streams to the dyno as on Heroku (§3.2); nginx then never retries a request whose body
    # a dyno has begun to receive.
    proxy_request_buffering off;
    # ... and the response streams to the client as the dyno writes it (a dribbling response shows its bytes;
    # the router's 1 MB response buffer, §3.2, is not copied).
    proxy_buffering off;
    proxy_intercept_errors off;
    proxy_http_version 1.1;
    proxy_set_header Connection close;

    # heroku-reference §3.3
    proxy_set_header Host $http_host;
    proxy_set_header X-Request-Id $labctl_request_id;
{_ROUTER_HEADERS}
    map $http_host $labctl_fwd {{
        default {fwd};
    }}
    map $http_host $labctl_proto {{
        default {proto};
    }}
"""


_ROUTER_HEADERS = """    proxy_set_header X-Forwarded-For $labctl_fwd;
    proxy_set_header X-Forwarded-Proto $labctl_proto;
    proxy_set_header X-Forwarded-Port $labctl_forwarded_port;
    proxy_set_header X-Request-Start $labctl_request_start;
    proxy_set_header Via "1.1 vegur";"""


def _maps(routes: Sequence[AppRoute], s: RouterSettings) -> str:
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
{_request_start(s)}
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
    # A location may pin the dyno a request was about (held by the hold service; a Private Space
    # refused connect): the last upstream address is then the hold service's.
    map $labctl_pin_dyno $labctl_dyno_out {{
        volatile;
        "" $labctl_dyno;
        default $labctl_pin_dyno;
    }}
    map $labctl_pin_release $labctl_release_out {{
        volatile;
        "" $labctl_release;
        default $labctl_pin_release;
    }}
    # Did the last attempt connect? 502: refused (H21) or closed without response (H13), unless the
    # first-byte window was over (the watchdog aborted the connection: H12);
    # 504: connect timeout (H19) or no first byte in time (H12).
    map $request_time $labctl_late {{
        volatile;
        "~{_at_least_re(round(s.first_byte_timeout_s * s.timescale * 1000))}" 1;
        default 0;
    }}
    map "$upstream_connect_time $labctl_late" $labctl_code_502 {{
        volatile;
        "~[0-9] 1$" H12;
        "~[0-9] 0$" H13;
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


def _at_least_re(ms: int) -> str:
    """A regex matching nginx's ``$request_time`` (``S.mmm``) when it is at least ``ms`` milliseconds."""
    whole, frac = divmod(max(0, int(ms)), 1000)
    digits = f"{whole}{frac:03d}"  # the time without its dot, as many digits as the threshold has
    n = len(digits) - 3

    def joined(atoms: list[str]) -> str:
        return "".join(atoms[:n]) + "[.]" + "".join(atoms[n:])

    alts = [f"[1-9][0-9]{{{n},}}[.][0-9]{{3}}"]  # more whole-second digits than the threshold
    for i, d in enumerate(digits):  # the same digits up to i, a larger one at i, anything after
        if d != "9":
            alts.append(joined([*digits[:i], f"[{int(d) + 1}-9]", *["[0-9]"] * (len(digits) - i - 1)]))
    alts.append(joined(list(digits)))  # exactly the threshold
    return "^(" + "|".join(alts) + ")$"


def _request_start(s: RouterSettings) -> str:
    if s.behind_front:  # when the common router in front received it
        return """    map $http_x_request_start $labctl_request_start {
        default $http_x_request_start;
    }"""
    return """    map $msec $labctl_request_start {
        "~^(?<labctl_s>[0-9]+)[.](?<labctl_ms>[0-9]{3})$" "$labctl_s$labctl_ms";
        default $msec;
    }"""


def _front_blocks(fronts: Sequence[FrontRoute], s: RouterSettings) -> str:
    """The common router's part for Private Space apps: forward to the space's router, which does the rest.

    The common router is the lab's only published listener (HTTP and HTTPS, where TLS ends); a space app's
    request takes one more hop, over a kept-alive connection, to its space's router, which routes it, times
    it and logs it. The front logs only what it answers itself (the space router unreachable: H99). Its read
    timeout outlasts every wait of the space router (boot hold, first byte, idle window), so it never cuts
    a response the space router keeps open. ``<space>.labctl-router.internal`` reaches the space router's
    generation check (``Engine.reload_router``).
    """
    t = s.timescale
    read = _ms(s.boot_hold() + (s.first_byte_timeout_s + s.idle_timeout_s) * t + 5)
    spaces: dict[str, str] = {}
    for f in fronts:
        spaces[_check(_APP_RE, f.space, "space name")] = _check(_ADDR_RE, f.addr + ":80", "space router address")
    parts = []
    for space, addr in sorted(spaces.items()):
        parts.append(f"""    upstream labctl_space_{space.replace("-", "_")} {{
        server {addr} max_fails=0;
        keepalive 32;
    }}
    server {{
        listen {int(s.listen_port)};
        server_name {space}.labctl-router.internal;
        access_log off;
        location / {{
            proxy_pass http://{addr};
            proxy_set_header Host labctl-router.internal;
        }}
    }}""")
    for f in sorted(fronts, key=lambda f: f.app):
        app = _check(_APP_RE, f.app, "app name")
        parts.append(f"""    server {{
{_listen(s)}
        server_name {app}.localhost;
        set $labctl_app {app};
        set $labctl_code "";
        set $labctl_hold "";
        set $labctl_pin_dyno "";
        set $labctl_pin_release "";
        # Only what the front answers itself (H99) is logged here: the space router logs the rest. One
        # line a request fewer to write, ship through the engine's log and read back (issue 18: each hop
        # costs); router_log.RouterLogReader keeps the front's error lines off other apps' requests.
        access_log /dev/stdout labctl if=$labctl_code;
        location / {{
            proxy_pass http://labctl_space_{f.space.replace("-", "_")};
            # A kept-alive connection the space router closed (its old workers go at a reload, e.g. at each
            # batch of a rolling deploy) fails before any answer: nginx retries such a cached connection once
            # on a fresh one when `error` is allowed (idempotent requests only); anything the space router
            # answered, error pages included, is passed on as is. Without it a reload cost a stray H99.
            proxy_next_upstream error;
            proxy_next_upstream_tries 2;
            proxy_read_timeout {read};
            proxy_send_timeout {read};
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Request-Id $labctl_request_id;
{_ROUTER_HEADERS.replace("    proxy_set_header", "            proxy_set_header")}
            error_page 502 504 = @labctl_front;
        }}
        location @labctl_front {{
            set $labctl_code H99;
            default_type "text/html; charset=utf-8";
            return 503 $labctl_page_app_error;
        }}
    }}""")
    return "\n".join(parts) + ("\n" if parts else "")


def _forwarded_port(s: RouterSettings) -> str:
    """X-Forwarded-Port: the port the user typed, by scheme; from the Host header when unknown."""
    if s.behind_front:
        return """
    map $scheme $labctl_forwarded_port {
        default $http_x_forwarded_port;
    }
"""
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


def _default_server(s: RouterSettings) -> str:
    return f"""
    # A Host that names no app: Heroku's "There's nothing here, yet." (no app, so no app log line).
    server {{
{_listen(s, default=True)}
        server_name _;
        set $labctl_app "";
        set $labctl_code "";
        set $labctl_hold "";
        set $labctl_pin_dyno "";
        set $labctl_pin_release "";
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
