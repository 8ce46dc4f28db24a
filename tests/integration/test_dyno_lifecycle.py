"""Dyno lifecycle and router fidelity (lab-spec §4-§5), at the session lab's time scale 0.05.

Durations come from the time scale: boot timeout 60 s -> 3 s, grace 30 s -> 1.5 s, first byte 30 s ->
1.5 s, the first Common Runtime cool-off 20 min -> 60 s.
"""

from __future__ import annotations

import time

import docker
import pytest

from tests.conftest import SAMPLE_APP, Lab, wait_until

pytestmark = pytest.mark.docker
SCALE = 0.05


def _app(lab: Lab, name: str, space: str | None = None, config: tuple[str, ...] = (), web: int = 1) -> str:
    if space:
        lab.ok("spaces:create", space)
        lab.ok("apps:create", name, "--space", space)
    else:
        lab.ok("apps:create", name)
    if config:
        lab.ok("config:set", *config, "-a", name)
    lab.ok("deploy", str(SAMPLE_APP), "-a", name)
    if web != 1:
        lab.ok("ps:scale", f"web={web}", "-a", name)
    return name


def _destroy(lab: Lab, name: str, space: str | None = None) -> None:
    lab.ok("apps:destroy", "-a", name)
    if space:
        lab.ok("spaces:destroy", space)


def _count(lab: Lab, app: str, needle: str) -> int:
    return lab.logs(app).count(needle)


def test_wrong_port_r10_then_crash_policy_common_runtime(lab: Lab, app_name: str):
    app = _app(lab, app_name, config=("BIND_PORT=3999",))
    try:
        wait_until(lambda: _count(lab, app, "Error R10 (Boot timeout)") >= 1, 15, what="R10")
        logs = lab.logs(app)
        assert "Stopping process with SIGKILL" in logs and "State changed from starting to crashed" in logs
        # First crash: restarted at once; the second goes into the 20 min (-> 60 s) cool-off.
        wait_until(lambda: _count(lab, app, "Error R10 (Boot timeout)") >= 2, 15, what="second R10")
        wait_until(lambda: lab.dynos(app)["web.1"]["state"] == "crashed", 10, what="crashed in cool-off")
        wait_until(lambda: lab.get(app).headers.get("X-Labctl-Error") == "H10", 5, what="router answers H10")
        assert lab.get(app).status_code == 503
        starts = _count(lab, app, "Starting process with command")
        time.sleep(5)
        assert _count(lab, app, "Starting process with command") == starts, "cool-off: no restart within 5 s"
        assert lab.dynos(app)["web.1"]["state"] == "crashed"
        wait_until(lambda: "code=H10" in lab.logs(app), 10, what="H10 router line")
    finally:
        _destroy(lab, app)


def test_private_space_restarts_crashes_without_backoff(lab: Lab, app_name: str):
    space = f"s{app_name[1:]}"
    app = _app(lab, app_name, space=space, config=("CRASH_AFTER=0.3",))
    try:
        wait_until(lambda: _count(lab, app, "State changed from up to crashed") >= 3, 45,
                   what="three crashes, each restarted at once")
        assert "Process exited with status 1" in lab.logs(app)
    finally:
        _destroy(lab, app, space)


def test_ignoring_sigterm_gives_r12_and_the_dyno_comes_back(lab: Lab, app_name: str):
    app = _app(lab, app_name, config=("IGNORE_SIGTERM=1",))
    try:
        lab.wait_up(app, ["web.1"])
        lab.ok("ps:restart", "web.1", "-a", app)
        wait_until(lambda: "Error R12 (Exit timeout)" in lab.logs(app), 15, what="R12 after the grace")
        logs = lab.logs(app)
        assert "ignoring SIGTERM" in logs and "Process exited with status 137" in logs
        lab.wait_up(app, ["web.1"])
        assert lab.get(app).status_code == 200
    finally:
        _destroy(lab, app)


def test_slow_request_h12_while_the_app_finishes(lab: Lab, app_name: str):
    app = _app(lab, app_name)
    try:
        lab.wait_up(app, ["web.1"])
        started = time.time()
        r = lab.get(app, "/slow?ms=3000")
        took = time.time() - started
        assert r.status_code == 503 and r.headers.get("X-Labctl-Error") == "H12"
        assert 30 * SCALE * 0.8 <= took < 3.0, f"H12 at the scaled 30 s (took {took:.2f}s)"
        wait_until(lambda: "code=H12" in lab.logs(app), 10, what="H12 router line")
        wait_until(lambda: "finished slow request after 3000 ms" in lab.logs(app), 10, what="app finished later")
        assert 'desc="Request timeout"' in lab.logs(app)
    finally:
        _destroy(lab, app)


def test_maintenance_h80_dynos_untouched(lab: Lab, app_name: str):
    app = _app(lab, app_name)
    try:
        before = lab.wait_up(app, ["web.1"])["web.1"]["container"]
        lab.ok("maintenance:on", "-a", app)
        assert lab.ok("maintenance", "-a", app).strip() == "on"
        r = lab.get(app)
        assert r.status_code == 503 and r.headers.get("X-Labctl-Error") == "H80"
        wait_until(lambda: "code=H80" in lab.logs(app), 10, what="H80 line")
        assert lab.dynos(app)["web.1"]["container"] == before
        lab.ok("maintenance:off", "-a", app)
        wait_until(lambda: lab.get(app).status_code == 200, 10, what="served again")
    finally:
        _destroy(lab, app)


