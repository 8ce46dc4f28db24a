"""Instance faults through the router, with numbers (lab-spec §8, issue 4): the effect is measured from the client's
side with ``labctl.traffic`` (latency ratios, error rates), and cured the Heroku way (restart vs stop)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import docker
import pytest
import requests

from labctl import traffic
from tests.conftest import Lab, deploy_sample, wait_until

pytestmark = pytest.mark.docker


# -- helpers ---------------------------------------------------------------------------------------------------
def run(lab: Lab, app: str, rps: float, duration: float, path: str = "/", timeout: float | None = None) -> dict:
    return traffic.run_traffic(app, lab=lab.name, rps=rps, duration=duration, path=path, timeout=timeout).summary


def dyno_stats(summary: dict, dyno: str) -> dict:
    assert dyno in summary["by_dyno"], f"no request answered by {dyno}: {list(summary['by_dyno'])}"
    return summary["by_dyno"][dyno]


def p50(summary: dict, dyno: str) -> float:
    return dyno_stats(summary, dyno)["p50"]


def instance_of(lab: Lab, app: str, dyno: str) -> str:
    return lab.dynos(app)[dyno]["instance"]


def instances(lab: Lab) -> dict[str, dict]:
    return {i["id"]: i for i in lab.json("instances")}


def sandboxes(lab: Lab, instance: str) -> list:
    return docker.from_env().containers.list(
        ignore_removed=True,
        filters={"label": [f"io.labctl.lab={lab.name}", "io.labctl.kind=sandbox", f"io.labctl.instance={instance}"]},
    )


def sh(container, cmd: str) -> str:
    """``cmd``'s output in the container; it must succeed (a "no rule left" read from a failed command proves
    nothing)."""
    code, out = container.exec_run(["sh", "-c", cmd])
    text = out.decode(errors="replace")
    assert code == 0, f"`{cmd}` in {container.name} exited {code}: {text[-300:]}"
    return text


def fault_rules(container) -> str:
    """The sandbox's whole filter table but its isolation chain: the LABCTL-FAULTS chains are made by the first
    DROP fault on the sandbox and removed with their jumps when its faults go, so a "no rule left" check reads the
    whole table."""
    rules = sh(container, "iptables -S")
    # a Common Runtime sandbox's isolation chain (docs/instances.md) is not a fault: it stays with the sandbox
    return "\n".join(line for line in rules.splitlines() if "LABCTL-ISOLATE" not in line)


def root_qdisc(container) -> str:
    out = sh(container, "tc qdisc show dev eth0 root")
    assert out.startswith("qdisc "), out
    return out


def restarted(lab: Lab, app: str, dyno: str, before: dict, action: str) -> dict:
    """``ps:restart``/``ps:stop`` one dyno and wait until its new container is up."""
    lab.ok(action, dyno, "-a", app)
    wait_until(
        lambda: (
            lab.dynos(app)[dyno]["container"] not in (None, before["container"])
            and lab.dynos(app)[dyno]["state"] == "up"
        ),
        40,
        0.2,
        f"{dyno} back up after {action}",
    )
    time.sleep(0.3)  # the router has switched before `up` is reported; give the map a beat
    return lab.dynos(app)[dyno]


def _bad(records: list[dict], dyno: str, slow_ms: float) -> float:
    mine = [r for r in records if r["dyno"] == dyno]
    bad = [r for r in mine if traffic.is_error(r) or r["latency_ms"] > slow_ms]
    return len(bad) / len(mine) if mine else 0.0


def run_records(
    lab: Lab, app: str, rps: float, duration: float, path: str = "/", timeout: float | None = None
) -> traffic.TrafficResult:
    return traffic.run_traffic(app, lab=lab.name, rps=rps, duration=duration, path=path, timeout=timeout)


# -- cpu -----------------------------------------------------------------------------------------------------------
def test_cpu_fault_survives_restart_and_stop_cures_it(lab: Lab, space_app: str):
    # /cpu busy-loops for a wall-clock time: throttling stretches it by whole CFS periods (100 ms), so a short
    # loop shows the fault best (ms=50: 2.7-18x on a busy 2-CPU machine; ms=20: 4-26x).
    app, path = space_app, "/cpu?ms=20"
    first = lab.dynos(app)["web.1"]
    out = lab.ok("faults:add", "cpu", "--cpus", "0.05", "--dyno", "web.1", "-a", app)
    assert f"Adding cpu 0.05 CPU fault to instance {first['instance']}" in out
    assert [f["kind"] for f in instances(lab)[first["instance"]]["faults"]] == ["cpu"]

    s = run(lab, app, 20, 5, path)
    slow, fast = p50(s, "web.1"), p50(s, "web.2")
    print(f"cpu 0.05: web.1 p50 {slow} ms p95 {dyno_stats(s, 'web.1')['p95']} ms; web.2 p50 {fast} ms")
    assert slow >= 3 * fast, f"web.1 should be many-fold slower: {slow} vs {fast}"
    assert fast < 200

    again = restarted(lab, app, "web.1", first, "ps:restart")
    assert again["instance"] == first["instance"], "Private Space restart keeps the instance"
    # the fault is the quota of the instance's parent cgroup (its budget), which the new container starts under
    parent = Path("/sys/fs/cgroup/cpu") / f"labctl.{lab.name}.{again['instance']}"
    assert (parent / again["container"]).is_dir(), "the dyno started after the restart is under the instance"
    assert int((parent / "cpu.cfs_quota_us").read_text()) == 5000, "the fault applies to the instance"
    s = run(lab, app, 20, 5, path)
    print(f"cpu after restart: web.1 p50 {p50(s, 'web.1')} ms; web.2 p50 {p50(s, 'web.2')} ms")
    assert p50(s, "web.1") >= 3 * p50(s, "web.2"), "restart does not cure an instance fault"

    cured = restarted(lab, app, "web.1", again, "ps:stop")
    assert cured["instance"] != first["instance"], "ps:stop in a space replaces the instance"
    wait_until(lambda: first["instance"] not in instances(lab), 20, what="old instance gone with its fault")
    s = run(lab, app, 20, 4, path)
    print(f"cpu after stop: web.1 p50 {p50(s, 'web.1')} ms; web.2 p50 {p50(s, 'web.2')} ms")
    assert p50(s, "web.1") < 2 * p50(s, "web.2") + 20, "a new instance is fast again"
    assert lab.json("faults", "-a", app) == []


# -- blackhole and loss ---------------------------------------------------------------------------------------
def test_blackhole_fails_requests_to_that_instance_only(lab: Lab, space_app: str):
    app = space_app
    first = lab.dynos(app)["web.1"]
    lab.ok("faults:add", "blackhole", "--dyno", "web.1", "-a", app)
    s = run(lab, app, 20, 3, timeout=5)
    w1, w2 = dyno_stats(s, "web.1"), dyno_stats(s, "web.2")
    print(
        f"blackhole: web.1 {w1['count']} reqs error rate {w1['error_rate']} ({w1['error_kinds']}), "
        f"web.2 error rate {w2['error_rate']}"
    )
    assert w1["count"] >= 10 and w1["error_rate"] == 1.0
    assert w2["error_rate"] == 0.0
    assert all(k.startswith("503 H") for k in w1["error_kinds"]), "the router answers with its own error"
    sb = sandboxes(lab, first["instance"])
    assert len(sb) == 1 and "-j DROP" in fault_rules(sb[0])

    again = restarted(lab, app, "web.1", first, "ps:restart")
    assert again["instance"] == first["instance"]
    s = run(lab, app, 20, 2, timeout=5)
    assert dyno_stats(s, "web.1")["error_rate"] == 1.0, "restart does not cure a blackholed instance"
    assert dyno_stats(s, "web.2")["error_rate"] == 0.0

    cured = restarted(lab, app, "web.1", again, "ps:stop")
    assert cured["instance"] != first["instance"]
    s = run(lab, app, 20, 2, timeout=5)
    assert s["total"]["errors"] == 0 and dyno_stats(s, "web.1")["count"] > 0, "stop cures it"
    wait_until(
        lambda: sandboxes(lab, first["instance"]) == [], 20, 0.2, "the rules went with the instance's sandbox"
    )  # the old instance is torn down in the background


def test_loss_hits_one_instance_restart_keeps_it_stop_cures(lab: Lab, space_app: str):
    app = space_app
    first = lab.dynos(app)["web.1"]
    lab.ok("faults:add", "loss", "--percent", "30", "--dyno", "web.1", "-a", app)
    r = run_records(lab, app, 20, 5, timeout=5)
    w1, w2 = dyno_stats(r.summary, "web.1"), dyno_stats(r.summary, "web.2")
    bad1, bad2 = _bad(r.records, "web.1", 900), _bad(r.records, "web.2", 900)
    print(
        f"loss 30%: web.1 errors {w1['error_rate']:.2f} errors-or-retransmits {bad1:.2f} p95 {w1['p95']} ms; "
        f"web.2 errors {w2['error_rate']:.2f} bad {bad2:.2f} p95 {w2['p95']} ms"
    )
    assert bad1 >= 0.10, "dropped packets show as errors or >0.9 s retransmits on web.1"
    assert w2["error_rate"] == 0.0 and bad2 <= 0.05

    again = restarted(lab, app, "web.1", first, "ps:restart")
    assert again["instance"] == first["instance"]
    r = run_records(lab, app, 20, 5, timeout=5)
    bad1 = _bad(r.records, "web.1", 900)
    print(f"loss after restart: web.1 bad {bad1:.2f}")
    assert bad1 >= 0.10, "restart does not cure it"

    restarted(lab, app, "web.1", again, "ps:stop")
    r = run_records(lab, app, 20, 4, timeout=5)
    assert r.summary["total"]["errors"] == 0 and _bad(r.records, "web.1", 900) <= 0.05


# -- Common Runtime: a shared instance hits every app on it ------------------------------------------------
def test_common_runtime_fault_hits_every_app_restart_moves_away(lab: Lab, app_name: str):
    a, b = f"{app_name}a", f"{app_name}b"
    path = "/cpu?ms=20"
    try:
        deploy_sample(lab, b, 3)
        deploy_sample(lab, a, 1)
        shared = instance_of(lab, a, "web.1")
        for n in range(4, 7):  # grow b until one of its dynos shares a's instance (least-loaded placement)
            if any(d["instance"] == shared for d in lab.dynos(b).values()):
                break
            lab.ok("ps:scale", f"web={n}", "-a", b)
            lab.wait_up(b, [f"web.{i}" for i in range(1, n + 1)])
        on_shared = sorted(n for n, d in lab.dynos(b).items() if d["instance"] == shared)
        assert on_shared, "b has a dyno on a's instance"
        victim = on_shared[0]
        others = sorted(n for n, d in lab.dynos(b).items() if d["instance"] != shared)

        lab.ok("faults:add", "cpu", "--cpus", "0.02", "--instance", shared)
        listed = lab.json("faults", "-a", a)
        assert [f["instance"] for f in listed] == [shared] and lab.json("faults", "-a", b)[0]["instance"] == shared
        assert {f"{a}/web.1", f"{b}/{victim}"} <= set(instances(lab)[shared]["dynos"])

        def both() -> tuple[dict, dict]:
            res: dict[str, dict] = {}
            ta = threading.Thread(target=lambda: res.update(a=run(lab, a, 8, 4, path)))
            ta.start()
            res["b"] = run(lab, b, 6 * len(lab.dynos(b)), 4, path)
            ta.join()
            return res["a"], res["b"]

        sa, sb = both()
        base = min(p50(sb, d) for d in others)
        print(
            f"CR cpu 0.02 on {shared}: {a}/web.1 p50 {p50(sa, 'web.1')} ms, {b}/{victim} p50 {p50(sb, victim)} ms, "
            f"{b} elsewhere p50 {base} ms"
        )
        assert p50(sa, "web.1") >= 3 * base, "the fault hits the first app's dyno on the shared instance"
        assert p50(sb, victim) >= 3 * base, "and the second app's dyno on it"

        before = lab.dynos(b)[victim]
        moved = restarted(lab, b, victim, before, "ps:restart")
        assert moved["instance"] != shared, "a Common Runtime restart lands on another instance"
        sa, sb = both()
        base = min(p50(sb, d) for d in others)
        print(
            f"CR after restart: {b}/{victim} p50 {p50(sb, victim)} ms (on {moved['instance']}), "
            f"{a}/web.1 p50 {p50(sa, 'web.1')} ms, base {base} ms"
        )
        assert p50(sb, victim) < 2 * base + 20, "the moved dyno is cured"
        assert p50(sa, "web.1") >= 3 * base, "the dyno left on the faulty instance is not"
        lab.ok("faults:clear", "--instance", shared)
        assert lab.json("faults") == []
    finally:
        for name in (a, b):
            lab.cli("apps:destroy", "-a", name)


def test_a_sandbox_placed_later_on_a_faulty_instance_gets_its_rules(lab: Lab, app_name: str):
    """The fault belongs to the instance: an app placed there after the fault is hit too (the runtime's hook)."""
    c, d = f"{app_name}c", f"{app_name}d"
    try:
        deploy_sample(lab, c, 1)
        shared = instance_of(lab, c, "web.1")
        lab.ok("faults:add", "blackhole", "--instance", shared)
        s = run(lab, c, 10, 1.5, timeout=5)
        print(f"CR blackhole: {c}/web.1 error rate {s['total']['error_rate']} ({s['total']['error_kinds']})")
        assert s["total"]["error_rate"] == 1.0, "a Common Runtime app with its only dyno there gets router errors"
        deploy_sample(lab, d, 1)
        for n in range(2, 6):
            if any(x["instance"] == shared for x in lab.dynos(d).values()):
                break
            lab.ok("ps:scale", f"web={n}", "-a", d)
            lab.wait_up(d, [f"web.{i}" for i in range(1, n + 1)])
        sbs = [x for x in sandboxes(lab, shared) if x.labels["io.labctl.app"] == d]
        assert len(sbs) == 1, "d got a sandbox on the faulty instance"
        assert "-j DROP" in fault_rules(sbs[0])
        lab.ok("faults:clear", "--instance", shared)
        assert "-j DROP" not in fault_rules(sbs[0])
        assert run(lab, c, 10, 1, timeout=5)["total"]["errors"] == 0
    finally:
        for name in (c, d):
            lab.cli("apps:destroy", "-a", name)


# -- host failure ------------------------------------------------------------------------------------------------
def test_host_failure_relocates_dynos(lab: Lab, space_app: str):
    app = space_app
    first = lab.dynos(app)["web.1"]
    lab.ok("faults:add", "loss", "--percent", "20", "--dyno", "web.1", "-a", app)
    out = lab.ok("faults:add", "host-failure", "--instance", first["instance"])
    assert f"Failing instance {first['instance']}... done" in out
    assert first["instance"] not in instances(lab)
    wait_until(
        lambda: (
            lab.dynos(app)["web.1"]["state"] == "up"
            and lab.dynos(app)["web.1"]["instance"] not in (None, first["instance"])
        ),
        40,
        0.2,
        "web.1 up elsewhere",
    )
    assert "Relocating dyno to a new server" in lab.logs(app)
    assert lab.json("faults", "-a", app) == [], "the faults went with the instance"
    assert (
        docker.from_env().containers.list(
            all=True, ignore_removed=True, filters={"label": f"io.labctl.instance={first['instance']}"}
        )
        == []
    )
    s = run(lab, app, 20, 2)
    assert s["total"]["errors"] == 0 and dyno_stats(s, "web.1")["count"] > 0


# -- bandwidth ------------------------------------------------------------------------------------------------------
def _big_get(lab: Lab, app: str) -> tuple[str, float, int]:
    pad = {f"X-Pad-{i}": "x" * 7000 for i in range(3)}  # /headers echoes them: a ~21 KB answer
    t = time.perf_counter()
    r = requests.get(f"http://127.0.0.1:{lab.port}/headers", headers={"Host": f"{app}.localhost", **pad}, timeout=10)
    assert r.status_code == 200
    return r.json()["dyno"], time.perf_counter() - t, len(r.content)  # the router names no dyno to clients


def test_bandwidth_throttles_the_instance_link(lab: Lab, space_app: str):
    app = space_app
    iid = instance_of(lab, app, "web.1")
    lab.ok("faults:add", "bandwidth", "--rate", "256kbit", "--dyno", "web.1", "-a", app)
    sb = sandboxes(lab, iid)[0]
    assert "tbf" in root_qdisc(sb) and "256Kbit" in root_qdisc(sb)
    seen: dict[str, list[tuple[float, int]]] = {}
    deadline = time.time() + 30
    while (len(seen.get("web.1", [])) < 4 or len(seen.get("web.2", [])) < 4) and time.time() < deadline:
        dyno, secs, size = _big_get(lab, app)
        seen.setdefault(dyno, []).append((secs, size))
    kbit = {d: sorted(size * 8 / secs / 1000 for secs, size in v)[len(v) // 2] for d, v in seen.items()}
    print(f"bandwidth 256kbit: measured web.1 {kbit['web.1']:.0f} kbit/s, web.2 {kbit['web.2']:.0f} kbit/s")
    assert 100 <= kbit["web.1"] <= 330, "web.1's answers arrive at about the configured rate"
    fastest_web2 = max(size * 8 / secs / 1000 for secs, size in seen["web.2"])  # one fast answer is enough
    assert fastest_web2 >= 10 * kbit["web.1"], f"web.2 unthrottled: {fastest_web2:.0f} kbit/s"

    out = lab.ok("faults:clear", "--dyno", "web.1", "-a", app, "--kind", "bandwidth")
    assert "removed bandwidth 256kbit" in out
    assert "tbf" not in root_qdisc(sb)
    rates: list[float] = []
    for _ in range(40):  # best of three web.1 answers: a single one can be slow on a loaded machine
        dyno, secs, size = _big_get(lab, app)
        if dyno == "web.1":
            rates.append(size * 8 / secs / 1000)
            if len(rates) == 3:
                break
    assert rates and max(rates) > 2000, f"web.1 still throttled after the clear: {rates} kbit/s"


# -- --for, doctor, bad input, leftovers ---------------------------------------------------------------------------
def test_fault_for_a_while_reverts_by_itself(lab: Lab, space_app: str):
    app = space_app
    iid = instance_of(lab, app, "web.1")
    begun = time.time()
    out = lab.ok("faults:add", "blackhole", "--dyno", "web.1", "-a", app, "--for", "3s")
    assert "reverts in 3s" in out
    listed = lab.json("faults", "-a", app)
    assert len(listed) == 1 and listed[0]["expires_at"] - listed[0]["created_at"] == pytest.approx(3.0)
    s = run(lab, app, 20, 0.8, timeout=5)  # sent well before the end: even a retransmitted SYN is dropped
    assert dyno_stats(s, "web.1")["error_rate"] == 1.0
    wait_until(lambda: lab.json("faults", "-a", app) == [], 10, 0.1, "the fault reverted")
    assert 2.9 <= time.time() - begun < 5
    assert "-A LABCTL-FAULTS" not in fault_rules(sandboxes(lab, iid)[0])
    s = run(lab, app, 20, 1.5, timeout=5)
    assert s["total"]["errors"] == 0 and dyno_stats(s, "web.1")["count"] > 0
    assert "expired: blackhole" in lab.logs(app)


def test_doctor_reports_engine_images_controller_and_fault_support(lab: Lab):
    report = lab.json("doctor")
    assert report["ok"] is True
    checks = {c["name"]: c for c in report["checks"] if c["name"] != "image"}
    assert checks["engine"]["status"] == "ok" and "Docker" in checks["engine"]["detail"]
    assert [c["status"] for c in report["checks"] if c["name"] == "image"] == ["ok", "ok"]
    assert checks["controller"]["status"] == "ok" and lab.name in checks["controller"]["detail"]
    assert checks["budgets"]["status"] == "ok", checks["budgets"]  # root on a cgroup v1 host
    f = report["faults"]
    for kind in f:  # every kind works here: latency and the other toxics need no kernel module
        assert f[kind]["supported"], f"{kind}: {f[kind]['reason']}"
    assert {k: f[k]["mechanism"] for k in ("loss", "blackhole", "latency", "reset", "timeout", "cpu")} == {
        "loss": "iptables",
        "blackhole": "iptables",
        "latency": "proxy",
        "reset": "proxy",
        "timeout": "proxy",
        "cpu": "cfs",
    }
    assert f["bandwidth"]["mechanism"] == "tc+proxy", "tc tbf where the kernel has it (this one does)"
    text = lab.ok("doctor")
    assert "=== Fault kinds on this engine" in text
    assert any(line.startswith("ok") and "latency" in line and "[proxy]" in line for line in text.splitlines())
    assert (
        docker.from_env().containers.list(
            all=True, ignore_removed=True, filters={"label": [f"io.labctl.lab={lab.name}", "io.labctl.kind=probe"]}
        )
        == []
    ), "the probe container is removed"


def test_bad_input_is_one_line_and_changes_nothing(lab: Lab, app_name: str):
    app = deploy_sample(lab, app_name, 1)
    try:
        iid = instance_of(lab, app, "web.1")
        before = [{k: v for k, v in i.items() if k != "usage"} for i in lab.json("instances")]  # usage: live
        cases = [
            (("faults:add", "bogus", "--instance", iid), "Unknown fault kind 'bogus'"),
            (("faults:add", "blackhole", "--instance", "i-00000000000000000"), "No such instance i-00000000000000000"),
            (("faults:add", "blackhole", "--dyno", "web.9", "-a", app), "No such dyno web.9"),
            (("faults:add", "blackhole", "--dyno", "web.1", "-a", "nosuchapp"), "Couldn't find that app"),
            (("faults:add", "loss", "--percent", "0", "--instance", iid), "--percent must be more than 0"),
            (("faults:add", "loss", "--percent", "101", "--dyno", "web.1", "-a", app), "at most 100, not 101"),
            (("faults:add", "cpu", "--cpus", "9", "--instance", iid), "--cpus must be more than 0 and at most 8"),
            (("faults:add", "bandwidth", "--rate", "fast", "--instance", iid), "Invalid rate 'fast'"),
            (("faults:add", "blackhole", "--instance", iid, "--for", "soon"), "Invalid duration 'soon'"),
            (("faults:add", "blackhole"), "Give exactly one of --instance ID, --dyno DYNO -a APP or --router"),
            (("faults:clear", "--instance", "i-00000000000000000"), "No such instance"),
            (("faults:clear", "--all", "--kind", "bogus"), "Unknown fault kind 'bogus'"),
            (("faults", "-a", "nosuchapp"), "Couldn't find that app"),
        ]
        for args, needle in cases:
            r = lab.cli(*args)
            assert r.code != 0, args
            assert needle in r.err, (args, r.err)
            assert len(r.err.strip().splitlines()) == 1 and "Traceback" not in r.err + r.out, (args, r.err)
        assert [{k: v for k, v in i.items() if k != "usage"} for i in lab.json("instances")] == before
        assert lab.json("faults") == []
    finally:
        lab.ok("apps:destroy", "-a", app)


def test_down_after_controller_kill_leaves_nothing(fresh_lab: Lab, app_name: str):
    """Faults live in the lab's own containers: ``kill -9`` of the controller, then ``down``, leaves no rule,
    quota or helper container behind (the fixture checks that nothing labelled with the lab remains)."""
    lab = fresh_lab
    deploy_sample(lab, app_name, 1)
    lab.ok("faults:add", "blackhole", "--dyno", "web.1", "-a", app_name, "--for", "1h")
    lab.ok("faults:add", "cpu", "--cpus", "0.5", "--dyno", "web.1", "-a", app_name)
    import os
    import signal

    pid = lab.json("status")["controller_pid"]
    os.kill(pid, signal.SIGKILL)
    wait_until(
        lambda: (
            lab.cli("status", "--json").code == 0
            and json.loads(lab.cli("status", "--json").out)["controller_pid"] != pid
        ),
        30,
        0.3,
        "the supervisor restarted the controller",
    )
    assert [f["kind"] for f in lab.json("faults")] == ["blackhole", "cpu"], "faults survive a controller restart"
    lab.ok("down")
