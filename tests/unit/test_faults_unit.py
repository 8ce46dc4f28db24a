"""Instance faults without Docker: parameter parsing and validation, the namespace script, the probe verdict,
and the FaultManager's bookkeeping (add/replace/clear/expire/hooks) over a real store and a fake engine."""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from labctl.controller import faults as fm
from labctl.domain.faults import FAULT_KINDS, KINDS, NET_KINDS
from labctl.engine import faults as fe
from labctl.errors import InvalidInput, LabError, NotFound
from labctl.store import Store


# -- the kinds, defined once ---------------------------------------------------------------------------------
def test_every_layer_reads_the_one_table_of_kinds():
    """The controller accepts, the scenario loader knows and ``faults:add --help`` explains exactly the kinds of
    labctl/domain/faults.py, with their one-line help and parameters."""
    from typer.testing import CliRunner

    from labctl.main import typer_app
    from labctl.scenario.model import FAULT_KINDS as SCENARIO_KINDS

    assert SCENARIO_KINDS == KINDS and NET_KINDS < set(KINDS)
    for kind in KINDS:
        assert fm.check_kind(kind) == kind
    with pytest.raises(InvalidInput, match=", ".join(KINDS)):
        fm.check_kind("meteor")
    for kind in FAULT_KINDS.values():  # a kind's parameters are what build_fault asks for
        if kind.params:
            with pytest.raises(InvalidInput, match=f"{kind.name} faults need --{kind.params[0]}"):
                fm.build_fault({"kind": kind.name})
    result = CliRunner().invoke(typer_app, ["faults:add", "--help"], env={"COLUMNS": "2000"})
    assert result.exit_code == 0
    for kind in FAULT_KINDS.values():
        assert f"{kind.name}: {kind.help}" in result.output


# -- rates and durations -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text,bps",
    [
        ("1mbit", 1_000_000),
        ("512kbit", 512_000),
        ("1Mbit", 1_000_000),
        ("10mbps", 80_000_000),
        ("8kbit", 8_000),
        ("1.5mbit", 1_500_000),
        ("64000", 64_000),
        ("10gbit", 10_000_000_000),
    ],
)
def test_parse_rate(text, bps):
    assert fe.parse_rate(text) == bps


@pytest.mark.parametrize("text", ["", "fast", "1 parsec", "1mbitx", "-1mbit", "7kbit", "11gbit", "0"])
def test_parse_rate_rejects(text):
    with pytest.raises(InvalidInput) as e:
        fe.parse_rate(text)
    assert "rate" in str(e.value) and "\n" not in str(e.value)


def test_format_rate_round_trips():
    for text in ("1mbit", "512kbit", "2gbit", "1500kbit"):
        assert fe.format_rate(fe.parse_rate(text)) == text
    assert fe.format_rate(8_001) == "8001bit"


@pytest.mark.parametrize(
    "text,seconds",
    [
        ("2s", 2.0),
        ("500ms", 0.5),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("90", 90.0),
        (1.5, 1.5),
        (" 3 s ", 3.0),
    ],
)
def test_parse_duration(text, seconds):
    assert fe.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["0s", "0", "-1s", "soon", "1d", "8h" * 2, True, "169h"])
def test_parse_duration_rejects(text):
    with pytest.raises(InvalidInput):
        fe.parse_duration(text)


# -- fault records ---------------------------------------------------------------------------------------------
def test_build_fault_each_kind():
    cpu = fm.build_fault({"kind": "cpu", "cpus": 0.05}, now=100.0)
    assert cpu["kind"] == "cpu" and cpu["cpus"] == 0.05 and cpu["id"].startswith("f-")
    assert cpu["created_at"] == 100.0 and cpu["expires_at"] is None
    loss = fm.build_fault({"kind": "loss", "percent": "30", "for": "2s"}, now=100.0)
    assert loss["percent"] == 30.0 and loss["expires_at"] == 102.0
    assert fm.build_fault({"kind": "loss", "percent": 100})["percent"] == 100.0
    bw = fm.build_fault({"kind": "bandwidth", "rate": "1Mbit"})
    assert bw["rate"] == "1mbit" and bw["rate_bps"] == 1_000_000 and bw["direction"] == "out"
    assert fm.build_fault({"kind": "bandwidth", "kbit": 256})["rate_bps"] == 256_000
    assert set(fm.build_fault({"kind": "blackhole"})) == {"id", "kind", "direction", "created_at", "expires_at"}
    lat = fm.build_fault({"kind": "latency", "ms": 200, "jitter": 100, "direction": "both"})
    assert (lat["ms"], lat["jitter"], lat["direction"]) == (200.0, 100.0, "both")
    assert fm.build_fault({"kind": "latency", "ms": "50"})["direction"] == "out"
    assert "direction" not in fm.build_fault({"kind": "reset"})
    assert fm.build_fault({"kind": "limit-data", "bytes": 0})["bytes"] == 0
    assert fm.build_fault({"kind": "slow-close", "ms": 300})["ms"] == 300.0
    assert "direction" not in fm.build_fault({"kind": "cpu", "cpus": 1})
    assert fm.build_fault({"kind": "host-failure"})["kind"] == "host-failure"


