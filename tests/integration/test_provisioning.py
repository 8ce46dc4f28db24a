"""Provisioning of new runtime instances (issue 16 item 4), measured through the router.

The lab runs at time scale 0.05 with a provision time of 100 s, so a new instance provisions for P = 5 s: a Private
Space ``ps:stop`` (new host) costs a one-dyno app at least P before the new container's first 200, a ``ps:restart``
(same host) costs only the boot; with two dynos the other one keeps serving; a controller killed while an instance
provisions leaves nothing half-made.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from datetime import datetime

import pytest
import requests

from tests.conftest import Lab, deploy_sample, running_lab, wait_until
from tests.integration.helpers import Traffic, controller_pid, lab_containers

pytestmark = pytest.mark.docker

TIMESCALE, PROVISION = 0.05, 100.0
P = TIMESCALE * PROVISION  # seconds a new instance provisions in this lab


@pytest.fixture(scope="module")
def plab(lab_state) -> Iterator[Lab]:
    with running_lab(timescale=TIMESCALE, provision_time=PROVISION) as own:
        yield own


def first_200_from(lab: Lab, app: str, old_port: int, timeout: float = 60.0) -> float:
    """When the router first answers 200 from a container other than the one on ``old_port``."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            r = lab.get(app, timeout=15)
        except requests.RequestException:
            continue
        if r.status_code == 200 and r.json()["port"] != old_port:
            return time.time()
        if r.status_code != 503:  # the router holds (H20) while no web dyno is up; anything else is wrong
            raise AssertionError(f"unexpected {r.status_code} while waiting: {r.text[:200]}")
    raise AssertionError(f"no 200 from a new container within {timeout} s")


def instances(lab: Lab) -> dict[str, dict]:
    return {i["id"]: i for i in lab.json("instances")}


def test_status_shows_the_provision_time(plab: Lab):
    assert plab.json("status")["provision_time"] == PROVISION
    bad = plab.cli("up", "--provision-time", "5")
    assert bad.code != 0 and "already up with other settings" in bad.err


def test_ps_stop_waits_for_a_new_instance_and_ps_restart_does_not(plab: Lab):
    lab, space, app = plab, "provsp", "provapp"
    lab.ok("spaces:create", space)
    deploy_sample(lab, app, web=1, space=space)
    before = lab.dynos(app)["web.1"]

    t0 = time.time()
    lab.ok("ps:restart", "web.1", "-a", app)
    restart_delay = first_200_from(lab, app, before["port"]) - t0
    after_restart = lab.dynos(app)["web.1"]
    assert after_restart["instance"] == before["instance"], "ps:restart keeps the instance"

    t0 = time.time()
    lab.ok("ps:stop", "web.1", "-a", app)
    waiting = lab.dynos(app)["web.1"]
    new = waiting["instance"]
    assert new != before["instance"] and waiting["state"] == "starting" and waiting["container"] is None, waiting
    shown = instances(lab)[new]
    ready = datetime.fromisoformat(shown["ready_at"]).timestamp()  # ISO 8601 UTC in --json
    assert ready >= t0 + P - 1.0, shown  # it provisions for P from the stop (the JSON's time is to the second)
    if time.time() < t0 + P - 0.5:  # (a very loaded machine may take P to answer the two calls above)
        assert shown["state"] == "provisioning", shown
    stop_delay = first_200_from(lab, app, after_restart["port"]) - t0
    print(f"P={P:.1f} s: ps:restart first 200 after {restart_delay:.2f} s, ps:stop after {stop_delay:.2f} s")
    assert stop_delay >= P, f"ps:stop served again after {stop_delay:.2f} s, before the {P} s provisioning"
    assert restart_delay < P, f"ps:restart took {restart_delay:.2f} s: it must not provision"
    assert instances(lab)[new]["state"] == "running"
    assert lab.dynos(app)["web.1"]["instance"] == new

    # With two dynos, the other keeps serving while web.1's new host provisions.
    lab.ok("ps:scale", "web=2", "-a", app)
    lab.wait_up(app, ["web.1", "web.2"], timeout=90)
    with Traffic(lab, app, rps=10, max_seconds=60) as traffic:
        time.sleep(0.5)
        old = lab.dynos(app)["web.1"]["container"]
        lab.ok("ps:stop", "web.1", "-a", app)
        wait_until(
            lambda: (d := lab.dynos(app)["web.1"])["state"] == "up" and d["container"] != old,
            P + 60,
            0.3,
            "web.1 up on its new instance",
        )
        time.sleep(0.5)
    assert traffic.records and traffic.failed() == [], traffic.failed()[:3]
    assert {r["dyno"] for r in traffic.records} == {"web.1", "web.2"}
    lab.ok("apps:destroy", "-a", app)
    lab.ok("spaces:destroy", space)


