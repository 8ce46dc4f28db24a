"""One app's part of the router's nginx.conf: its ``upstream``, its ``server`` block, the named locations
that turn a failed proxy into an H-code, and the hand-offs to the hold service (``router_hold.py``).
Also the checks every value rendered into nginx.conf passes. ``router_nginx.py`` assembles the whole file;
its docstring says how nginx is bent into the Heroku router's shape (heroku-reference §3).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from labctl.engine import router_hold
from labctl.engine.router_model import EMPTY_CODES, HOLD_ADDR, MAX_TRIES, AppRoute, Backend, RouterSettings

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


def _error_location(name: str, code: str, page: str) -> str:
    return f"""        location {name} {{
            set $labctl_code {code};
            default_type "text/html; charset=utf-8";
            add_header X-Labctl-Error $labctl_code always;
            add_header X-Labctl-Dyno $labctl_dyno_out always;
            return 503 ${page};
        }}"""


def _hold_proxy(mode: str, limit_s: float, fallback: str, extra: Sequence[str] = ()) -> str:
    """Directives handing a request to the hold service; only headers go there, nginx keeps the body.

    The service learns how long the request has been in the router (``$request_time``) and the window.
    """
    limit_ms = max(1, round(limit_s * 1000))
    headers = [
        f"X-Labctl-Hold {mode}",
        "X-Labctl-Elapsed $request_time",
        f"X-Labctl-Limit-Ms {limit_ms}",
        'Content-Length ""',
        "Connection close",
        *extra,
    ]
    lines = [
        f"set $labctl_hold {mode};",
        f"proxy_pass http://{HOLD_ADDR};",
        "proxy_method GET;",
        "proxy_pass_request_headers off;",
        "proxy_pass_request_body off;",
        "proxy_request_buffering on;",
        "proxy_next_upstream off;",
        "proxy_connect_timeout 1s;",
        f"proxy_read_timeout {_ms(limit_s + 5)};",
        *(f"proxy_set_header {h};" for h in headers),
        f"error_page 502 504 = {fallback};",
    ]
    return "\n".join(f"            {line}" for line in lines)


def _app_blocks(route: AppRoute, s: RouterSettings) -> str:
    backends = _unique(route.backends)
    head = f"""    server {{
{_listen(s)}
        server_name {route.app}.localhost;
        set $labctl_app {route.app};
        set $labctl_code "";
        set $labctl_hold "";
        set $labctl_pin_dyno "";
        set $labctl_pin_release "";
"""
    if route.maintenance:
        body = _error_location("/", "H80", "labctl_page_maintenance")
        return head + body + "\n    }\n"
    if not backends:
        code = route.empty_code if route.empty_code in EMPTY_CODES else "H14"
        if code == "H20":
            return head + _hold_blocks(route, s) + "\n    }\n"
        return head + _error_location("/", code, "labctl_page_app_error") + "\n    }\n"
    upstream = f"labctl_app_{route.app}"
    # Private Space: no retry on another dyno; a connect that never completes ends as H12 when the
    # 30 s first-byte window runs out (heroku-reference §3.1, §5); a refused one too (_upstream_errors).
    retry = f"proxy_next_upstream off;\n            proxy_connect_timeout {_ms(s.first_byte_timeout_s * s.timescale)};"
    if route.retry:
        # Retries must stop before a first-byte timeout can happen, else an H12 would be retried on
        # another dyno: nginx retries a GET that already reached a dyno (proxy_request_buffering off
        # only protects requests with a body), so bound the retry window by the first-byte timeout.
        retry = (
            f"proxy_next_upstream error timeout;\n"
            f"            proxy_next_upstream_tries {min(MAX_TRIES, len(backends))};\n"
            f"            proxy_next_upstream_timeout {_ms(s.first_byte_timeout_s * s.timescale)};"
        )
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
            add_header X-Labctl-Dyno $labctl_dyno_out always;
            add_header X-Labctl-Release $labctl_release_out always;
        }}
{_upstream_errors(route, s)}
    }}
"""


def _upstream_errors(route: AppRoute, s: RouterSettings) -> str:
    """``@labctl_502`` / ``@labctl_504``: the H-code of a failed proxy to a dyno."""
    page = "labctl_page_app_error"
    if route.retry:
        return "\n".join(
            [
                _error_location("@labctl_502", "$labctl_code_502", page),
                _error_location("@labctl_504", "$labctl_code_504", page),
            ]
        )
    # Private Space (heroku-reference §3.1, §5): no retry on another dyno, "request times out after 30 s
    # with H12". A refused connect (H21 to nginx) sits out the rest of the first-byte window in the hold
    # service, then answers H12 naming the dyno; a dyno that accepted and closed (H13) answers at once.
    first_byte = s.first_byte_timeout_s * s.timescale
    wait = _hold_proxy("wait", first_byte, "@labctl_now", ["X-Labctl-Code $labctl_code"])
    return f"""        location @labctl_502 {{
            set $labctl_code $labctl_code_502;
            set $labctl_pin_dyno $labctl_dyno_out;
            set $labctl_pin_release $labctl_release_out;
            recursive_error_pages on;
{wait}
        }}
{_error_location("@labctl_now", "$labctl_code", page)}
{_error_location("@labctl_H12", "H12", page)}
{_error_location("@labctl_504", "H12", page)}"""


def _hold_blocks(route: AppRoute, s: RouterSettings) -> str:
    """An app whose web dynos are all starting: requests wait for one (heroku-reference §2.2, §3.5 H20).

    The hold service (router_hold.py) decides; see ``router_nginx.py``'s docstring for why nginx cannot.
    """
    hold = _hold_proxy(
        "boot", s.boot_hold(), "@labctl_H20", ["X-Labctl-App $labctl_app", "X-Request-Start $labctl_request_start"]
    )
    connect = ""
    if not route.retry:  # as for the Private Space upstream: a connect may take the whole first-byte window
        connect = f"\n            proxy_connect_timeout {_ms(s.first_byte_timeout_s * s.timescale)};"
    page = "labctl_page_app_error"
    codes = [_error_location(f"@labctl_{code}", code, page) for code in router_hold.CODE_LOCATIONS if code != "H80"]
    return f"""        location / {{
{hold}
        }}
        location @labctl_held {{
            set $labctl_held_addr $upstream_http_x_labctl_addr;
            set $labctl_pin_dyno $upstream_http_x_labctl_dyno;
            set $labctl_pin_release $upstream_http_x_labctl_release;
            proxy_pass http://$labctl_held_addr;
            proxy_next_upstream off;{connect}
            error_page 502 = @labctl_502;
            error_page 504 = @labctl_504;
            add_header X-Labctl-Dyno $labctl_dyno_out always;
            add_header X-Labctl-Release $labctl_release_out always;
        }}
{_upstream_errors(route, s)}
{chr(10).join(codes)}
{_error_location("@labctl_H80", "H80", "labctl_page_maintenance")}
        location @labctl_gone {{
            default_type "text/html; charset=utf-8";
            return 404 $labctl_page_no_such_app;
        }}"""