def test_memory_r14_then_r15_kill_and_restart(lab: Lab, app_name: str):
    app = _app(lab, app_name)
    try:
        first = lab.wait_up(app, ["web.1"])["web.1"]["container"]
        for _ in range(4):  # 600 MB in steps that each fit the scaled 1.5 s first-byte window
            assert lab.get(app, "/mem?mb=150", timeout=30).status_code == 200  # Standard-1X quota: 512 MB
        wait_until(lambda: "Error R14 (Memory quota exceeded)" in lab.logs(app), 15, what="R14")
        assert "Process running mem=" in lab.logs(app)
        for _ in range(6):  # on past the 1024 MB R15 limit: the kernel kills the dyno
            try:
                if lab.get(app, "/mem?mb=150", timeout=30).status_code != 200:
                    break
            except Exception:  # noqa: BLE001 - the connection may die with the dyno
                break
        wait_until(lambda: "Error R15 (Memory quota vastly exceeded)" in lab.logs(app), 20, what="R15")
        wait_until(lambda: lab.dynos(app)["web.1"]["state"] == "up"
                   and lab.dynos(app)["web.1"]["container"] != first, 20, what="restarted after R15")
    finally:
        _destroy(lab, app)


def _refuse(lab: Lab, app: str, dyno: str) -> None:
    """Make one dyno refuse connections while staying `up` (a reject rule in its instance's namespace)."""
    d = lab.dynos(app)[dyno]
    client = docker.from_env()
    sandbox = client.containers.list(ignore_removed=True, filters={"label": [
                                                        f"io.labctl.lab={lab.name}", "io.labctl.kind=sandbox",
                                                        f"io.labctl.instance={d['instance']}",
                                                        f"io.labctl.app={app}"]})[0]
    code, out = sandbox.exec_run(["iptables", "-I", "INPUT", "-p", "tcp", "--dport", str(d["port"]),
                                  "-j", "REJECT", "--reject-with", "tcp-reset"])
    assert code == 0, out


def test_refused_connect_retried_in_common_runtime_not_in_private_space(lab: Lab, app_name: str):
    cr = _app(lab, app_name, web=2)
    space = f"s{app_name[1:]}"
    ps = _app(lab, f"p{app_name[1:]}", space=space, web=2)
    try:
        lab.wait_up(cr, ["web.1", "web.2"])
        lab.wait_up(ps, ["web.1", "web.2"])
        _refuse(lab, cr, "web.1")
        _refuse(lab, ps, "web.1")
        cr_codes = [lab.get(cr).status_code for _ in range(30)]
        assert cr_codes == [200] * 30, "Common Runtime retries a refused connect on another dyno"
        ps_results = [lab.get(ps) for _ in range(30)]
        failed = [r for r in ps_results if r.status_code != 200]
        assert failed, "Private Space does not retry: requests routed to the bad dyno fail"
        assert all(r.headers.get("X-Labctl-Dyno") == "web.1" for r in failed)
        assert all(r.json()["dyno"] == "web.2" for r in ps_results if r.status_code == 200)
    finally:
        _destroy(lab, cr)
        _destroy(lab, f"p{app_name[1:]}", space)


def test_cycling_ps_wait_ps_type_and_timescale(lab: Lab, app_name: str):
    app = _app(lab, app_name)
    try:
        lab.wait_up(app, ["web.1"])
        r = lab.cli("ps:wait", "-a", app, "--wait-interval", "0.2", "--timeout", "30")
        assert r.code == 0 and "1 / 1, done" in r.err
        lab.ok("ps:type", "web=standard-2x", "-a", app)
        wait_until(lambda: lab.dynos(app)["web.1"]["size"] == "Standard-2X"
                   and lab.dynos(app)["web.1"]["state"] == "up", 20, what="resized and back up")
        assert "web     Standard-2X  1" in lab.ok("ps:type", "-a", app)
        # Daily cycling: each dyno shows when it will cycle (24 h + 0-216 min, scaled) ...
        from datetime import datetime

        dyno = lab.dynos(app)["web.1"]
        cycle_in = datetime.fromisoformat(dyno["cycle_at"].replace("Z", "+00:00")).timestamp() - time.time()
        assert 24 * 3600 * SCALE - 5 <= cycle_in <= (24 * 3600 + 216 * 60) * SCALE + 1
        # ... and slowing or speeding the lab clock rescales what is left of it: at 1e-5 it is ~1 s.
        lab.ok("timescale", "0.00001")
        try:
            wait_until(lambda: "heroku[web.1]: Cycling" in lab.logs(app), 15, what="Cycling")
        finally:
            lab.ok("timescale", str(SCALE))
        assert lab.json("status")["timescale"] == SCALE
        lab.wait_up(app, ["web.1"], timeout=30)
    finally:
        _destroy(lab, app)
