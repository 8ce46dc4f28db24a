"""Dyno lifecycle and router fidelity (lab-spec §4-§5), at the session lab's time scale 0.05.

Durations come from the time scale: boot timeout 60 s -> 3 s, grace 30 s -> 1.5 s, first byte 30 s ->
1.5 s, the router's boot hold 75 s -> 3.75 s, the first Common Runtime cool-off 20 min -> 60 s.
"""

from __future__ import annotations

import re
import time
import uuid

import docker
import pytest
import requests

from tests.conftest import SAMPLE_APP, Lab, running_lab, wait_until

pytestmark = pytest.mark.docker
SCALE = 0.05
BOOT_TIMEOUT = 60 * SCALE  # R10
BOOT_HOLD = 75 * SCALE  # H20
FIRST_BYTE = 30 * SCALE  # H12


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
        # SIGKILL follows R10 at once; "crashed" is logged when the engine reports the exit, a moment later
        wait_until(lambda: "State changed from starting to crashed" in lab.logs(app), 10, what="crashed after R10")
        assert "Stopping process with SIGKILL" in lab.logs(app)
        # First crash: restarted at once; the second goes into the 20 min (-> 60 s) cool-off.
        wait_until(lambda: _count(lab, app, "Error R10 (Boot timeout)") >= 2, 15, what="second R10")
        wait_until(lambda: lab.dynos(app)["web.1"]["state"] == "crashed", 10, what="crashed in cool-off")
        wait_until(lambda: lab.answer(app)[1].get("code") == "H10", 5, what="router answers H10")
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
        wait_until(
            lambda: _count(lab, app, "State changed from up to crashed") >= 3,
            45,
            what="three crashes, each restarted at once",
        )
        assert "Process exited with status 1" in lab.logs(app)
    finally:
        _destroy(lab, app, space)


def test_ignoring_sigterm_gives_r12_and_the_dyno_comes_back(lab: Lab, app_name: str):
    app = _app(lab, app_name, config=("IGNORE_SIGTERM=1",))
    try:
        lab.wait_up(app, ["web.1"])
        lab.ok("ps:restart", "web.1", "-a", app)
        wait_until(lambda: "Error R12 (Exit timeout)" in lab.logs(app), 15, what="R12 after the grace")
        # the exit status is logged when the engine reports the exit, a moment after R12 and SIGKILL
        wait_until(lambda: "Process exited with status 137" in lab.logs(app), 10, what="exit 137 after R12")
        assert "ignoring SIGTERM" in lab.logs(app)
        lab.wait_up(app, ["web.1"])
        assert lab.get(app).status_code == 200
    finally:
        _destroy(lab, app)


def test_slow_request_h12_while_the_app_finishes(lab: Lab, app_name: str):
    app = _app(lab, app_name)
    try:
        lab.wait_up(app, ["web.1"])
        started = time.time()
        r = lab.get(app, "/slow?ms=3000", rid=f"labctl-test-{uuid.uuid4().hex}")
        took = time.time() - started
        assert r.status_code == 503 and lab.router_line(app, r.request.headers["X-Request-Id"])["code"] == "H12"
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
        r, fields = lab.answer(app)
        assert r.status_code == 503 and fields["code"] == "H80"
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
        wait_until(
            lambda: lab.dynos(app)["web.1"]["state"] == "up" and lab.dynos(app)["web.1"]["container"] != first,
            20,
            what="restarted after R15",
        )
    finally:
        _destroy(lab, app)


