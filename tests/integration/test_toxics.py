"""TCP toxics in user space and faults at the router end (issue 17), with numbers through the router: latency
and jitter on one instance, a reset (H13), a timeout (H12 at the scaled 30 s), loss at a router end that hits
only that router's runtime, and nothing left behind (rules, qdiscs, proxy processes) after removal, after
``ps:stop``, and after a controller ``kill -9`` followed by ``labctl down``."""

from __future__ import annotations

import json
import os
import re
import signal
import time
import uuid

import docker
import pytest
import requests

from labctl import traffic
from tests.conftest import Lab, deploy_sample, wait_until

pytestmark = pytest.mark.docker

SCALE = 0.05  # the session lab's time scale (conftest)
FIRST_BYTE = 30 * SCALE  # the router's H12


def run(lab: Lab, app: str, rps: float, duration: float, timeout: float = 5) -> traffic.TrafficResult:
    return traffic.run_traffic(app, lab=lab.name, rps=rps, duration=duration, timeout=timeout)


def stats(result: traffic.TrafficResult, dyno: str) -> dict:
    assert dyno in result.summary["by_dyno"], f"no request answered by {dyno}: {list(result.summary['by_dyno'])}"
    return result.summary["by_dyno"][dyno]


def bad_share(result: traffic.TrafficResult, dyno: str, slow_ms: float = 900) -> float:
    """Errors, or answers slowed past a SYN retransmit (dropped packets), among the dyno's requests."""
    mine = [r for r in result.records if r["dyno"] == dyno]
    bad = [r for r in mine if traffic.is_error(r) or r["latency_ms"] > slow_ms]
    return len(bad) / len(mine) if mine else 0.0


def sandbox_of(lab: Lab, app: str, dyno: str):
    iid = lab.dynos(app)[dyno]["instance"]
    [sb] = docker.from_env().containers.list(
        filters={"label": [f"io.labctl.lab={lab.name}", "io.labctl.kind=sandbox", f"io.labctl.instance={iid}"]}
    )
    return sb


def router_of(lab: Lab, space: str | None = None):
    """The router serving a runtime: the common one, or the space's own (one router per Private Space)."""
    name = f"labctl-{lab.name}-router" + (f"-space-{space}" if space else "")
    return docker.from_env().containers.get(name)


def router_code(lab: Lab, app: str, request_id: str) -> str | None:
    """The ``code=`` of the router's log line for a request (the router adds no header naming the error)."""

    def line() -> str | None:
        return next((x for x in lab.logs(app).splitlines() if f"request_id={request_id}" in x), None)

    found = wait_until(line, 15, 0.2, f"the router's line for {request_id}")
    m = re.search(r" code=(H\d\d)", found)
    return m.group(1) if m else None


def get_with_id(lab: Lab, app: str, path: str = "/", timeout: float = 10, port: int | None = None):
    rid = str(uuid.uuid4())
    resp = requests.get(
        f"http://127.0.0.1:{port or lab.port}{path}",
        headers={"Host": f"{app}.localhost", "X-Request-Id": rid},
        timeout=timeout,
    )
    return resp, rid


def sh(container, cmd: str) -> str:
    code, out = container.exec_run(["sh", "-c", cmd])
    text = out.decode(errors="replace")
    assert code == 0, f"`{cmd}` in {container.name} exited {code}: {text[-300:]}"
    return text


def proxies(container) -> list[str]:
    """The fault proxy processes running in a container's namespace."""
    out = sh(container, "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline 2>/dev/null; echo; done")
    return [line for line in out.splitlines() if "fault_proxy.py" in line]


def nothing_left(container) -> None:
    """No labctl rule in any table, no shaping qdisc, no proxy process or file."""
    rules = sh(container, "iptables -S; iptables -t nat -S")
    # a Common Runtime sandbox's isolation chain (docs/instances.md) is not a fault: it stays with the sandbox
    rules = "\n".join(line for line in rules.splitlines() if "LABCTL-ISOLATE" not in line)
    assert "LABCTL" not in rules and "REDIRECT" not in rules and "DROP" not in rules, rules
    assert "tbf" not in sh(container, "tc qdisc show dev eth0 root")
    assert proxies(container) == []
    assert sh(container, "ls /run/labctl-faults 2>/dev/null || true").strip() == ""


