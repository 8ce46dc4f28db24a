"""The router's access log read back as Heroku router lines (heroku-reference §3.4).

nginx writes one JSON object a line (the ``log_format`` in ``router_nginx.py``); ``parse_access_line`` reads
one back into a ``RouterEntry`` and ``format_router_line`` prints it as the ``heroku[router]:`` message.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

from labctl.engine.router_model import DESCRIPTIONS, EMPTY_CODES, INFO_CODES, LOG_KIND, WARNING_CODES, RouterEntry


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
    head = [f"at={e.at}"]
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
