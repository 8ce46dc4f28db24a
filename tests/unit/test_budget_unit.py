"""Instance budgets without Docker (issue 16): sizes, faults on them, the parent cgroups' files on a fake
hierarchy, the isolation script, the ``instances`` table, the memory fault's validation and the fault manager's
use of the budget."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from labctl.cli import render
from labctl.controller import faults as fm
from labctl.domain import budget as bg
from labctl.engine import cgroups as cg
from labctl.engine import faults as fe
from labctl.errors import InvalidInput
from labctl.store import Store
from tests.unit.test_faults_unit import FakeEngine, FakeRuntime, FakeSink, _dyno


def test_budgets_by_size():
    assert bg.budget_for(None) == bg.POOL == bg.Budget(0.5, 2048)
    assert bg.budget_for("Standard-1X") == bg.POOL  # not a dedicated size: the pool's
    assert bg.budget_for("performance-m") == bg.Budget(1.0, 5120)  # memory at the size's R15 limit
    assert bg.budget_for("Private-S") == bg.Budget(0.5, 1024)
    assert bg.budget_for("Private-L") == bg.Budget(2.0, 14336)
    assert bg.is_dedicated_size("Performance-L") and not bg.is_dedicated_size("standard-2x")
    with pytest.raises(InvalidInput, match="Unknown dyno size 'huge'"):
        bg.budget_for("huge")


def test_faults_on_a_budget():
    faults: list[dict[str, Any]] = [{"kind": "cpu", "cpus": 0.1}, {"kind": "memory", "mb": 1800}]
    assert bg.cpu_fault(faults) == 0.1 and bg.memory_fault(faults) == 1800
    assert bg.effective(bg.POOL, 0.1, 1800) == bg.Budget(0.1, 248)
    assert bg.effective(bg.POOL, 4.0, None) == bg.POOL, "a cpu fault never raises the budget"
    assert bg.cpu_fault([]) is None and bg.memory_fault([]) is None


def _hierarchy(root: Path, memsw: bool = True) -> None:
    for c in ("cpu", "cpuacct", "memory"):
        (root / c).mkdir(parents=True)
        (root / c / "cgroup.procs").write_text("")


def test_parent_cgroup_files(tmp_path: Path):
    _hierarchy(tmp_path)
    cgs = cg.InstanceCgroups("lab1", tmp_path)
    assert cgs.enabled
    assert cg.parent_name("lab1", "i-1") == "/labctl.lab1.i-1"
    cgs.ensure("i-1", 0.5, 2048, 8192)
    cpu, mem = tmp_path / "cpu" / "labctl.lab1.i-1", tmp_path / "memory" / "labctl.lab1.i-1"
    assert (cpu / "cpu.cfs_quota_us").read_text() == "50000" and (cpu / "cpu.shares").read_text() == "8192"
    assert (mem / "memory.limit_in_bytes").read_text() == str(2048 * 2**20)
    assert cgs.limits("i-1") == (0.5, 2048)
    cgs.set_limits("i-1", 0.1, 248)
    assert cgs.limits("i-1") == (0.1, 248)
    (tmp_path / "cpuacct" / "labctl.lab1.i-1" / "cpuacct.usage").write_text("1000000000")
    (mem / "memory.usage_in_bytes").write_text(str(300 * 2**20))
    u = cgs.usage("i-1")
    assert u is not None and u.cpu_ns == 10**9 and u.memory_bytes == 300 * 2**20
    assert cgs.usage("i-2") is None
    later = cg.Usage(u.cpu_ns + 250_000_000, u.memory_bytes, u.at + 0.5)
    assert cg.cpu_use(u, later) == pytest.approx(0.5)


def test_memsw_order_when_lowering(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    _hierarchy(tmp_path)
    cgs = cg.InstanceCgroups("lab1", tmp_path)
    cgs.ensure("i-1", 0.5, 2048, 8192)
    mem = tmp_path / "memory" / "labctl.lab1.i-1"
    (mem / "memory.memsw.limit_in_bytes").write_text(str(2048 * 2**20))
    order: list[str] = []
    real = cg._write

    def spy(path: Path, value: str) -> None:
        order.append(path.name)
        real(path, value)

    monkeypatch.setattr(cg, "_write", spy)
    cgs.set_limits("i-1", 0.5, 100)
    mems = [n for n in order if n.startswith("memory.")]
    assert mems == ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"], "lower: the limit first"
    order.clear()
    cgs.set_limits("i-1", 0.5, 2048)
    mems = [n for n in order if n.startswith("memory.")]
    assert mems == ["memory.memsw.limit_in_bytes", "memory.limit_in_bytes"], "raise: memsw first"


def test_sweep_removes_other_instances_parents(tmp_path: Path):
    _hierarchy(tmp_path)
    cgs = cg.InstanceCgroups("lab1", tmp_path)
    for iid in ("i-keep", "i-gone"):
        for c in ("cpu", "memory"):
            (tmp_path / c / f"labctl.lab1.{iid}" / "somecontainer").mkdir(parents=True)  # empty: removable
    (tmp_path / "cpu" / "labctl.lab2.i-other").mkdir()  # another lab's: untouched
    assert cgs.sweep({"i-keep"}) == []
    names = sorted(p.name for p in tmp_path.glob("*/labctl.*"))
    assert names == ["labctl.lab1.i-keep", "labctl.lab1.i-keep", "labctl.lab2.i-other"]


def test_not_enabled_without_a_writable_hierarchy(tmp_path: Path):
    cgs = cg.InstanceCgroups("lab1", tmp_path)  # no controllers there (cgroup v2, a container)
    assert not cgs.enabled
    cgs.ensure("i-1", 0.5, 2048, 8192)  # nothing happens
    assert list(tmp_path.iterdir()) == []


def test_isolation_script():
    script = fe.isolation_script(["172.18.0.2", "172.18.0.1"])
    assert "iptables -w -A LABCTL-ISOLATE -i lo -j RETURN" in script
    assert "-s 172.18.0.2 -j RETURN" in script and "-s 172.18.0.1 -j RETURN" in script
    assert script.index("RETURN") < script.index("--syn") and "-p tcp --syn" in script and "-j DROP" in script
    assert "iptables -w -C INPUT -j LABCTL-ISOLATE 2>/dev/null || iptables -w -A INPUT -j LABCTL-ISOLATE" in script


def test_memory_fault_validation_and_description():
    f = fm.build_fault({"kind": "memory", "mb": 1500}, now=1.0)
    assert f["mb"] == 1500 and fm.describe(f) == "memory -1500 MB"
    for body, needle in (
        ({"kind": "memory"}, "memory faults need --mb"),
        ({"kind": "memory", "mb": 0}, "--mb must be a whole number"),
        ({"kind": "memory", "mb": 1.5}, "--mb must be a whole number"),
        ({"kind": "memory", "mb": "lots"}, "--mb must be a number"),
        ({"kind": "cpu", "cpus": 0.1, "mb": 10}, "--mb does not apply to cpu faults"),
    ):
        with pytest.raises(InvalidInput, match=needle):
            fm.build_fault(body)


def test_instances_table_shows_budget_and_use():
    rows = [
        {
            "id": "i-1",
            "runtime": "common",
            "state": "running",
            "dynos": ["a/web.1"],
            "faults": [{"kind": "cpu"}],
            "dedicated_to": None,
            "budget": {"cpus": 0.5, "memory_mb": 2048, "enforced": True},
            "limit": {"cpus": 0.1, "memory_mb": 2048},
            "usage": {"cpus": 0.0987, "memory_mb": 30.4},
        },
        {
            "id": "i-2",
            "runtime": "common",
            "state": "provisioning",
            "dynos": [],
            "faults": [],
            "dedicated_to": "Performance-M",
            "budget": {"cpus": 1.0, "memory_mb": 5120, "enforced": True},
            "limit": {"cpus": 1.0, "memory_mb": 5120},
            "usage": None,
        },
    ]
    lines = render.instances_text(rows).splitlines()
    assert lines[0].split() == ["ID", "RUNTIME", "STATE", "BUDGET", "CPU", "MEMORY", "DYNOS", "FAULTS"]
    assert lines[1].split() == [
        "i-1",
        "common",
        "running",
        "0.1",
        "CPU/2048",
        "MB",
        "0.10",
        "30",
        "MB",
        "a/web.1",
        "cpu",
    ]
    assert lines[2].split() == ["i-2", "common:dedicated", "provisioning", "1", "CPU/5120", "MB", "-", "-", "-", "-"]


class BudgetRuntime(FakeRuntime):
    """A runtime whose instances have enforced budgets: it records what each instance's parent carries."""

    budgets_enforced = True

    def __init__(self, store: Store):
        super().__init__(store)
        self.applied: dict[str, list[str]] = {}

    def apply_budget(self, iid: str, faults: list[dict[str, Any]]) -> bool:
        self.applied[iid] = sorted(f["kind"] for f in faults if f["kind"] in ("cpu", "memory"))
        return True

    def instance_budget(self, inst: Any) -> bg.Budget:
        return bg.budget_for(inst.get("size"))