def test_kill9_while_an_instance_provisions(plab: Lab):
    """The controller dies while web.1's new instance provisions; the restarted one carries on with it."""
    lab, space, app = plab, "k9prov", "k9provapp"
    lab.ok("spaces:create", space)
    deploy_sample(lab, app, web=1, space=space)
    old = lab.dynos(app)["web.1"]
    pid = controller_pid(lab)
    assert pid
    lab.ok("ps:stop", "web.1", "-a", app)
    new = lab.dynos(app)["web.1"]["instance"]
    assert instances(lab)[new]["state"] == "provisioning"
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: controller_pid(lab) not in (None, pid), 30, 0.2, "the supervisor restarting the controller")
    up = lab.wait_up(app, ["web.1"], timeout=P + 60)["web.1"]
    assert up["instance"] == new, "the restarted controller starts web.1 on the instance that was provisioning"
    assert set(instances(lab)) & {old["instance"], new} == {new}
    wait_until(lambda: not lab_containers(lab.name, "sandbox", instance=old["instance"]), 30, 0.3, "old sandbox gone")
    assert lab.get(app).status_code == 200
    lab.ok("apps:destroy", "-a", app)
    lab.ok("spaces:destroy", space)


def test_host_failure_moves_to_a_ready_instance_or_waits_for_a_new_one(plab: Lab):
    """Common Runtime: the pool's other (ready) instances take the dyno at once; the failed host's replacement
    provisions. Private Space: the dyno's new dedicated instance provisions first."""
    lab, space, cr, ps = plab, "hfprov", "hfcr", "hfps"
    deploy_sample(lab, cr, web=1)
    failed = lab.dynos(cr)["web.1"]["instance"]
    ready = {i for i, v in instances(lab).items() if v["runtime"] == "common" and v["state"] == "running"} - {failed}
    t0 = time.time()
    lab.ok("faults:add", "host-failure", "--instance", failed)
    pool = {i: v for i, v in instances(lab).items() if v["runtime"] == "common"}
    assert failed not in pool and [v["state"] for i, v in pool.items() if i not in ready] == ["provisioning"], pool
    moved = lab.wait_up(cr, ["web.1"], timeout=30)["web.1"]
    assert moved["instance"] in ready and time.time() - t0 < P, (moved["instance"], time.time() - t0)

    lab.ok("spaces:create", space)
    deploy_sample(lab, ps, web=1, space=space)
    failed = lab.dynos(ps)["web.1"]["instance"]
    t0 = time.time()
    lab.ok("faults:add", "host-failure", "--instance", failed)
    waiting = lab.dynos(ps)["web.1"]
    assert waiting["state"] == "starting" and instances(lab)[waiting["instance"]]["state"] == "provisioning"
    up = lab.wait_up(ps, ["web.1"], timeout=P + 60)["web.1"]
    assert up["instance"] == waiting["instance"] and time.time() - t0 >= P
    for app in (cr, ps):
        lab.ok("apps:destroy", "-a", app)
    lab.ok("spaces:destroy", space)
