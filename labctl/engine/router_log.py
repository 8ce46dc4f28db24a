"""The router's access log read back as Heroku router lines (heroku-reference §3.4).

nginx writes one JSON object a line (the ``log_format`` in ``router_nginx.py``); ``parse_access_line`` reads
one back into a ``RouterEntry`` and ``format_router_line`` prints it as the ``heroku[router]:`` message.

What went wrong after the response began is not in the access log: nginx says it in its error log, which
goes to the same stream just before the request's access line. ``RouterLogReader`` keeps the last such
line per connection (``pid`` and ``*N`` connection number, also in the access line) and turns it into the
code (heroku-reference §3.2, §3.5, §11): the rolling read window ran out → H15 "Idle connection"; the dyno
closed or reset the socket mid-response → H18 "Server Request Interrupted" (``sock=backend``); the client
went away → H27 "Client Request Interrupted" (``sock=client``, status 499). The client already has the
dyno's status line then; the router line says 503 as Heroku's does.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import UTC, datetime

from labctl.engine.router_model import (
    DESCRIPTIONS,
    EMPTY_CODES,
    INFO_CODES,
    LOG_KIND,
    SOCK,
    WARNING_CODES,
    RouterEntry,
)

# nginx's error log: "2026/12/07 15:23:18 [error] 19#19: *9 upstream prematurely closed connection while …"
_ERROR_RE = re.compile(r"\[(?:error|info|warn|alert|crit)\] (\d+)#\d+: \*(\d+) (.*)$")
_HOST_RE = re.compile(r', host: "([^"]*)"')  # the request's Host header, in nginx's error context
_PENDING_MAX = 1024  # reasons waiting for their access line (one per connection, the oldest dropped)


def error_reason(raw: str) -> tuple[tuple[str, str], str] | None:
    """``((pid, connection), code)`` for an nginx error line that explains a broken response, else ``None``."""
    found = _error_line(raw)
    return (found[0], found[1]) if found else None


def _error_line(raw: str) -> tuple[tuple[str, str], str, str] | None:
    """``error_reason`` and the request's host as the error line names it (``""`` when it names none)."""
    m = _ERROR_RE.search(raw)
    if not m:
        return None
    code = _code_of(m.group(3))
    if not code:
        return None
    host = _HOST_RE.search(m.group(3))
    return (m.group(1), m.group(2)), code, _bare_host(host.group(1)) if host else ""


def _bare_host(host: str) -> str:
    """A Host header as nginx's ``$host`` has it: lower case, without the port."""
    return host.rsplit(":", 1)[0].lower() if not host.startswith("[") else host.lower()


def _code_of(message: str) -> str | None:
    """The code of an nginx error message about a response already under way (its header was read)."""
    if "response header" in message:  # before the first byte: the status decides (H12, H13, …)
        return None
    if "upstream prematurely closed connection" in message:
        return "H18"
    if "upstream timed out" in message:
        return "H15"
    if "client prematurely closed connection" in message or "while sending to client" in message:
        return "H27"
    if "recv() failed" in message and "while reading upstream" in message:  # the dyno reset the connection
        return "H18"
    return None


class RouterLogReader:
    """Reads the router's output line by line: access lines become entries, with the code its error line gave."""

    def __init__(self) -> None:
        self.pending: dict[tuple[str, str], tuple[str, str]] = {}  # (pid, conn) -> (code, host)

    def feed(self, raw: str) -> RouterEntry | None:
        reason = _error_line(raw)
        if reason is not None:
            key, code, host = reason
            self.pending.pop(key, None)
            self.pending[key] = (code, host)
            while len(self.pending) > _PENDING_MAX:
                self.pending.pop(next(iter(self.pending)))
            return None
        entry, conn = _parse(raw)
        if entry is None:
            return None
        why, host = self.pending.pop(conn, ("", "")) if conn else ("", "")
        # The common router logs no line for a request it forwarded to a space router (the space router logs
        # it): an error line about such a request names that app's host, never the host of a later request of
        # the same client connection, which it must not mark.
        if host and host != entry.host.lower():
            why = ""
        if why and not entry.code and entry.dyno:
            status = 499 if why == "H27" else 503
            entry = replace(entry, code=why, desc=DESCRIPTIONS[why], at=_at(why), status=status)
        return entry


