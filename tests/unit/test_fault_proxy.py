"""The fault proxy's toxics without Docker or iptables: the proxy runs on loopback with ``original_dst``
pointed at a local echo-like server, and each toxic is measured from a client (times, bytes, resets)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from labctl.engine import fault_proxy as fp

BODY = b"x" * 5000


async def _serve_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A dyno: reads the request line, answers BODY in two writes, closes."""
    await reader.readline()
    writer.write(BODY[:100])
    await writer.drain()
    writer.write(BODY[100:])
    await writer.drain()
    writer.close()


async def _exchange(tmp_path: Path, toxics: list[dict[str, Any]], monkeypatch) -> tuple[float, bytes, str]:
    """One request through the proxy: (seconds until the peer closed, bytes received, how it ended)."""
    dyno = await asyncio.start_server(_serve_once, "127.0.0.1", 0)
    dst = dyno.sockets[0].getsockname()[:2]
    monkeypatch.setattr(fp, "original_dst", lambda sock: dst)
    conf = tmp_path / "proxy.json"
    conf.write_text(json.dumps({"toxics": toxics}))
    config = fp.Config(str(conf))
    proxy = await asyncio.start_server(lambda r, w: fp.handle(config, r, w), "127.0.0.1", 0)
    port = proxy.sockets[0].getsockname()[1]
    t0 = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.0\r\n\r\n")
    await writer.drain()
    got, how = b"", "eof"
    try:
        while chunk := await asyncio.wait_for(reader.read(65536), 3.0):
            got += chunk
    except ConnectionResetError:
        how = "reset"
    except TimeoutError:
        how = "silence"
    took = time.monotonic() - t0
    writer.close()
    proxy.close()
    dyno.close()
    return took, got, how


def exchange(tmp_path: Path, monkeypatch, *toxics: dict[str, Any]) -> tuple[float, bytes, str]:
    return asyncio.run(_exchange(tmp_path, list(toxics), monkeypatch))


def test_no_toxic_passes_everything(tmp_path, monkeypatch):
    took, got, how = exchange(tmp_path, monkeypatch)
    assert (got, how) == (BODY, "eof") and took < 0.5


def test_latency_holds_the_response_once_per_connection(tmp_path, monkeypatch):
    took, got, how = exchange(tmp_path, monkeypatch, {"kind": "latency", "ms": 300, "jitter": 0, "streams": ["resp"]})
    assert got == BODY and how == "eof" and 0.3 <= took < 0.55  # two chunks, one delay
    took, got, _ = exchange(tmp_path, monkeypatch, {"kind": "latency", "ms": 300, "jitter": 0, "streams": ["req"]})
    assert got == BODY and 0.3 <= took < 0.55


def test_latency_for_another_destination_does_not_apply(tmp_path, monkeypatch):
    toxic = {"kind": "latency", "ms": 500, "streams": ["resp"], "nets": ["10.9.9.9/32"]}
    took, got, _ = exchange(tmp_path, monkeypatch, toxic)
    assert got == BODY and took < 0.3


def test_limit_data_cuts_the_response(tmp_path, monkeypatch):
    _, got, _ = exchange(tmp_path, monkeypatch, {"kind": "limit-data", "bytes": 1000, "streams": ["resp"]})
    assert got == BODY[:1000]


def test_slow_close_holds_the_close(tmp_path, monkeypatch):
    took, got, how = exchange(tmp_path, monkeypatch, {"kind": "slow-close", "ms": 400, "streams": ["resp"]})
    assert got == BODY and how == "eof" and 0.4 <= took < 0.7


def test_bandwidth_paces_the_stream(tmp_path, monkeypatch):
    took, got, _ = exchange(tmp_path, monkeypatch, {"kind": "bandwidth", "kbit": 100, "streams": ["resp"]})
    assert got == BODY and 0.35 <= took < 0.8  # 5000 bytes at 100 kbit/s = 0.4 s


def test_reset_and_timeout(tmp_path, monkeypatch):
    took, got, how = exchange(tmp_path, monkeypatch, {"kind": "reset", "streams": []})
    assert (got, how) == (b"", "reset") and took < 0.5
    took, got, how = exchange(tmp_path, monkeypatch, {"kind": "timeout", "streams": []})
    assert (got, how) == (b"", "silence") and took >= 3.0


@pytest.mark.parametrize("text", ["{not json", '{"toxics": 5}'])
def test_a_bad_config_keeps_the_last_good_one(tmp_path, text):
    conf = tmp_path / "proxy.json"
    conf.write_text(json.dumps({"toxics": [{"kind": "reset"}]}))
    c = fp.Config(str(conf))
    c.refresh()
    conf.write_text(text)
    c.refresh()
    assert c.toxics == [{"kind": "reset"}]