def _refuse(lab: Lab, app: str, dyno: str) -> None:
    """Make one dyno refuse connections while staying `up` (a reject rule in its instance's namespace)."""
    d = lab.dynos(app)[dyno]
    client = docker.from_env()
    sandbox = client.containers.list(
        ignore_removed=True,
        filters={
            "label": [
                f"io.labctl.lab={lab.name}",
                "io.labctl.kind=sandbox",
                f"io.labctl.instance={d['instance']}",
                f"io.labctl.app={app}",
            ]
        },
    )[0]
    code, out = sandbox.exec_run(
        [
            "iptables",
            "-I",
            "INPUT",
            "-p",
            "tcp",
            "--dport",
            str(d["port"]),
            "-j",
            "REJECT",
            "--reject-with",
            "tcp-reset",
        ]
    )
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
        # Private Space (heroku-reference §3.1, §5): no retry; the request times out after 30 s with H12.
        ok, failed = [], []
        for _ in range(40):  # random pick: about one in two goes to web.1
            t = time.monotonic()
            r = _get(lab, ps, f"{uuid.uuid4().hex}-refused")
            (ok if r.status_code == 200 else failed).append((r, time.monotonic() - t))
            if len(failed) >= 3 and ok:  # >=: the first three picks may all be web.1 (1 run in 8)
                break
        assert len(failed) >= 3 and ok, "Private Space does not retry: requests routed to the bad dyno fail"
        assert all(r.json()["dyno"] == "web.2" for r, _ in ok)
        for r, took in failed:
            fields = lab.router_line(ps, r.request.headers["X-Request-Id"])
            assert r.status_code == 503 and fields["code"] == "H12", fields
            assert fields["dyno"] == "web.1" and "Application error" in r.text
            assert not [h for h in r.headers if h.lower().startswith("x-labctl-")], r.headers  # none by default
            assert FIRST_BYTE - 0.05 <= took < FIRST_BYTE + 1.0, f"held the scaled 30 s (took {took:.2f}s)"
        rid = failed[0][0].request.headers["X-Request-Id"]
        line = wait_until(
            lambda: next((x for x in lab.logs(ps).splitlines() if rid in x), None),
            10,
            what="router line of a refused request",
        )
        assert 'heroku[router]: at=error code=H12 desc="Request timeout" method=GET path="/" ' in line
        ms = re.search(r" dyno=web\.1 connect= service=(\d+)ms status=503 bytes=0 ", line)
        assert ms and FIRST_BYTE * 1000 - 50 <= int(ms.group(1)) < FIRST_BYTE * 1000 + 1000, line
    finally:
        _destroy(lab, cr)
        _destroy(lab, f"p{app_name[1:]}", space)


def test_cycling_ps_wait_ps_type_and_timescale(lab: Lab, app_name: str):
    app = _app(lab, app_name)
    try:
        lab.wait_up(app, ["web.1"])
        # CLI src/commands/ps/wait.ts: nothing to wait for prints nothing; an interval under 10 is refused
        r = lab.cli("ps:wait", "-a", app, "--wait-interval", "10", "--timeout", "30")
        assert (r.code, r.out, r.err) == (0, "", "")
        r = lab.cli("ps:wait", "-a", app, "--wait-interval", "1")
        assert r.code == 1 and r.err.strip() == "▸    wait-interval must be at least 10"
        lab.ok("ps:type", "web=standard-2x", "-a", app)
        wait_until(
            lambda: lab.dynos(app)["web.1"]["size"] == "Standard-2X" and lab.dynos(app)["web.1"]["state"] == "up",
            20,
            what="resized and back up",
        )
        assert re.search(r"^ web +Standard-2X +1$", lab.ok("ps:type", "-a", app), re.M)  # CLI ps/type.ts table
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


def _get(lab: Lab, app: str, request_id: str, timeout: float = 10) -> requests.Response:
    return requests.get(
        f"http://127.0.0.1:{lab.port}/",
        timeout=timeout,
        headers={"Host": f"{app}.localhost", "X-Request-Id": request_id},
    )


def _starting(lab: Lab, app: str) -> None:
    """web.1 has a container that has not bound $PORT yet (the router's config for that is in force)."""
    wait_until(
        lambda: (d := lab.dynos(app).get("web.1")) and d["state"] == "starting" and d["container"],
        30,
        0.05,
        "web.1 starting",
    )


def _router_line(lab: Lab, app: str, request_id: str) -> str:
    return wait_until(
        lambda: next((x for x in lab.logs(app).splitlines() if request_id in x), None),
        10,
        what=f"router line {request_id}",
    )


