"""Logplex's wire forms, as pure functions: drain URLs, RFC 5424 lines, octet-counted frames, the L10 notice.

What a drain receives is copied from Logplex itself (heroku-reference §11 "Log drains"; Dev Center "Log Drains"
and "HTTPS Drains"; the logplex source, ``logplex_syslog_utils`` and ``logplex_http_drain``):

- a syslog drain (``syslog://``, ``syslog+tls://``) gets ``<PRI>1 TIMESTAMP d.<token> SOURCE PROCID - - MSG\\n``
  per message, each framed as ``LEN SP MSG`` (RFC 6587 octet counting) on one TCP stream;
- an HTTPS drain gets POSTs whose body is such frames of ``<PRI>1 TIMESTAMP host SOURCE PROCID - MSG``
  (the literal host name ``host``; the token travels in the ``Logplex-Drain-Token`` header);
- when a drain's buffer (1024 messages) overflows, the oldest messages are dropped and the next delivery starts
  with ``Error L10 (output buffer overflow): N messages dropped since T.`` from ``heroku logplex``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from labctl.errors import InvalidInput

BUFFER_SIZE = 1024  # messages a drain holds before it drops the oldest (logplex.app.src: *_drain_buffer_size)
HTTP_TARGET_BYTES = 102400  # one POST's body at most, about (http_drain_target_bytes)
HTTP_TRIES = 3  # a frame is sent at most three times (http_frame_retries 2), then dropped
SCHEMES = {"syslog": 514, "syslog+tls": 6514, "http": 80, "https": 443}

# Priorities as drains see them: app output local7.info (190), the router local3.info (158), other platform
# lines (dyno manager, API) 45 as observed on real drains, the L10 notice local5.warning (172).
PRI_APP, PRI_ROUTER, PRI_PLATFORM, PRI_L10 = 190, 158, 45, 172


@dataclass(frozen=True)
class DrainUrl:
    """A drain URL checked for this machine: where to connect, and what to show."""

    url: str
    scheme: str
    host: str  # as written (a *.localhost name or a loopback address)
    port: int
    connect_host: str  # the loopback address to connect to
    path: str  # HTTP(S): path and query
    userinfo: str | None  # HTTP(S): user:password for Basic auth

    @property
    def syslog(self) -> bool:
        return self.scheme.startswith("syslog")

    @property
    def tls(self) -> bool:
        return self.scheme in ("syslog+tls", "https")


def parse_drain_url(url: Any) -> DrainUrl:
    """Check a drain URL: a known scheme, a host on this machine (a loopback address, ``localhost`` or a
    ``*.localhost`` name, RFC 6761) and a valid port. Anything else raises InvalidInput with one line."""
    if not isinstance(url, str) or not url.strip():
        raise InvalidInput("body must have a non-empty string 'url'")
    url = url.strip()
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise InvalidInput(
            f"Url {url} has an unsupported scheme: use syslog://, syslog+tls://, http:// or https:// (a log drain)"
        )
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        raise InvalidInput(f"Url {url} has an invalid port") from None
    if not host:
        raise InvalidInput(f"Url {url} has no host")
    connect = loopback_address(host)
    if connect is None:
        raise InvalidInput(
            f"Drain host {host} is not on this machine: the lab sends logs only to loopback addresses and "
            "*.localhost names"
        )
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    userinfo = parts.netloc.rpartition("@")[0] or None
    return DrainUrl(url, scheme, host, port or SCHEMES[scheme], connect, path, userinfo)


def loopback_address(host: str) -> str | None:
    """The address to connect to for ``host`` if it is this machine, else None. Names are not looked up:
    ``localhost`` and ``*.localhost`` are loopback by definition (RFC 6761), so nothing leaves the machine."""
    name = host.lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return "127.0.0.1"
    try:
        addr = ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return None
    return str(addr) if addr.is_loopback else None


def timestamp(ts: float) -> str:
    """RFC 5424 time with microseconds in UTC, as Logplex writes it: ``2026-12-07T10:00:00.000000+00:00``."""
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")


def priority(row: dict[str, Any]) -> int:
    if "pri" in row:  # the L10 notice carries its own
        return int(row["pri"])
    if row["source"] == "app" and row["dyno"] != "api":
        return PRI_APP
    return PRI_ROUTER if row["dyno"] == "router" else PRI_PLATFORM


def syslog_message(row: dict[str, Any], token: str) -> str:
    """A syslog drain's message (``logplex_syslog_utils:to_msg``): the drain token in the HOSTNAME field."""
    return f"<{priority(row)}>1 {timestamp(row['ts'])} {token} {row['source']} {row['dyno']} - - {row['msg']}\n"


def http_message(row: dict[str, Any]) -> str:
    """An HTTPS drain's message (``logplex_http_drain:rfc5424``): HOSTNAME ``host``, no structured-data field."""
    return f"<{priority(row)}>1 {timestamp(row['ts'])} host {row['source']} {row['dyno']} - {row['msg']}"


def frame(message: str) -> bytes:
    """RFC 6587 octet counting: the message's length in bytes, a space, the message."""
    data = message.encode()
    return str(len(data)).encode() + b" " + data


def overflow_row(dropped: int, since: float, now: float) -> dict[str, Any]:
    """The L10 notice as a log row from ``heroku logplex`` (``logplex_syslog_utils:overflow_msg``)."""
    stamp = datetime.fromtimestamp(since, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")
    msg = f"Error L10 (output buffer overflow): {dropped} messages dropped since {stamp}."
    return {"ts": now, "source": "heroku", "dyno": "logplex", "msg": msg, "pri": PRI_L10}


def overflow_log_line(token: str, dropped: int, since: float) -> str:
    """The same loss as the app's own log shows it: ``heroku[logplex]: Error L10 …: drain 'd.…' dropped …``."""
    return f"Error L10 (output buffer overflow): drain '{token}' dropped {dropped} messages since {timestamp(since)}."


def session_line(row: dict[str, Any]) -> str:
    """A log session's line, as ``heroku logs`` prints it: ``2026-…+00:00 app[web.1]: message``."""
    return f"{timestamp(row['ts'])} {row['source']}[{row['dyno']}]: {row['msg']}"


def row_matches(row: dict[str, Any], dyno: str | None, ptype: str | None, source: str | None) -> bool:
    """A log session's filters: ``dyno`` is a dyno (``web.1``) or a process type (``web``, ``router``)."""
    if source and row["source"] != source:
        return False
    if dyno and row["dyno"] != dyno and row["dyno"].split(".")[0] != dyno:
        return False
    return not (ptype and row["dyno"].split(".")[0] != ptype)