def router_log_lines(lab: Lab, app: str, code: str) -> list[str]:
    return [line for line in lab.logs(app).splitlines() if f"heroku[router]: at=error code={code} " in line]


# -- latency and jitter on one instance ------------------------------------------------------------------------
def test_latency_on_one_instance_then_jitter_then_nothing_left(lab: Lab, space_app: str):
    app = space_app
    base = run(lab, app, 20, 4)
    base_spread = stats(base, "web.1")["p95"] - stats(base, "web.1")["p50"]

    out = lab.ok("faults:add", "latency", "--ms", "200", "--dyno", "web.1", "-a", app)
    assert "Adding latency 200ms fault to instance" in out
    sb = sandbox_of(lab, app, "web.1")
    assert len(proxies(sb)) == 1 and "REDIRECT" in sh(sb, "iptables -t nat -S LABCTL-PROXY")
    r = run(lab, app, 20, 5)
    w1, w2 = stats(r, "web.1"), stats(r, "web.2")
    print(f"latency 200ms: web.1 p50 {w1['p50']} p95 {w1['p95']} ms; web.2 p50 {w2['p50']} ms")
    assert 200 <= w1["p50"] <= 300, w1
    assert w2["p50"] < 50, w2
    assert r.summary["total"]["errors"] == 0

    # without jitter: the smaller p95 - p50 of the two runs so far (no fault; 200 ms flat), each a sample of
    # this machine's own noise (39.8 ms once at load 12, against 86.1 with the jitter)
    base_spread = min(base_spread, w1["p95"] - w1["p50"])
    lab.ok("faults:add", "latency", "--ms", "200", "--jitter", "100", "--dyno", "web.1", "-a", app)  # replaces it
    assert [f["description"] for f in lab.json("faults", "-a", app)] == ["latency 200ms ±100ms"]
    r = run(lab, app, 20, 8)
    w1 = stats(r, "web.1")
    spread = w1["p95"] - w1["p50"]
    print(f"jitter 100ms: web.1 p50 {w1['p50']} p95 {w1['p95']} ms; spread {spread} vs {base_spread} without")
    assert spread >= base_spread + 50, (spread, base_spread)

    lab.ok("faults:clear", "--dyno", "web.1", "-a", app)
    nothing_left(sb)
    r = run(lab, app, 20, 3)
    assert stats(r, "web.1")["p50"] < 50, "cured once removed (no dyno restart)"


def test_latency_above_the_router_timeout_and_bad_input_change_nothing(lab: Lab, space_app: str):
    app = space_app
    iid = lab.dynos(app)["web.1"]["instance"]
    cases = [
        (("faults:add", "latency", "--ms", "2000", "--instance", iid), "first-byte timeout here (1500 ms"),
        (("faults:add", "latency", "--ms", "200", "--direction", "up", "--instance", iid), "Unknown direction 'up'"),
        (("faults:add", "reset", "--direction", "in", "--instance", iid), "--direction does not apply to reset"),
        (("faults:add", "toxic", "--instance", iid), "Unknown fault kind 'toxic'"),
        (("faults:add", "loss", "--percent", "5", "--router", "nosuchspace"), "No such router 'nosuchspace'"),
        (("faults:add", "cpu", "--cpus", "1", "--router", "common"), "cpu faults act on an instance's dynos"),
        (("faults:add", "loss", "--percent", "5", "--router", "common", "--to-instance", iid), "the common router"),
        (("faults:add", "loss", "--percent", "5", "--to-instance", iid, "--instance", iid), "--to-instance goes"),
        (("faults:add", "blackhole", "--router", "common", "--instance", iid), "Give exactly one of"),
        (("faults:clear", "--router", "nosuchspace"), "No such router 'nosuchspace'"),
    ]

    def instances() -> list[dict]:  # what a fault could change: all but the live usage figures
        return [{k: v for k, v in i.items() if k != "usage"} for i in lab.json("instances")]

    before = instances()
    for args, needle in cases:
        res = lab.cli(*args)
        assert res.code != 0, args
        assert needle in res.err, (args, res.err)
        assert len(res.err.strip().splitlines()) == 1 and "Traceback" not in res.err + res.out, (args, res.err)
    assert lab.json("faults") == [] and instances() == before
    nothing_left(router_of(lab))
    nothing_left(router_of(lab, f"s{app[1:]}"))