@pytest.mark.parametrize(
    "body,needle",
    [
        ({"kind": "cpux"}, "Unknown fault kind 'cpux'"),
        ({}, "Unknown fault kind None"),
        ({"kind": "cpu"}, "cpu faults need --cpus"),
        ({"kind": "cpu", "cpus": 0}, "--cpus must be more than 0 and at most 8"),
        ({"kind": "cpu", "cpus": -1}, "--cpus must be more than 0"),
        ({"kind": "cpu", "cpus": 8.5}, "at most 8"),
        ({"kind": "cpu", "cpus": 0.001}, "at least 0.01"),
        ({"kind": "cpu", "cpus": "lots"}, "--cpus must be a number"),
        ({"kind": "cpu", "cpus": True}, "--cpus must be a number"),
        ({"kind": "loss", "percent": 0}, "--percent must be more than 0 and at most 100, not 0"),
        ({"kind": "loss", "percent": 101}, "--percent must be more than 0 and at most 100, not 101"),
        ({"kind": "loss", "percent": -5}, "--percent must be more than 0"),
        ({"kind": "loss"}, "loss faults need --percent"),
        ({"kind": "loss", "percent": 10, "cpus": 1}, "--cpus does not apply to loss faults"),
        ({"kind": "blackhole", "percent": 10}, "--percent does not apply to blackhole faults"),
        ({"kind": "bandwidth", "rate": "fast"}, "Invalid rate 'fast'"),
        ({"kind": "bandwidth"}, "bandwidth faults need --kbit N (kbit/s, e.g. 256) or --rate R"),
        ({"kind": "bandwidth", "kbit": 256, "rate": "1mbit"}, "bandwidth faults need --kbit N"),
        ({"kind": "bandwidth", "kbit": 1}, "--kbit must be between 8 and 10000000, not 1"),
        ({"kind": "latency"}, "latency faults need --ms N"),
        ({"kind": "latency", "ms": 0}, "--ms must be more than 0"),
        ({"kind": "latency", "ms": 100, "jitter": 200}, "--jitter at most --ms, not 100 ± 200"),
        ({"kind": "latency", "ms": 200, "direction": "up"}, "Unknown direction 'up': use in, out or both"),
        ({"kind": "reset", "direction": "in"}, "--direction does not apply to reset faults (only to loss, blackhole"),
        ({"kind": "cpu", "cpus": 1, "direction": "in"}, "--direction does not apply to cpu faults"),
        ({"kind": "timeout", "ms": 5}, "--ms does not apply to timeout faults"),
        ({"kind": "limit-data", "bytes": 1.5}, "--bytes must be a whole number"),
        ({"kind": "limit-data"}, "limit-data faults need --bytes N"),
        ({"kind": "loss", "percent": 10, "for": "0s"}, "Invalid duration"),
        ({"kind": "loss", "percent": 10, "for": "later"}, "Invalid duration"),
        ({"kind": "host-failure", "for": "2s"}, "--for does not apply"),
    ],
)
def test_build_fault_rejects_with_one_line(body, needle):
    with pytest.raises(InvalidInput) as e:
        fm.build_fault(body)
    assert needle in str(e.value)
    assert "\n" not in str(e.value)


