"""log-runtime-metrics' arithmetic and lines, the cgroup reader on a fake tree, and the provisioning state."""

from __future__ import annotations

import math
import re
from pathlib import Path

from labctl.domain import runtime_metrics as rm
from labctl.domain.placement import instance_state, is_provisioning
from labctl.engine.cgroups import Cgroups, CpuReading, busy_delta

CID = "0806bfb38c4fb4d44497ca9bfc64324569b76b762c1db4701f863d03d45438d0"
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def test_load_average_follows_the_kernels_exponential_decay():
    load = rm.LoadAverage()
    load.add(1.0, 60.0, 1.0)  # one window of constant demand 1: 1 - 1/e of the way
    assert math.isclose(load.one, 1 - math.exp(-1))
    assert math.isclose(load.five, 1 - math.exp(-60 / 300))
    for _ in range(200):
        load.add(1.0, 5.0, 1.0)
    assert round(load.one, 3) == 1.0 and load.one >= load.five >= load.fifteen > 0.6


def test_the_windows_scale_with_the_time_scale():
    fast, real = rm.LoadAverage(), rm.LoadAverage()
    fast.add(2.0, 0.25, 0.05)
    real.add(2.0, 5.0, 1.0)
    assert math.isclose(fast.one, real.one) and math.isclose(fast.fifteen, real.fifteen)


def test_demand_is_busy_time_per_second():
    assert rm.demand(500_000_000, 0.5) == 1.0
    assert rm.demand(0, 0.0) == 0.0


def test_dyno_id_is_the_app_number_and_a_uuid_of_the_container():
    number = rm.app_id("myapp", 1765000000.5)
    assert number == rm.app_id("myapp", 1765000000.5) and 1_000_000 <= number < 100_000_000
    did = rm.dyno_id(number, CID)
    assert re.fullmatch(rf"heroku\.{number}\.{UUID}", did)
    assert did != rm.dyno_id(number, "1" + CID[1:])


def test_lines_have_herokus_fields_and_units():
    load = rm.LoadAverage(2.456, 1.06, 0.99)
    assert rm.load_line("web.1", "heroku.1.x", load) == (
        "source=web.1 dyno=heroku.1.x sample#load_avg_1m=2.46 sample#load_avg_5m=1.06 sample#load_avg_15m=0.99"
    )
    mem = rm.MemorySample(rss=21 * rm.MIB, cache=rm.MIB // 2, swap=0, pgpgin=348836, pgpgout=343403)
    assert rm.memory_line("web.1", "heroku.1.x", mem, 512) == (
        "source=web.1 dyno=heroku.1.x sample#memory_total=21.50MB sample#memory_rss=21.00MB "
        "sample#memory_cache=0.50MB sample#memory_swap=0.00MB sample#memory_pgpgin=348836pages "
        "sample#memory_pgpgout=343403pages sample#memory_quota=512.00MB"
    )


def test_busy_delta_is_cpu_used_plus_the_larger_wait():
    before = CpuReading(1000, 0, {"1": 100, "2": 50})
    # live tasks waited 60 (task 1) + 40 (task 3, new); the cgroup was throttled 30: the tasks' wait counts
    assert busy_delta(before, CpuReading(1500, 30, {"1": 160, "3": 40})) == 500 + 100
    # request threads that ended are only in the cgroup's counters: its throttled time counts
    assert busy_delta(before, CpuReading(1050, 900, {"1": 110})) == 50 + 900
    # the instance's parent cgroup was throttled 800 while this dyno used a quarter of the instance's CPU
    parent_before = CpuReading(1000, 0, {}, 4000, 0)
    assert busy_delta(parent_before, CpuReading(1100, 0, {}, 4400, 800)) == 100 + 200


def _tree(root: Path, parent: str) -> None:
    mem = root / "memory" / parent / CID
    mem.mkdir(parents=True)
    (mem / "memory.stat").write_text(
        "rss 1\ncache 2\ntotal_rss 1048576\ntotal_cache 2097152\ntotal_swap 0\ntotal_pgpgin 7\ntotal_pgpgout 5\n"
    )
    cpu = root / "cpu" / parent / CID
    cpu.mkdir(parents=True)
    (cpu / "tasks").write_text("")  # no live task: only the cgroup's counters
    (cpu / "cpu.stat").write_text("nr_periods 10\nnr_throttled 9\nthrottled_time 900\n")
    acct = root / "cpuacct" / parent / CID
    acct.mkdir(parents=True)
    (acct / "cpuacct.usage").write_text("100\n")
    (acct.parent / "cpuacct.usage").write_text("400\n")  # the parent: Docker's own, or an instance's
    (cpu.parent / "cpu.stat").write_text("nr_periods 10\nnr_throttled 7\nthrottled_time 700\n")


def test_cgroups_reads_memory_and_cpu_under_docker_or_an_instance_parent(tmp_path: Path):
    for parent in ("docker", "labctl-i-abc/inner", "labctl/lab/i-abc"):
        root = tmp_path / parent.replace("/", "_")
        _tree(root, parent)
        cg = Cgroups(root)
        mem = cg.memory(CID)
        assert mem == rm.MemorySample(rss=1048576, cache=2097152, swap=0, pgpgin=7, pgpgout=5)
        parent_counters = (0, 0) if parent == "docker" else (400, 700)
        assert cg.cpu(CID) == CpuReading(100, 900, {}, *parent_counters)
    assert Cgroups(tmp_path / "nothing").memory(CID) is None


def test_an_instance_is_provisioning_until_ready():
    assert is_provisioning(10.0, 9.0) and not is_provisioning(10.0, 10.0) and not is_provisioning(None, 0.0)
    assert instance_state("running", 10.0, 9.0) == "provisioning"
    assert instance_state("running", 10.0, 11.0) == "running"
    assert instance_state("failed", 10.0, 9.0) == "failed"