# -- gray failures: reset (H13) and timeout (H12) ------------------------------------------------------------
def test_reset_gives_h13_and_5xx_for_that_dyno_only(lab: Lab, space_app: str):
    app = space_app
    lab.ok("faults:add", "reset", "--dyno", "web.1", "-a", app)
    r = run(lab, app, 20, 3)
    w1, w2 = stats(r, "web.1"), stats(r, "web.2")
    print(f"reset: web.1 {w1['count']} reqs {w1['error_kinds']}; web.2 errors {w2['error_rate']}")
    assert w1["count"] >= 10 and w1["error_rate"] == 1.0
    assert set(w1["error_kinds"]) == {"503 H13"}
    assert w2["error_rate"] == 0.0
    wait_until(lambda: len(router_log_lines(lab, app, "H13")) >= w1["count"], 10, what="an H13 line per request")
    assert all(" dyno=web.1 " in line for line in router_log_lines(lab, app, "H13"))
    sb = sandbox_of(lab, app, "web.1")
    lab.ok("faults:clear", "--dyno", "web.1", "-a", app)
    nothing_left(sb)


def test_timeout_gives_h12_at_the_scaled_30s(lab: Lab, space_app: str):
    app = space_app
    lab.ok("faults:add", "timeout", "--dyno", "web.1", "-a", app)
    seen: dict[str, list[float]] = {"web.1": [], "web.2": []}
    deadline = time.time() + 30
    while (len(seen["web.1"]) < 2 or not seen["web.2"]) and time.time() < deadline:
        t0 = time.time()
        resp, rid = get_with_id(lab, app, "/", timeout=10)
        took = time.time() - t0
        dyno = "web.1" if resp.status_code == 503 else "web.2"
        if resp.status_code == 503:
            assert router_code(lab, app, rid) == "H12"
        else:
            assert resp.status_code == 200
        seen[dyno].append(took)
    print(f"timeout: web.1 answered H12 after {seen['web.1']} s; web.2 after {seen['web.2']} s")
    assert len(seen["web.1"]) >= 2 and seen["web.2"], seen
    assert all(FIRST_BYTE * 0.9 <= t < FIRST_BYTE + 1.0 for t in seen["web.1"]), seen
    assert all(t < 0.5 for t in seen["web.2"]), seen
    wait_until(lambda: router_log_lines(lab, app, "H12"), 10, what="the H12 router line")
    assert ' desc="Request timeout" ' in router_log_lines(lab, app, "H12")[0]
    sb = sandbox_of(lab, app, "web.1")
    lab.ok("faults:clear", "--dyno", "web.1", "-a", app)
    nothing_left(sb)


# -- the router end ------------------------------------------------------------------------------------------
def test_router_end_loss_hits_its_runtime_only_and_survives_stop(lab: Lab, space_app: str):
    app, other = space_app, deploy_sample(lab, f"{space_app}c", 2)  # another runtime: the Common Runtime
    try:
        _router_end_loss(lab, app, other)
    finally:
        lab.ok("apps:destroy", "-a", other)