def test_latency_must_stay_below_the_router_timeout():
    fm.build_fault({"kind": "latency", "ms": 1400, "jitter": 99}, max_delay_ms=1500)
    with pytest.raises(InvalidInput) as e:
        fm.build_fault({"kind": "latency", "ms": 1400, "jitter": 100}, max_delay_ms=1500)
    assert "not below the router's first-byte timeout here (1500 ms" in str(e.value) and "\n" not in str(e.value)


def test_describe():
    assert fm.describe({"kind": "latency", "ms": 200.0, "jitter": 50.0, "direction": "out"}) == "latency 200ms ±50ms"
    assert fm.describe({"kind": "loss", "percent": 30.0, "direction": "out"}) == "loss 30% out"
    assert fm.describe({"kind": "limit-data", "bytes": 10}) == "limit-data 10 bytes"
    assert fm.describe({"kind": "cpu", "cpus": 0.05}) == "cpu 0.05 CPU"
    assert fm.describe({"kind": "loss", "percent": 30.0}) == "loss 30%"
    assert fm.describe({"kind": "bandwidth", "rate": "1mbit"}) == "bandwidth 1mbit"
    assert fm.describe({"kind": "blackhole"}) == "blackhole"


# -- the namespace script ---------------------------------------------------------------------------------------
def test_net_script_rules_match_the_router_only():
    script = fe.net_script(
        "172.22.0.2",
        [
            {"kind": "blackhole", "id": "f-1", "direction": "in"},
            {"kind": "loss", "percent": 30.0, "id": "f-2", "direction": "out"},
        ],
    )
    lines = script.splitlines()
    assert lines[0] == "set -e"
    assert "iptables -w -N LABCTL-FAULTS 2>/dev/null || iptables -w -F LABCTL-FAULTS" in lines
    assert "iptables -w -C INPUT -j LABCTL-FAULTS 2>/dev/null || iptables -w -I INPUT 1 -j LABCTL-FAULTS" in lines
    out_hook = "iptables -w -C OUTPUT -j LABCTL-FAULTS-OUT 2>/dev/null || iptables -w -I OUTPUT 1 -j LABCTL-FAULTS-OUT"
    assert out_hook in lines
    assert "iptables -w -A LABCTL-FAULTS -s 172.22.0.2 -m comment --comment 'labctl blackhole f-1' -j DROP" in lines
    assert (
        "iptables -w -A LABCTL-FAULTS-OUT -d 172.22.0.2 -m statistic --mode random --probability 0.3000 "
        "-m comment --comment 'labctl loss f-2' -j DROP"
    ) in lines
    # no toxics: no proxy, its REDIRECT flushed, its process stopped
    assert "while iptables -w -t nat -D PREROUTING -j LABCTL-PROXY 2>/dev/null; do :; done" in lines
    assert "iptables -w -t nat -X LABCTL-PROXY 2>/dev/null || true" in lines
    assert "rm -rf /run/labctl-faults" in lines and "setsid" not in script


def test_net_script_bandwidth_and_empty():
    script = fe.net_script(
        "10.0.0.2",
        [
            {"kind": "bandwidth", "rate_bps": 1_000_000, "direction": "out"},
            {"kind": "bandwidth", "rate_bps": 256_000, "direction": "out"},
        ],
    )
    assert "tc qdisc replace dev eth0 root tbf rate 256000bit burst 3028 latency 500ms" in script
    assert "DROP" not in script and "REDIRECT" not in script
    empty = fe.net_script("10.0.0.2", [])
    assert "-A LABCTL-FAULTS" not in empty and "tc qdisc del dev eth0 root" in empty
    for chain, hook in (("LABCTL-FAULTS", "INPUT"), ("LABCTL-FAULTS-OUT", "OUTPUT")):  # nothing left at all
        assert f"while iptables -w -D {hook} -j {chain} 2>/dev/null; do :; done" in empty
        assert f"iptables -w -X {chain} 2>/dev/null || true" in empty
    big = fe.tbf_args(100_000_000)
    assert "burst 125000 " in big  # 10 ms worth at 100mbit
    # without tbf, or toward the instance, bandwidth goes through the proxy
    plan = fe.instance_plan("10.0.0.2", [{"kind": "bandwidth", "rate_bps": 256_000, "direction": "in"}])
    assert plan.rate_bps is None and plan.toxics[0]["streams"] == ["req"] and plan.toxics[0]["kbit"] == 256.0
    plan = fe.instance_plan("10.0.0.2", [{"kind": "bandwidth", "rate_bps": 256_000, "direction": "out"}], tbf=False)
    assert plan.rate_bps is None and plan.toxics[0]["streams"] == ["resp"]