def test_budget_faults_act_on_the_instance_not_each_dyno(tmp_path: Path):
    store = Store(tmp_path / "lab.db")
    store.add_app("shop", None)
    store.add_instance("i-b", "common")
    _dyno(store, "shop", "web.1", "i-b", "c-2")
    _dyno(store, "shop", "web.2", "i-b", "c-3")
    rt, eng = BudgetRuntime(store), FakeEngine()
    m = fm.FaultManager(store, rt, FakeSink(), engine=eng)  # type: ignore[arg-type]
    m.add("i-b", {"kind": "cpu", "cpus": 0.1})
    assert rt.applied == {"i-b": ["cpu"]} and eng.cpu == {}, "the parent, not a quota per dyno"
    m.add("i-b", {"kind": "memory", "mb": 1000})
    assert rt.applied == {"i-b": ["cpu", "memory"]}
    with pytest.raises(InvalidInput, match="--mb 2048 is not below the memory of instance i-b"):
        m.add("i-b", {"kind": "memory", "mb": 2048})
    assert [f["mb"] for f in store.instance("i-b")["faults"] if f["kind"] == "memory"] == [1000]  # type: ignore[index]
    m.clear("i-b", "memory")
    assert rt.applied == {"i-b": ["cpu"]}
    store.close()


def test_memory_fault_refused_where_budgets_are_not_enforced(tmp_path: Path):
    store = Store(tmp_path / "lab.db")
    store.add_instance("i-b", "common")
    m = fm.FaultManager(store, FakeRuntime(store), FakeSink(), engine=FakeEngine())  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="memory faults need the instances' budgets"):
        m.add("i-b", {"kind": "memory", "mb": 10})
    assert store.instance("i-b")["faults"] == []  # type: ignore[index]
    store.close()