def test_request_held_while_the_web_dyno_boots_then_served(lab: Lab, app_name: str):
    # heroku-reference §2.2 / §3.5: the router queues requests while a web dyno is starting (up to 75 s);
    # the dyno that binds in time serves them. BIND_DELAY 2 s < the scaled boot timeout 3 s < hold 3.75 s.
    app = _app(lab, app_name, config=("BIND_DELAY=2",))
    try:
        _starting(lab, app)
        rid = f"{uuid.uuid4().hex}-held"
        sent = time.time()
        r = _get(lab, app, rid)
        answered = time.time()
        took = answered - sent
        assert r.status_code == 200 and r.json()["dyno"] == "web.1", r.text
        assert 0.3 <= took < BOOT_HOLD, f"held until web.1 bound, then served (took {took:.2f}s)"
        wait_until(lambda: lab.dynos(app)["web.1"]["state"] == "up", 5, what="web.1 up")
        # Held, not just slow: sent before web.1 bound its port, answered after (its "listening on" line between).
        bound = [
            row["ts"]
            for row in lab.json("logs", "-a", app, "-n", "1500", "-d", "web.1", "-s", "app")
            if row["msg"].startswith("listening on ")
        ]
        assert bound and sent < bound[-1] <= answered + 0.1, (
            f"web.1 bound at {bound and bound[-1] - sent:.2f}s, the request was answered at {took:.2f}s"
        )
        logs = lab.logs(app)
        assert "sleeping 2s before binding (BIND_DELAY)" in logs and "Error R10" not in logs
        line = _router_line(lab, app, rid)
        assert "heroku[router]: at=info method=GET " in line and re.search(r" dyno=web\.1 .* status=200 ", line)
    finally:
        _destroy(lab, app)


def test_dyno_that_never_binds_h20_at_the_scaled_75_s_then_h10_in_the_cool_off(lab_state, app_name: str):
    # A lab of its own at time scale 0.2: the dyno must crash at R10 (60 s) and be restarted before the
    # router's H20 (75 s). At the shared lab's 0.05 that left 0.75 s, too thin on a loaded machine (the
    # suite runs three workers on two cores); 0.1 (1.5 s) still failed once in CI at load 12; 0.2 gives 3 s.
    with running_lab(timescale=0.2) as lab:
        _never_binds_h20_then_h10(lab, app_name, boot_hold=75 * 0.2)


def _never_binds_h20_then_h10(lab: Lab, app_name: str, boot_hold: float) -> None:
    # What comes first on Heroku (heroku-reference §2.2, §2.4, §3.5): R10 at 60 s kills the dyno; the
    # Common Runtime restarts a first crash at once ("crashed to starting"), so a web dyno is starting
    # again and the held request keeps waiting until the router's 75 s are over: H20. The second R10
    # starts the 20 min cool-off: nothing is starting, so requests get H10 (App crashed) at once.
    app = _app(lab, app_name, config=("NO_BIND=1",))
    try:
        _starting(lab, app)
        rid = f"{uuid.uuid4().hex}-h20"
        t = time.monotonic()
        r = _get(lab, app, rid, timeout=boot_hold + 10)
        took = time.monotonic() - t
        assert r.status_code == 503 and lab.router_line(app, rid)["code"] == "H20" and "Application error" in r.text
        assert boot_hold - 0.05 <= took < boot_hold + 1.0, f"held the scaled 75 s (took {took:.2f}s)"
        line = _router_line(lab, app, rid)
        assert 'heroku[router]: at=error code=H20 desc="App boot timeout" method=GET path="/" ' in line
        assert line.endswith(" dyno= connect= service= status=503 bytes= protocol=http")
        logs = lab.logs(app)
        assert logs.index("Error R10 (Boot timeout)") < logs.index(rid), "R10 (60 s) came first, then H20 (75 s)"
        assert "State changed from crashed to starting" in logs[: logs.index(rid)]
        wait_until(lambda: lab.dynos(app)["web.1"]["state"] == "crashed", 15, what="second R10: cool-off")
        t = time.monotonic()
        r, fields = lab.answer(app)
        assert r.status_code == 503 and fields["code"] == "H10"
        assert time.monotonic() - t < boot_hold / 2, "nothing is starting: no hold"
    finally:
        _destroy(lab, app)