def test_proxy_toxics_redirect_the_router_connections_to_the_proxy():
    faults = [
        {"kind": "latency", "id": "f-1", "ms": 200.0, "jitter": 100.0, "direction": "out"},
        {"kind": "reset", "id": "f-2"},
        {"kind": "limit-data", "id": "f-3", "bytes": 100},
    ]
    plan = fe.instance_plan("10.0.0.2", faults)
    assert [(t["kind"], t["streams"]) for t in plan.toxics] == [
        ("latency", ["resp"]),
        ("reset", []),
        ("limit-data", ["resp"]),
    ]
    assert plan.toxics[0]["ms"] == 200.0 and plan.toxics[0]["jitter"] == 100.0
    script = fe.plan_script(plan)
    assert "iptables -w -t nat -C PREROUTING -j LABCTL-PROXY 2>/dev/null" in script
    assert "iptables -w -t nat -A LABCTL-PROXY -s 10.0.0.2 -p tcp -j REDIRECT --to-ports 9099" in script
    # the proxy listens before the REDIRECT goes in
    assert script.index("setsid python3 /usr/local/lib/labctl/fault_proxy.py 9099") < script.index("REDIRECT")
    assert script.index(":238B 00000000:0000 0A") < script.index("REDIRECT")
    assert '"kind": "latency"' in script


def test_router_plan_matches_the_runtime_and_spares_the_gateways():
    faults = [
        {"kind": "loss", "id": "f-1", "percent": 30.0, "direction": "both", "nets": ["172.30.0.0/16"]},
        {"kind": "latency", "id": "f-2", "ms": 100.0, "direction": "out", "nets": ["172.31.0.5/32"]},
        {"kind": "latency", "id": "f-3", "ms": 100.0, "direction": "in", "nets": []},  # nothing to hit: skipped
    ]
    plan = fe.router_plan(faults, ["172.30.0.1"])
    assert plan.hook == "OUTPUT" and not plan.touch_tc
    assert any(r.startswith("-s 172.30.0.0/16 -m statistic") for r in plan.drops_in)
    assert any(r.startswith("-d 172.30.0.0/16 -m statistic") for r in plan.drops_out)
    assert [(t["kind"], t["streams"], t["nets"]) for t in plan.toxics] == [("latency", ["req"], ["172.31.0.5/32"])]
    assert plan.redirects == ["-d 172.31.0.5/32 -p tcp -m mark ! --mark 0x1ab"]
    script = fe.plan_script(plan)
    assert "iptables -w -A LABCTL-FAULTS -s 172.30.0.1 -j RETURN" in script
    assert "iptables -w -A LABCTL-FAULTS-OUT -d 172.30.0.1 -j RETURN" in script
    assert "iptables -w -t nat -C OUTPUT -j LABCTL-PROXY" in script and "tc qdisc" not in script
    assert fe.streams("router", "in") == ["resp"] and fe.streams("instance", "in") == ["req"]


def test_net_script_quotes_the_address():
    script = fe.net_script("10.0.0.2; rm -rf /", [{"kind": "blackhole", "id": "x"}])
    assert "-s '10.0.0.2; rm -rf /'" in script


def test_cpu_quota():
    assert fe.cpu_quota(0.05) == 5000
    assert fe.cpu_quota(2) == 200_000
    assert fe.cpu_quota(0.001) == 1000


# -- the probe's verdict ------------------------------------------------------------------------------------------
PROBE_OUT = """iptables ok
statistic ok
drop ok
tbf ok
redirect ok
python3 ok
"""


def test_support_from_probe_every_kind_without_netem():
    s = fe.support_from_probe(PROBE_OUT, (True, ""))
    assert {k for k, v in s.items() if v.supported} == set(KINDS)
    assert s["latency"].mechanism == "proxy" and "fault proxy" in s["latency"].reason
    assert s["bandwidth"].mechanism == "tc+proxy" and s["loss"].mechanism == "iptables"
    assert s["latency"].as_dict() == {"supported": True, "reason": s["latency"].reason, "mechanism": "proxy"}
    no_tbf = fe.support_from_probe(PROBE_OUT.replace("tbf ok", "tbf fail no"), (True, ""))
    assert no_tbf["bandwidth"].supported and no_tbf["bandwidth"].mechanism == "proxy"
    no_nat = fe.support_from_probe(PROBE_OUT.replace("redirect ok", "redirect fail No chain"), (True, ""))
    assert not no_nat["reset"].supported and "iptables REDIRECT: No chain" in no_nat["reset"].reason


