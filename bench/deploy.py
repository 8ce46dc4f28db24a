"""Deploy times (the labctl side; the raw twin is in bench/raw.py) and a preboot deploy under load."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import requests

from bench.harness import BenchError, BenchLab, wait_for

REPO = Path(__file__).resolve().parents[1]
SAMPLE_APP = REPO / "images" / "sample-app"


def timed_deploy(lab: BenchLab, app: str, src: Path) -> float:
    """Wall time of ``labctl deploy`` as a subprocess."""
    t0 = time.perf_counter()
    lab.cli("deploy", str(src), "-a", app, timeout=600)
    return time.perf_counter() - t0


# -- preboot ----------------------------------------------------------------------------------------------------
@dataclass
class Traffic:
    """A steady GET rate through the router from a small thread pool, bounded in count and time."""

    lab: BenchLab
    app: str
    rps: float
    max_seconds: float
    records: list[tuple[float, int | None, str | None]] = field(default_factory=list)  # (t, status, release)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        local = threading.local()
        url, host = self.lab.router_url(), f"{self.app}.localhost"

        def one(t: float) -> None:
            s = getattr(local, "s", None) or requests.Session()
            local.s = s
            try:
                r = s.get(url, headers={"Host": host}, timeout=5)
                rel = r.json().get("release") if r.status_code == 200 else None  # the sample app's "v3"
                self.records.append((t, r.status_code, str(rel).lstrip("v") if rel else None))
            except (requests.RequestException, ValueError):
                self.records.append((t, None, None))

        start = time.perf_counter()
        limit = int(self.rps * self.max_seconds)
        with ThreadPoolExecutor(max_workers=16) as pool:
            for i in range(limit):
                if self.stop.is_set():
                    break
                due = start + i / self.rps
                time.sleep(max(0.0, due - time.perf_counter()))
                pool.submit(one, time.perf_counter())


@dataclass
class PrebootRun:
    failed: int
    requests: int
    switch_after_release_s: float  # first answer by the new release − deploy command returned
    mixed_after_switch: int  # answers by the old release after the first new one


def preboot_deploy(lab: BenchLab, app: str, src: Path, rps: float, max_seconds: float = 90.0) -> PrebootRun:
    """Deploy ``src`` to a preboot app under ``rps`` requests/s; count failures and time the switch."""
    current = lab.api.releases(app)[0]["version"]
    traffic = Traffic(lab, app, rps, max_seconds)
    thread = threading.Thread(target=traffic.run, daemon=True)
    thread.start()
    try:
        time.sleep(1.0)
        lab.cli("deploy", str(src), "-a", app, timeout=300)
        released = time.perf_counter()
        new = str(current + 1)
        first_new = wait_for(
            lambda: next((t for t, _, rel in list(traffic.records) if rel == new), None),
            max_seconds,
            "the first answer from the new release",
            0.1,
        )
        time.sleep(3.0)  # keep sending after the switch: an old answer or an error now would count
    finally:
        traffic.stop.set()
        thread.join(timeout=30)
    recs = list(traffic.records)
    failed = sum(1 for _, status, _ in recs if status is None or status >= 500)
    mixed = sum(1 for t, status, rel in recs if t > first_new and rel not in (None, new))
    return PrebootRun(failed, len(recs), first_new - released, mixed)


def wait_preboot_done(lab: BenchLab, app: str, quantity: int) -> None:
    """No old dynos left: exactly ``quantity`` dyno containers, all up."""
    wait_for(
        lambda: (
            len(lab.containers("dyno", app)) == quantity
            and sum(d["state"] == "up" for d in lab.dynos(app).values()) == quantity
        ),
        120,
        f"{app}'s preboot finished",
        0.2,
    )


def check_preboot_app(lab: BenchLab, app: str) -> None:
    feats = {f["name"]: f for f in lab.api.features(app)}
    if not feats.get("preboot", {}).get("enabled"):
        raise BenchError(f"preboot is not enabled on {app}")
