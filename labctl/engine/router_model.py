"""The router's vocabulary: its error codes, where things live in the router container, and the values
passed between the dyno manager, the nginx configuration (``router_nginx.py``) and the access log
(``router_log.py``). ``engine/router.py`` is the public face of all of these.

The router container runs nginx in the foreground and the hold service (``router_hold.py``) beside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from labctl.engine import router_hold

LOG_KIND = "labctl-router"  # marks our access-log lines among nginx's other output

# heroku-reference §3.5
DESCRIPTIONS = {
    "H10": "App crashed",
    "H12": "Request timeout",
    "H13": "Connection closed without response",
    "H14": "No web dynos running",
    "H15": "Idle connection",
    "H18": "Server Request Interrupted",
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
SOCK = {"H18": "backend", "H27": "client"}  # heroku-reference §3.4, §11: `sock=` leads these lines
EMPTY_CODES = frozenset({"H10", "H14", "H20", "H81", "H99"})
MAX_TRIES = 10  # heroku-reference §3.1: up to 10 attempts, or the number of dynos if fewer
CONF_PATH = "/etc/nginx/nginx.conf"  # inside the router container
HOLD_SCRIPT = "/etc/nginx/labctl-hold.py"  # router_hold.py, copied in when the router container is made
HOLD_PORT = 8099  # the hold service listens on the router container's loopback only
HOLD_ADDR = f"127.0.0.1:{HOLD_PORT}"


def router_command() -> list[str]:
    """The router container's command: nginx in the foreground, the hold service beside it (restarted if it dies).

    A reload is a SIGHUP (``Engine.reload_router``). One that comes before nginx has set up its handlers would
    end the container (the default action), so HUP is ignored until then: nginx installs its own handler at
    start, and a lost HUP is made up for by the reload's fallback (``nginx -s reload``).
    """
    hold = f"while :; do python3 {HOLD_SCRIPT} {HOLD_PORT} {CONF_PATH}; sleep 1; done"
    return ["sh", "-c", f"trap '' HUP; ({hold}) & exec nginx -g 'daemon off;'"]


def hold_script() -> str:
    """The hold service's source, installed at ``HOLD_SCRIPT`` in the router container."""
    return Path(router_hold.__file__).read_text(encoding="utf-8")


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
class FrontRoute:
    """A Private Space app as the common router sees it: forwarded to its space's router (``addr``, port 80)."""

    app: str
    space: str
    addr: str  # the space router's address on the space network


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
    boot_hold_s: float = 75.0  # H20: how long a request waits for a starting web dyno (heroku-reference §2.2)
    boot_hold_floor_s: float = 0.0  # lab floor of the scaled hold (the controller's boot-timeout floor + the rest)
    behind_front: bool = False  # a space router: the common router in front set X-Forwarded-*, X-Request-*
    debug_headers: bool = False  # add X-Labctl-Dyno/-Release/-Error to responses (off: Heroku sends none)

    def boot_hold(self) -> float:
        """The scaled boot hold, in seconds."""
        return max(self.boot_hold_s * self.timescale, self.boot_hold_floor_s)


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