def _router_end_loss(lab: Lab, app: str, other: str) -> None:
    space = f"s{app[1:]}"  # the space_app fixture's space
    out = lab.ok("faults:add", "loss", "--percent", "30", "--direction", "both", "--router", space)
    assert f"Adding loss 30% both fault to the {space} router" in out
    [row] = lab.json("faults")
    assert (row["end"], row["router"], row["direction"], row["instance"]) == ("router", space, "both", None)
    assert "router" in lab.ok("faults") and "both ways" in lab.ok("faults")

    r = run(lab, app, 20, 5, timeout=3)
    o = run(lab, other, 20, 5, timeout=3)
    bad = {d: bad_share(r, d) for d in ("web.1", "web.2")}
    print(
        f"router loss 30%: {space} bad {bad} errors {r.summary['total']['errors']}; "
        f"common errors {o.summary['total']['errors']} bad {bad_share(o, 'web.1'):.2f}/{bad_share(o, 'web.2'):.2f}"
    )
    assert all(b >= 0.10 for b in bad.values()), bad
    assert r.summary["total"]["errors"] >= 1
    assert o.summary["total"]["errors"] == 0 and bad_share(o, "web.1") <= 0.05 and bad_share(o, "web.2") <= 0.05

    first = lab.dynos(app)["web.1"]
    lab.ok("ps:stop", "web.1", "-a", app)
    wait_until(
        lambda: (
            lab.dynos(app)["web.1"]["instance"] not in (None, first["instance"])
            and lab.dynos(app)["web.1"]["state"] == "up"
        ),
        40,
        0.2,
        "web.1 on a new instance",
    )
    r = run(lab, app, 20, 4, timeout=3)
    print(f"after ps:stop: web.1 bad {bad_share(r, 'web.1'):.2f}")
    assert bad_share(r, "web.1") >= 0.10, "a new instance behind the same sick router is still hit"

    router = router_of(lab, space)
    lab.ok("faults:clear", "--router", space)
    nothing_left(router)
    r = run(lab, app, 20, 3, timeout=3)
    assert r.summary["total"]["errors"] == 0


def test_router_end_toward_one_instance_only(lab: Lab, space_app: str):
    app = space_app
    space = f"s{app[1:]}"
    iid = lab.dynos(app)["web.1"]["instance"]
    lab.ok("faults:add", "latency", "--ms", "200", "--router", space, "--to-instance", iid)
    router = router_of(lab, space)
    assert len(proxies(router)) == 1
    r = run(lab, app, 20, 4)
    w1, w2 = stats(r, "web.1"), stats(r, "web.2")
    print(f"router latency toward web.1: web.1 p50 {w1['p50']} ms; web.2 p50 {w2['p50']} ms")
    assert 200 <= w1["p50"] <= 300 and w2["p50"] < 50
    assert r.summary["total"]["errors"] == 0
    lab.ok("faults:clear", "--router", space)
    nothing_left(router)


# -- nothing left after a controller kill -9 ------------------------------------------------------------------
def test_kill9_restart_reapplies_once_and_down_leaves_nothing(fresh_lab: Lab, app_name: str):
    """The controller dies with a proxy running at each end; its successor re-applies the faults without a
    second proxy, and ``down`` leaves nothing labelled with the lab (the fixture checks)."""
    lab = fresh_lab
    deploy_sample(lab, app_name, 1)
    lab.ok("faults:add", "latency", "--ms", "100", "--dyno", "web.1", "-a", app_name)
    lab.ok("faults:add", "reset", "--router", "common", "--to-instance", lab.dynos(app_name)["web.1"]["instance"])
    sb, router = sandbox_of(lab, app_name, "web.1"), router_of(lab)
    assert len(proxies(sb)) == 1 and len(proxies(router)) == 1
    resp, rid = get_with_id(lab, app_name, "/", timeout=5)
    assert resp.status_code == 503 and router_code(lab, app_name, rid) == "H13"

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
    assert sorted(f["kind"] for f in lab.json("faults")) == ["latency", "reset"]
    assert len(proxies(sb)) == 1 and len(proxies(router)) == 1, "re-applied, not doubled"

    router.restart(timeout=5)  # a new network namespace: the controller puts the router's fault back
    wait_until(
        lambda: "REDIRECT" in sh(router, "iptables -t nat -S 2>/dev/null"),
        20,
        0.3,
        "the router's REDIRECT back after a restart",
    )
    assert len(proxies(router)) == 1

    def h13_again() -> bool:  # the restarted router may publish another port (the lab asked for any)
        port = lab.json("status")["router"]["port"]
        try:
            resp, rid = get_with_id(lab, app_name, "/", timeout=5, port=port)
        except requests.RequestException:
            return False
        return resp.status_code == 503 and router_code(lab, app_name, rid) == "H13"

    wait_until(h13_again, 20, 0.3, "H13 again through the restarted router")
    lab.ok("faults:clear", "--router", "common")
    nothing_left(router)
    port = lab.json("status")["router"]["port"]
    resp = requests.get(f"http://127.0.0.1:{port}/", headers={"Host": f"{app_name}.localhost"}, timeout=5)
    assert resp.status_code == 200, "the app answers once the router fault is gone"
    lab.ok("down")