# -- access log → Heroku router line ------------------------------------------------------------------
def parse_access_line(raw: str) -> RouterEntry | None:
    """Read one line of the router's output; ``None`` for anything but one of our access-log lines."""
    return _parse(raw)[0]


def _parse(raw: str) -> tuple[RouterEntry | None, tuple[str, str] | None]:
    start = raw.find("{")
    if start < 0 or LOG_KIND not in raw:
        return None, None
    try:
        d = json.loads(raw[start:])
    except ValueError:
        return None, None
    if not isinstance(d, dict) or d.get("kind") != LOG_KIND:
        return None, None
    try:
        return _entry(d), (str(d.get("pid", "")), str(d.get("conn", "")))
    except (KeyError, ValueError, TypeError):
        return None, None


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
    if code in EMPTY_CODES or code in INFO_CODES:  # no dyno involved (a held request may have waited for one)
        dyno, connect_ms, service_ms = None, None, None
    elif code == "H12" and _blank(d.get("hold")) == "wait":  # a Private Space refused connect sat out the window
        connect_ms, service_ms = None, _to_ms(_seconds(d.get("request_time")))
    if code and code != "H27":
        nbytes = 0 if dyno else None  # the page is the router's, not the dyno's
    else:
        nbytes = int(d.get("bytes") or 0)
    release = _blank(d.get("release"))
    return RouterEntry(
        time=datetime.fromtimestamp(float(d["msec"]), tz=UTC),
        app=d.get("app", ""),
        method=d.get("method", ""),
        path=d.get("path", ""),
        host=d.get("host", ""),
        request_id=d.get("request_id", ""),
        fwd=d.get("fwd", ""),
        dyno=dyno or "",
        connect_ms=connect_ms,
        service_ms=service_ms,
        status=status,
        bytes=nbytes,
        protocol=d.get("scheme") or "http",
        code=code,
        desc=(_blank(d.get("desc")) or DESCRIPTIONS.get(code, "")) if code else None,
        at=_at(code),
        release=int(release) if release else None,
        request_ms=_to_ms(_seconds(d.get("request_time"))) or 0,
        upstream=_blank(d.get("upstream")) or "",
    )


def _blank(value: str | None) -> str | None:
    return None if value in (None, "", "-") else value


def _seconds(value: str | None) -> float | None:
    text = _blank(value)
    try:
        return float(text) if text else None
    except ValueError:
        return None


def _last_seconds(value: str | None) -> float | None:
    """The last attempt's figure from nginx's ``a, b : c`` lists (``-``: that attempt never got there)."""
    text = _blank(value)
    if not text:
        return None
    return _seconds(re.split(r"[,:]", text)[-1].strip())


def _to_ms(seconds: float | None) -> int | None:
    return None if seconds is None else round(seconds * 1000)


def _at(code: str | None) -> str:
    if not code or code in INFO_CODES:
        return "info"
    return "warning" if code in WARNING_CODES else "error"


def format_router_line(e: RouterEntry) -> str:
    """The ``heroku[router]:`` message in Heroku's field order (heroku-reference §3.4), without the prefix."""
    head = [f"sock={SOCK[e.code]}"] if e.code in SOCK else []
    head += [f"at={e.at}"]
    if e.code:
        head += [f"code={e.code}", f'desc="{e.desc or DESCRIPTIONS.get(e.code, "")}"']
    nbytes = "" if e.bytes is None else e.bytes
    return " ".join(
        head
        + [
            f"method={e.method}",
            f'path="{_quoted(e.path)}"',
            f"host={e.host}",
            f"request_id={e.request_id}",
            f'fwd="{_quoted(e.fwd)}"',
            f"dyno={e.dyno}",
            f"connect={_fmt_ms(e.connect_ms)}",
            f"service={_fmt_ms(e.service_ms)}",
            f"status={e.status}",
            f"bytes={nbytes}",
            f"protocol={e.protocol}",
        ]
    )


def _quoted(text: str) -> str:
    return text.replace('"', "%22")


def _fmt_ms(ms: int | None) -> str:
    return "" if ms is None else f"{ms}ms"


_FIELD_RE = re.compile(r'(\w+)=("[^"]*"|\S*)')


def parse_router_fields(line: str) -> dict[str, str]:
    """``key=value`` pairs of a Heroku router line (quotes removed), e.g. for scenario expectations."""
    return {k: v[1:-1] if v.startswith('"') else v for k, v in _FIELD_RE.findall(line)}
