"""One HTTP/1.1 exchange with the lab's controller on 127.0.0.1, over a plain socket (the API client's transport).

The controller's API (``labctl/controller/api.py``, ``http.server``) answers JSON with a ``Content-Length``, and
streams (ndjson, a build's text) until it closes the connection; it never uses the chunked coding, and this
reader refuses it rather than guess. The standard library's ``http.client`` reads the same answers, but importing
it (with the ``email`` header parser and ``ssl`` it pulls in) was ~20 ms of the ~140 ms ``labctl ps`` spent
starting (issue 18), more than the call itself.

Every failure is an ``OSError``: the socket's own (refused, reset, ``TimeoutError``) or ``BadAnswer``.
"""

from __future__ import annotations

import socket
from typing import BinaryIO

MAX_LINE = 65536  # as http.client: a status or header line longer than this is not an answer
MAX_HEADERS = 100


class BadAnswer(OSError):
    """The answer is not HTTP/1.x as the controller sends it (cut short, garbled, chunked)."""


class Response:
    """An answer whose status line and headers are read; its body is read on demand."""

    def __init__(self, sock: socket.socket, fp: BinaryIO, status: int, headers: dict[str, str], method: str):
        self._sock, self._fp = sock, fp
        self.status = status
        self.headers = headers  # names in lower case; a repeated header keeps its last value
        if "chunked" in headers.get("transfer-encoding", "").lower():
            self.close()
            raise BadAnswer("chunked transfer coding (the controller never sends it)")
        self._left: int | None = None  # bytes of the body still to read; None: until the connection closes
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            self._left = 0
        elif "content-length" in headers:
            value = headers["content-length"]
            if not value.isdigit():
                self.close()
                raise BadAnswer(f"Content-Length {value!r}")
            self._left = int(value)

    def getheader(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)

    def read(self) -> bytes:
        """The rest of the body."""
        data = self._fp.read() if self._left is None else self._fp.read(self._left)
        if self._left is not None:
            if len(data) < self._left:
                raise BadAnswer(f"answer cut short: {len(data)} of {self._left} bytes")
            self._left = 0
        return data

    def readline(self) -> bytes:
        """The body's next line with its ``\\n``, or what is left of it; ``b""`` at its end."""
        if self._left is None:
            return self._fp.readline()
        line = self._fp.readline(self._left) if self._left else b""
        self._left -= len(line)
        return line

    def close(self) -> None:
        self._fp.close()
        self._sock.close()


def request(
    host: str,
    port: int,
    method: str,
    target: str,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    timeout: float | None = None,
) -> Response:
    """Send ``method target`` to ``host:port`` and read the answer's head (``timeout``: per socket call)."""
    head = [f"{method} {target} HTTP/1.1", f"Host: {host}:{port}", "Connection: close"]
    head += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if body is not None or method in ("POST", "PUT", "PATCH"):
        head.append(f"Content-Length: {len(body or b'')}")
    # an ASCII host as bytes (getaddrinfo takes both): for a str it loads the idna codec, ~1 ms of every CLI start
    address = (host.encode() if host.isascii() else host, port)
    sock = socket.create_connection(address, timeout=timeout)  # type: ignore[arg-type]
    try:
        sock.sendall("\r\n".join(head).encode("latin-1") + b"\r\n\r\n" + (body or b""))
        fp = sock.makefile("rb")
        status, fields = _head(fp)
    except BaseException:
        sock.close()
        raise
    return Response(sock, fp, status, fields, method)


def _head(fp: BinaryIO) -> tuple[int, dict[str, str]]:
    """The status and the headers of an answer."""
    parts = _line(fp).split(None, 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit() or len(parts[1]) != 3:
        raise BadAnswer(f"not an HTTP answer: {' '.join(parts)[:80]!r}")
    fields: dict[str, str] = {}
    for _ in range(MAX_HEADERS + 1):
        line = _line(fp)
        if not line:
            return int(parts[1]), fields
        name, sep, value = line.partition(":")
        if not sep:
            raise BadAnswer(f"not a header line: {line[:80]!r}")
        fields[name.strip().lower()] = value.strip()
    raise BadAnswer(f"more than {MAX_HEADERS} headers")


def _line(fp: BinaryIO) -> str:
    raw = fp.readline(MAX_LINE + 1)
    if not raw:
        raise BadAnswer("the connection closed before the answer")
    if len(raw) > MAX_LINE:
        raise BadAnswer("a header line too long")
    return raw.decode("latin-1").rstrip("\r\n")
