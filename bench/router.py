"""Router overhead: latency and throughput through the router vs straight to the dyno, with ``wrk``.

Both targets are the lab's own: the router on 127.0.0.1 and the dyno's sandbox address on the Docker
bridge. Latency is taken with one connection (no queueing: p50/p99 of single requests), throughput with
``THROUGHPUT_CONNECTIONS`` connections; each wrk run is bounded by ``seconds``. Runs alternate between the
two targets so that drift on a busy machine hits both alike.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass

from bench.harness import BenchError

THROUGHPUT_CONNECTIONS = 16
INSTALL_HINT = "wrk is not installed: apt-get install -y wrk (Debian/Ubuntu), or leave the group out: --skip router"
_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


@dataclass
class WrkResult:
    p50_ms: float
    p99_ms: float
    rps: float
    requests: int
    errors: int  # socket errors + non-2xx/3xx answers


def wrk_path() -> str | None:
    return shutil.which("wrk")


def parse_wrk(text: str) -> WrkResult:
    """Percentiles, requests/s and errors from ``wrk --latency`` output."""

    def pct(p: str) -> float:
        m = re.search(rf"^\s*{p}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
        if not m:
            raise BenchError(f"no {p}% line in wrk output: {text[-300:]}")
        return float(m.group(1)) * _UNITS[m.group(2)]

    rps = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M)
    total = re.search(r"^\s*(\d+) requests in", text, re.M)
    if not rps or not total:
        raise BenchError(f"unexpected wrk output: {text[-300:]}")
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", text))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    errors += int(non2xx.group(1)) if non2xx else 0
    return WrkResult(pct("50"), pct("99"), float(rps.group(1)), int(total.group(1)), errors)


def wrk(url: str, host: str | None, connections: int, seconds: float) -> WrkResult:
    threads = 1 if connections == 1 else 2
    argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "2s", "--latency"]
    if host:
        argv += ["-H", f"Host: {host}"]
    out = subprocess.run([*argv, url], capture_output=True, text=True, timeout=seconds + 30, stdin=subprocess.DEVNULL)
    if out.returncode != 0:
        raise BenchError(f"wrk failed: {out.stderr.strip() or out.stdout.strip()}")
    return parse_wrk(out.stdout)


def errors_text(*series: list[WrkResult]) -> str | None:
    """Why the runs do not count: socket errors or non-2xx answers in any run (None when there were none)."""
    bad = [r.errors for runs in series for r in runs if r.errors]
    if not bad:
        return None
    return f"wrk: {sum(bad)} socket errors or non-2xx answers in {len(bad)} run(s)"


def measure(router_url: str, host: str, direct_url: str, runs: int, seconds: float) -> dict[str, list[WrkResult]]:
    """``{"router_lat", "direct_lat", "router_thr", "direct_thr"}`` → one WrkResult per run."""
    out: dict[str, list[WrkResult]] = {"router_lat": [], "direct_lat": [], "router_thr": [], "direct_thr": []}
    for i in range(runs):
        order = [("router", router_url, host), ("direct", direct_url, None)]
        if i % 2:
            order.reverse()
        for name, url, h in order:
            out[f"{name}_lat"].append(wrk(url, h, 1, seconds))
        for name, url, h in order:
            out[f"{name}_thr"].append(wrk(url, h, THROUGHPUT_CONNECTIONS, seconds))
    return out