def test_support_from_probe_failures_say_why():
    s = fe.support_from_probe("iptables fail iptables: Permission denied\n", (False, "quota rejected"))
    assert not s["cpu"].supported and "quota rejected" in s["cpu"].reason
    assert not s["loss"].supported and not s["blackhole"].supported and not s["bandwidth"].supported
    assert "not tried" in s["bandwidth"].reason
    assert s["host-failure"].supported


# -- the manager over a real store and a fake engine ----------------------------------------------------------
class FakeEngine:
    """Records what would be done to containers."""

    def __init__(self) -> None:
        self.sandboxes: dict[str, list[dict[str, Any]]] = {}
        self.cpu: dict[str, float | None] = {}
        self.calls: list[tuple[str, str]] = []
        self.fail_on: str | None = None
        self.support = fe.support_from_probe(PROBE_OUT, (True, ""))

    def sync_sandbox(self, sandbox: str, faults: list[dict[str, Any]]) -> None:
        if self.fail_on == sandbox:
            raise LabError("iptables: boom")
        self.calls.append(("sync", sandbox))
        self.sandboxes[sandbox] = [f["kind"] for f in faults]

    def set_cpu(self, container: str, cpus: float | None) -> None:
        self.calls.append(("cpu", container))
        self.cpu[container] = cpus

    def probe(self) -> dict[str, fe.Support]:
        return self.support


class FakeDockerEngine:
    def __init__(self) -> None:
        self.pids: dict[str, int] = {}  # a container's main pid (a restart changes it)

    def try_info(self, cid: str | None) -> object | None:
        return SimpleNamespace(id=cid, pid=self.pids.get(cid, 1)) if cid else None


class FakeRuntime:
    def __init__(self, store: Store):
        self.store = store
        self.lock = threading.RLock()
        self.engine = FakeDockerEngine()
        self.on_sandbox_created: list = []
        self.on_dyno_started: list = []
        self.failed: list[str] = []
        self.scale = lambda seconds: seconds * 0.1  # the lab clock at time scale 0.1

    def fail_instance(self, iid: str) -> list[str]:
        self.failed.append(iid)
        self.store.delete_instance(iid)
        return ["web.1"]


class FakeSink:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str, str]] = []

    def heroku(self, app: str, dyno: str, msg: str) -> None:
        self.lines.append((app, dyno, msg))


def _dyno(store: Store, app: str, name: str, instance: str, container: str) -> None:
    store.add_dyno(
        {
            "app": app,
            "name": name,
            "type": "web",
            "size": "standard-1x",
            "command": "x",
            "release": 1,
            "instance": instance,
            "state": "up",
            "updated_at": 0.0,
            "container": container,
            "port": 5000,
            "crashes": 0,
            "next_start": None,
            "boot_deadline": None,
            "up_since": None,
            "cycle_at": None,
            "one_off": 0,
            "attach": 0,
        }
    )


@pytest.fixture
def mgr(tmp_path: Path):
    store = Store(tmp_path / "lab.db")
    store.add_app("demo", "tokyo")
    store.add_app("shop", None)
    store.add_instance("i-a", "tokyo")
    store.add_instance("i-b", "common")
    store.add_sandbox("i-a", "demo", "sb-a", "10.0.0.5")
    store.add_sandbox("i-b", "shop", "sb-b-shop", "10.0.1.5")
    store.add_sandbox("i-b", "demo", "sb-b-demo", "10.0.1.6")
    _dyno(store, "demo", "web.1", "i-a", "c-1")
    _dyno(store, "shop", "web.1", "i-b", "c-2")
    _dyno(store, "demo", "web.2", "i-b", "c-3")
    rt = FakeRuntime(store)
    sink = FakeSink()
    eng = FakeEngine()
    m = fm.FaultManager(store, rt, sink, engine=eng)  # type: ignore[arg-type]
    yield m, store, rt, eng, sink
    store.close()


