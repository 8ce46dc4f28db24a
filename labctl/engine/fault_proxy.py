"""The fault proxy: TCP toxics in user space, with Toxiproxy's semantics, inside one network namespace.

Standard library only and no labctl imports: ``engine/faults.py`` copies this file into a sandbox (the
instance end) or into the router container (the router end) and starts it with the stack's python3. An
iptables ``nat`` REDIRECT sends the path's new TCP connections to ``PORT``; the proxy reads the original
destination (``SO_ORIGINAL_DST``), connects there itself (its socket carries ``MARK`` so the router end's
REDIRECT lets it through), and applies the toxics of its configuration file to the two streams:

* ``req``: bytes from the connecting side (the router) towards the dyno;
* ``resp``: bytes from the dyno back.

The configuration (JSON, rewritten by labctl, re-read when it changes) is ``{"toxics": [...]}``; each
toxic is ``{"kind", "streams": ["req"|"resp"...], "nets": ["10.1.2.3/32"...] (empty: any destination),
...params}``. A connection takes the toxics in force when it is accepted. Kinds (Toxiproxy's names in
brackets):

* ``latency`` [latency]: every chunk of the stream is held ``ms`` ± ``jitter`` (uniform) after it arrived,
  order kept. Toxiproxy draws the jitter per chunk; here it is drawn once per connection and stream (the
  router opens a connection per request), so a response in several chunks is not held by the largest of
  several draws and ``--jitter`` widens the spread of request times by what it says;
* ``bandwidth`` [bandwidth]: the stream runs at ``kbit`` kbit/s;
* ``slow-close`` [slow_close]: the close of the stream is held ``ms``;
* ``limit-data`` [limit_data]: the connection is closed once ``bytes`` bytes went through the stream;
* ``timeout`` [timeout 0]: the connection is accepted, nothing goes anywhere, it is never closed by us;
* ``reset`` [reset_peer 0]: the connection is accepted, the request read, then reset (RST).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import random
import socket
import struct
import sys
import time
from typing import Any

PORT = 9099  # dyno ports are 10000-60000; the router's hold service is 8099
MARK = 0x1AB  # the proxy's own connections; the router end's REDIRECT skips them
SO_ORIGINAL_DST = 80
CHUNK = 16384


class Config:
    def __init__(self, path: str):
        self.path = path
        self.seen: tuple[int, int, int] | None = None
        self.toxics: list[dict[str, Any]] = []

    def refresh(self) -> None:
        """Re-read the file when it changed (labctl replaces it with ``mv``: a new inode each time); a bad
        file keeps the last good configuration."""
        try:
            st = os.stat(self.path)
            seen = (st.st_ino, st.st_mtime_ns, st.st_size)
            if seen == self.seen:
                return
            with open(self.path) as f:
                toxics = json.load(f)["toxics"]
            if not isinstance(toxics, list) or not all(isinstance(t, dict) and "kind" in t for t in toxics):
                raise ValueError("toxics must be a list of objects with a kind")
            self.toxics, self.seen = toxics, seen
        except (OSError, ValueError, KeyError, TypeError) as err:
            print(f"fault proxy: config {self.path}: {err}", file=sys.stderr, flush=True)

    def for_dest(self, ip: str) -> list[dict[str, Any]]:
        addr = ipaddress.ip_address(ip)
        out = []
        for t in self.toxics:
            nets = t.get("nets") or []
            if not nets or any(addr in ipaddress.ip_network(n, strict=False) for n in nets):
                out.append(t)
        return out


def original_dst(sock: socket.socket) -> tuple[str, int]:
    raw = sock.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
    port, packed = struct.unpack_from("!2xH4s", raw)
    return socket.inet_ntoa(packed), port


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, toxics: list[dict[str, Any]]) -> None:
    """Copy one stream with its toxics; close the writer at the end (after ``slow-close``)."""
    lat = next((t for t in toxics if t["kind"] == "latency"), None)
    bw = min((float(t["kbit"]) for t in toxics if t["kind"] == "bandwidth"), default=None)
    limit = min((int(t["bytes"]) for t in toxics if t["kind"] == "limit-data"), default=None)
    slow_close = max((float(t["ms"]) for t in toxics if t["kind"] == "slow-close"), default=0.0)
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    delay = 0.0
    if lat is not None:  # drawn once per connection and stream (see the module's docstring)
        jitter = float(lat.get("jitter") or 0)
        delay = max(0.0, float(lat["ms"]) + random.uniform(-jitter, jitter)) / 1000.0

    async def read() -> None:
        try:
            while True:
                data = await reader.read(CHUNK)
                if not data:
                    break
                await queue.put((time.monotonic() + delay, data))
        except (ConnectionError, OSError):
            pass
        await queue.put((0.0, b""))

    reading = asyncio.ensure_future(read())
    sent = 0
    try:
        while True:
            due, data = await queue.get()
            if not data:
                break
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if limit is not None and sent + len(data) >= limit:
                data = data[: max(limit - sent, 0)]
            if bw is not None and data:
                await asyncio.sleep(len(data) * 8 / (bw * 1000.0))
            writer.write(data)
            await writer.drain()
            sent += len(data)
            if limit is not None and sent >= limit:
                raise ConnectionAbortedError("limit-data")
        if slow_close > 0:
            await asyncio.sleep(slow_close / 1000.0)
        if writer.can_write_eof():
            writer.write_eof()
    finally:
        reading.cancel()


def reset(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.close()


async def handle(config: Config, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
    upstream: asyncio.StreamWriter | None = None
    try:
        config.refresh()
        dst = original_dst(cwriter.get_extra_info("socket"))
        toxics = config.for_dest(dst[0])
        kinds = {t["kind"] for t in toxics}
        if "timeout" in kinds:  # accepted, then nothing: read and drop until the peer gives up
            while await creader.read(CHUNK):
                pass
            return
        if "reset" in kinds:  # accepted, the request read (up to a second), then RST
            try:
                await asyncio.wait_for(creader.read(CHUNK), 1.0)
            except TimeoutError:
                pass
            reset(cwriter)
            return
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, MARK)
        except OSError:
            pass  # without NET_ADMIN; only the router end needs the mark
        sock.setblocking(False)
        try:
            await asyncio.get_running_loop().sock_connect(sock, dst)
        except OSError:
            sock.close()
            reset(cwriter)  # the dyno refused: the router sees the connection fail
            return
        ureader, upstream = await asyncio.open_connection(sock=sock)
        req = [t for t in toxics if "req" in (t.get("streams") or ())]
        resp = [t for t in toxics if "resp" in (t.get("streams") or ())]
        tasks = [
            asyncio.ensure_future(pipe(creader, upstream, req)),
            asyncio.ensure_future(pipe(ureader, cwriter, resp)),
        ]
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        if any(t.exception() is not None for t in done if not t.cancelled()):
            for t in pending:
                t.cancel()
        else:
            await asyncio.gather(*pending, return_exceptions=True)
    except (ConnectionError, OSError, asyncio.CancelledError):
        pass
    finally:
        for w in (upstream, cwriter):
            if w is not None:
                try:
                    w.close()
                except OSError:
                    pass


async def main(port: int, path: str) -> None:
    config = Config(path)
    config.refresh()
    server = await asyncio.start_server(lambda r, w: handle(config, r, w), "0.0.0.0", port, backlog=512)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
    except KeyboardInterrupt:
        pass
