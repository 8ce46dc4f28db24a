"""log-runtime-metrics (issue 16 item 6): Heroku's two sample lines per dyno, a new ``dyno=`` uuid per container,
nothing once disabled, and a load average that shows a CPU-starved instance."""

from __future__ import annotations

import re
import time

import pytest

from labctl import traffic
from tests.conftest import Lab, wait_until

pytestmark = pytest.mark.docker

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
NUM = r"\d+\.\d\d"
LOAD = re.compile(
    rf" heroku\[(?P<src>[\w.]+)\]: source=(?P=src) dyno=heroku\.(?P<app>\d+)\.(?P<uuid>{UUID}) "
    rf"sample#load_avg_1m=(?P<m1>{NUM}) sample#load_avg_5m=(?P<m5>{NUM}) sample#load_avg_15m=(?P<m15>{NUM})$"
)
MEMORY = re.compile(
    rf" heroku\[(?P<src>[\w.]+)\]: source=(?P=src) dyno=heroku\.(?P<app>\d+)\.(?P<uuid>{UUID}) "
    rf"sample#memory_total=(?P<total>{NUM})MB sample#memory_rss=(?P<rss>{NUM})MB sample#memory_cache={NUM}MB "
    rf"sample#memory_swap={NUM}MB sample#memory_pgpgin=\d+pages sample#memory_pgpgout=\d+pages "
    rf"sample#memory_quota=(?P<quota>{NUM})MB$"
)


def samples(lab: Lab, app: str, pattern: re.Pattern[str]) -> list[re.Match[str]]:
    return [m for line in lab.logs(app).splitlines() if (m := pattern.search(line))]


def latest(lab: Lab, app: str, pattern: re.Pattern[str]) -> dict[str, re.Match[str]]:
    return {m["src"]: m for m in samples(lab, app, pattern)}


def uuid_of(container: str) -> str:
    h = container[:32]
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def test_runtime_metrics_lines_load_uuid_and_disable(lab: Lab, space_app: str):
    app = space_app
    assert lab.logs(app).count("sample#load_avg_1m") == 0, "off by default"
    enabled = lab.cli("features:enable", "log-runtime-metrics", "-a", app)
    assert enabled.code == 0 and f"Enabling log-runtime-metrics for ⬢ {app}... done" in enabled.err  # CLI: stderr
    assert {f["name"]: f["enabled"] for f in lab.json("features", "-a", app)}["log-runtime-metrics"] is True
    both = wait_until(
        lambda: (
            (found := latest(lab, app, LOAD)).keys() >= {"web.1", "web.2"}
            and latest(lab, app, MEMORY).keys() >= {"web.1", "web.2"}
            and found
        ),
        30,
        0.5,
        "a load and a memory sample for each dyno",
    )
    dynos = lab.dynos(app)
    mem = latest(lab, app, MEMORY)
    for name in ("web.1", "web.2"):
        assert both[name]["uuid"] == uuid_of(dynos[name]["container"]) == mem[name]["uuid"]
        assert both[name]["app"] == mem[name]["app"] == both["web.1"]["app"]
        assert float(mem[name]["quota"]) == 1024.0  # Private-S
        assert 5.0 < float(mem[name]["rss"]) <= float(mem[name]["total"]) < 1024.0, mem[name].group(0)

    # A CPU-starved dyno with work to do shows a higher load than one on an unthrottled instance: each request
    # needs 20 ms of CPU time (/work), ~3 a second reach each dyno; 0.06 CPU of demand is more than 0.05.
    lab.ok("faults:add", "cpu", "--cpus", "0.05", "--dyno", "web.1", "-a", app)
    traffic.run_traffic(app, lab=lab.name, rps=6, duration=8, path="/work?ms=20", timeout=10)
    loads = latest(lab, app, LOAD)
    starved, idle = float(loads["web.1"]["m1"]), float(loads["web.2"]["m1"])
    print(f"load_avg_1m under cpu 0.05 with /work traffic: web.1 {starved}, web.2 {idle}")
    assert starved >= 0.8 and starved > 3 * idle, (loads["web.1"].group(0), loads["web.2"].group(0))
    lab.ok("faults:clear", "--instance", dynos["web.1"]["instance"])

    # The dyno= uuid is the container's: a restart gives web.1 a new one, the same source.
    lab.ok("ps:restart", "web.1", "-a", app)
    new = lab.wait_up(app, ["web.1"])["web.1"]
    assert new["container"] != dynos["web.1"]["container"]
    wait_until(
        lambda: latest(lab, app, LOAD)["web.1"]["uuid"] == uuid_of(new["container"]),
        30,
        0.5,
        "a sample of web.1's new container",
    )

    # Disabled: no more samples (one already being written may still land).
    lab.ok("features:disable", "log-runtime-metrics", "-a", app)
    before = len(samples(lab, app, LOAD))
    time.sleep(3.5)  # 3.5 emission periods at time scale 0.05 (20 s x 0.05 = 1 s)
    assert len(samples(lab, app, LOAD)) <= before + 2