def test_add_applies_to_every_sandbox_and_dyno_of_the_instance(mgr):
    m, store, rt, eng, sink = mgr
    view = m.add("i-b", {"kind": "loss", "percent": 30})
    assert view["instance"] == "i-b" and view["description"] == "loss 30%"
    assert sorted(view["dynos"]) == ["demo/web.2", "shop/web.1"]
    assert eng.sandboxes == {"sb-b-shop": ["loss"], "sb-b-demo": ["loss"]}  # both apps' namespaces
    assert [f["kind"] for f in store.instance("i-b")["faults"]] == ["loss"]
    assert ("shop", "web.1", "Fault on instance i-b: loss 30% (labctl)") in sink.lines
    m.add("i-b", {"kind": "cpu", "cpus": 0.05})
    assert eng.cpu == {"c-2": 0.05, "c-3": 0.05}
    assert eng.sandboxes["sb-b-shop"] == ["loss"]


def test_same_kind_replaces(mgr):
    m, store, *_ = mgr
    m.add("i-a", {"kind": "loss", "percent": 30})
    m.add("i-a", {"kind": "loss", "percent": 60})
    m.add("i-a", {"kind": "blackhole"})
    faults = store.instance("i-a")["faults"]
    assert [(f["kind"], f.get("percent")) for f in faults] == [("loss", 60.0), ("blackhole", None)]


def test_bad_input_changes_nothing(mgr):
    m, store, rt, eng, _ = mgr
    for iid, body, err in [
        ("i-a", {"kind": "loss", "percent": 0}, InvalidInput),
        ("i-a", {"kind": "loss", "percent": 101}, InvalidInput),
        ("i-a", {"kind": "nope"}, InvalidInput),
        ("i-zzz", {"kind": "blackhole"}, NotFound),
        ("i-a", {"kind": "latency", "ms": 3000}, InvalidInput),  # above the router's scaled 30 s
        ("i-a", {"kind": "reset", "direction": "in"}, InvalidInput),
    ]:
        with pytest.raises(err):
            m.add(iid, body)
    assert store.instance("i-a")["faults"] == [] and eng.calls == []


def test_a_kind_the_engine_lacks_is_refused_in_one_line(mgr):
    m, store, rt, eng, _ = mgr
    eng.support = fe.support_from_probe(PROBE_OUT.replace("python3 ok", "python3 fail not found"), (True, ""))
    with pytest.raises(InvalidInput) as e:
        m.add("i-a", {"kind": "latency", "ms": 100})
    assert "latency faults are not supported on this engine" in str(e.value) and "python3: not found" in str(e.value)
    assert store.instance("i-a")["faults"] == []


def test_engine_failure_restores_and_stores_nothing(mgr):
    m, store, rt, eng, _ = mgr
    m.add("i-b", {"kind": "blackhole"})
    eng.fail_on = "sb-b-demo"
    with pytest.raises(LabError) as e:
        m.add("i-b", {"kind": "loss", "percent": 10})
    assert "Could not add the loss fault on i-b" in str(e.value)
    assert [f["kind"] for f in store.instance("i-b")["faults"]] == ["blackhole"]
    assert eng.sandboxes["sb-b-shop"] == ["blackhole"]  # restored


def test_dyno_resolution(mgr):
    m = mgr[0]
    assert m.dyno_instance("demo", "web.2") == "i-b"
    with pytest.raises(NotFound, match="Couldn't find that app: nope"):
        m.dyno_instance("nope", "web.1")
    with pytest.raises(NotFound, match="No such dyno web.9"):
        m.dyno_instance("demo", "web.9")
    with pytest.raises(InvalidInput):
        m.dyno_instance("demo", "web")


def test_clear_by_kind_all_and_list(mgr):
    m, store, rt, eng, _ = mgr
    m.add("i-a", {"kind": "loss", "percent": 30})
    m.add("i-a", {"kind": "cpu", "cpus": 0.5})
    m.add("i-b", {"kind": "blackhole"})
    assert len(m.list_faults()) == 3
    assert {f["instance"] for f in m.list_faults(app="shop")} == {"i-b"}
    assert {f["instance"] for f in m.list_faults(app="demo")} == {"i-a", "i-b"}
    with pytest.raises(NotFound):
        m.list_faults(app="nope")
    removed = m.clear("i-a", "cpu")
    assert [f["kind"] for f in removed] == ["cpu"] and eng.cpu["c-1"] is None
    assert m.clear("i-a", "cpu") == []
    with pytest.raises(InvalidInput):
        m.clear("i-a", "bogus")
    with pytest.raises(NotFound):
        m.clear("i-nope")
    removed = m.clear(None)
    assert sorted(f["kind"] for f in removed) == ["blackhole", "loss"]
    assert all(not i["faults"] for i in store.instances())
    assert eng.sandboxes["sb-a"] == [] and eng.sandboxes["sb-b-shop"] == []


def test_expiry_reverts_only_what_ran_out(mgr):
    m, store, rt, eng, sink = mgr
    m.add("i-a", {"kind": "loss", "percent": 30, "for": "2s"})
    m.add("i-a", {"kind": "blackhole"})
    exp = store.instance("i-a")["faults"][0]["expires_at"]
    assert m.expire(now=exp - 0.5) == []
    gone = m.expire(now=exp + 0.01)
    assert [f["kind"] for f in gone] == ["loss"]
    assert [f["kind"] for f in store.instance("i-a")["faults"]] == ["blackhole"]
    assert eng.sandboxes["sb-a"] == ["blackhole"]
    assert any("expired: loss 30%" in line[2] for line in sink.lines)


def test_hooks_apply_the_instance_faults_to_newcomers(mgr):
    m, store, rt, eng, _ = mgr
    m.add("i-a", {"kind": "cpu", "cpus": 0.25})
    m.add("i-a", {"kind": "blackhole"})
    assert rt.on_sandbox_created and rt.on_dyno_started
    eng.calls.clear()
    rt.on_dyno_started[0]("i-a", "c-new")
    assert eng.cpu["c-new"] == 0.25
    rt.on_sandbox_created[0]("i-a", {"container": "sb-new"})
    assert eng.sandboxes["sb-new"] == ["blackhole"]
    eng.calls.clear()
    rt.on_dyno_started[0]("i-b", "c-other")  # no fault there: nothing done
    rt.on_sandbox_created[0]("i-b", {"container": "sb-other"})
    assert eng.calls == []


def test_host_failure_fails_the_instance_and_is_not_stored(mgr):
    m, store, rt, eng, _ = mgr
    out = m.add("i-a", {"kind": "host-failure"})
    assert rt.failed == ["i-a"] and out["relocated"] == ["web.1"] and out["dynos"] == ["demo/web.1"]
    with pytest.raises(InvalidInput):
        m.clear("i-b", "host-failure")


def test_start_reapplies_stored_faults(mgr, monkeypatch):
    m, store, rt, eng, _ = mgr
    store.update_instance(
        "i-b",
        faults=[
            {"id": "f-1", "kind": "blackhole", "expires_at": None},
            {"id": "f-2", "kind": "cpu", "cpus": 0.1, "expires_at": None},
        ],
    )
    monkeypatch.setattr(threading.Thread, "start", lambda self: None)  # no timer thread in a unit test
    m.start()
    assert eng.sandboxes == {"sb-b-shop": ["blackhole"], "sb-b-demo": ["blackhole"]}
    assert eng.cpu == {"c-2": 0.1, "c-3": 0.1}


# -- the router end ---------------------------------------------------------------------------------------------
class FakeRouterEngine(FakeEngine):
    def __init__(self) -> None:
        super().__init__()
        self.routers: dict[str, list[dict[str, Any]]] = {}

    def router_for(self, runtime: str | None) -> str:
        return "router"

    def runtime_subnet(self, runtime: str | None) -> str | None:
        return {None: "172.30.0.0/16", "tokyo": "172.31.0.0/16"}.get(runtime)

    def sync_router(self, router: str, faults: list[dict[str, Any]]) -> None:
        if self.fail_on == router:
            raise LabError("iptables: Permission denied")
        self.calls.append(("router", router))
        self.routers[router] = [{"kind": f["kind"], "nets": f["nets"]} for f in faults]


class FakeApi:
    def __init__(self) -> None:
        self.routes: list[tuple[str, str]] = []

    def add_route(self, method: str, path: str, handler: Any, **meta: Any) -> None:
        self.routes.append((method, path))


@pytest.fixture
def routers(tmp_path: Path):
    from labctl.controller.faults_router import RouterFaults

    store = Store(tmp_path / "lab.db")
    store.add_space("tokyo")
    store.add_app("demo", "tokyo")
    store.add_app("shop", None)
    store.add_instance("i-a", "tokyo")
    store.add_instance("i-b", "common")
    store.add_sandbox("i-a", "demo", "sb-a", "172.31.0.5")
    store.add_sandbox("i-b", "shop", "sb-b", "172.30.0.6")
    _dyno(store, "demo", "web.1", "i-a", "c-1")
    _dyno(store, "shop", "web.1", "i-b", "c-2")
    eng = FakeRouterEngine()
    m = fm.FaultManager(store, FakeRuntime(store), FakeSink(), engine=eng)  # type: ignore[arg-type]
    rf = RouterFaults(m)
    rf.attach(FakeApi())
    yield m, rf, store, eng
    store.close()


def test_router_fault_hits_its_runtime_only_and_is_listed_with_its_end(routers):
    m, rf, store, eng = routers
    view = m.router_end.add("common", {"kind": "loss", "percent": 30, "direction": "out"})  # type: ignore[union-attr]
    assert view["end"] == "router" and view["router"] == "common" and view["dynos"] == ["shop/web.1"]
    assert eng.routers["router"] == [{"kind": "loss", "nets": ["172.30.0.0/16"]}]
    rf.add("tokyo", {"kind": "latency", "ms": 100, "to_instance": "i-a"})
    assert eng.routers["router"][-1] == {"kind": "latency", "nets": ["172.31.0.5/32"]}
    listed = m.list_faults()
    assert [(f["end"], f["runtime"], f["kind"]) for f in listed] == [
        ("router", "common", "loss"),
        ("router", "tokyo", "latency"),
    ]
    assert [f["kind"] for f in m.list_faults(app="demo")] == ["latency"]
    assert store.instance("i-b")["faults"] == []  # not an instance fault: ps:stop does not take it away
    removed = m.clear(None)
    assert sorted(f["kind"] for f in removed) == ["latency", "loss"] and eng.routers["router"] == []


def test_router_fault_bad_input_changes_nothing(routers):
    m, rf, store, eng = routers
    for router, body, err, needle in [
        ("mars", {"kind": "loss", "percent": 5}, NotFound, "No such router 'mars'"),
        ("common", {"kind": "cpu", "cpus": 1}, InvalidInput, "cpu faults act on an instance's dynos"),
        ("common", {"kind": "loss", "percent": 5, "to_instance": "i-a"}, InvalidInput, "is in space tokyo"),
        ("common", {"kind": "loss", "percent": 5, "to_instance": "i-zz"}, NotFound, "No such instance i-zz"),
        ("common", {"kind": "loss", "percent": 5, "direction": "sideways"}, InvalidInput, "Unknown direction"),
        ("common", {"kind": "latency", "ms": 5000}, InvalidInput, "first-byte timeout"),
    ]:
        with pytest.raises(err, match=needle):
            rf.add(router, body)
    assert rf.faults() == [] and eng.calls == []
    eng.fail_on = "router"
    with pytest.raises(LabError, match="Could not add the blackhole fault on the common router: iptables"):
        rf.add("common", {"kind": "blackhole"})
    assert rf.faults() == []


def test_router_fault_toward_an_instance_goes_with_it_and_expires(routers):
    m, rf, store, eng = routers
    rf.add("tokyo", {"kind": "reset", "to_instance": "i-a"})
    rf.add("common", {"kind": "blackhole", "for": "2s"})
    store.delete_instance("i-a")
    gone = rf.expire(now=0.0)
    assert [f["kind"] for f in gone] == ["reset"]
    assert [f["kind"] for f in rf.expire(now=1e12)] == ["blackhole"]
    assert rf.faults() == [] and eng.routers["router"] == []


def test_a_restarted_router_gets_its_faults_back(routers):
    m, rf, store, eng = routers
    rf.add("common", {"kind": "latency", "ms": 100})
    assert eng.calls.count(("router", "router")) == 1
    rf.expire()
    assert eng.calls.count(("router", "router")) == 1, "nothing changed: no re-apply"
    m.rt.engine.pids["router"] = 42  # restarted: a new network namespace
    rf.expire()
    assert eng.calls.count(("router", "router")) == 2 and eng.routers["router"][0]["kind"] == "latency"
