"""A router per Private Space, behind the common router (issue 17 item 1), and the router's timing through a
whole lab: a Private Space app is served and logged by its own router; ps:stop and a controller kill -9
leave that router alone; destroying the space removes it; `down` leaves nothing.
"""

from __future__ import annotations

import os
import re
import signal
import time
import uuid

import pytest
import requests

from labctl import const
from tests.conftest import Lab, deploy_sample, running_lab, wait_until
from tests.integration.helpers import controller_pid, docker_client, lab_containers, orphan_problems

pytestmark = pytest.mark.docker
SCALE = 0.05


def _routers(lab: Lab) -> dict[str, dict]:
    return {r["runtime"]: r for r in lab.json("status")["routers"]}


def _router_id(lab: Lab, space: str) -> str:
    [c] = [c for c in lab_containers(lab.name, const.KIND_ROUTER) if c.labels.get(const.LABEL_SPACE) == space]
    return c.id


def test_a_private_space_app_is_served_by_its_own_router(lab_state):
    with running_lab(down_must_succeed=False) as lab:
        space, app = f"s{uuid.uuid4().hex[:6]}", f"a{uuid.uuid4().hex[:6]}"
        lab.ok("spaces:create", space)
        routers = _routers(lab)
        assert set(routers) == {"common", space}
        assert routers[space]["container"] == f"labctl-{lab.name}-router-space-{space}"
        assert routers[space]["state"] == "running" and re.match(r"^\d+\.\d+\.\d+\.\d+$", routers[space]["address"])
        assert routers["common"]["address"] == f"127.0.0.1:{lab.port}"
        deploy_sample(lab, app, web=2, space=space)
        before = _router_id(lab, space)

        # served through the common router's published port, routed and logged by the space's router
        r, fields = lab.answer(app, "/headers")
        assert r.status_code == 200 and fields["dyno"] == r.json()["dyno"] and fields["at"] == "info"
        h = r.json()["headers"]
        assert h["X-Forwarded-Port"] == str(lab.port) and h["Via"] == "1.1 vegur"
        assert h["X-Forwarded-For"] == fields["fwd"] and "," not in h["X-Forwarded-For"]  # one hop seen, not two
        assert h["X-Request-Id"] == fields["request_id"]
        space_log = docker_client().containers.get(before).logs().decode(errors="replace")
        assert fields["request_id"] in space_log, "the space router logged it"
        common_log = docker_client().containers.get(f"labctl-{lab.name}-router").logs().decode(errors="replace")
        assert f'"request_id":"{fields["request_id"]}"' not in common_log, "the front does not log it again"
        assert len(re.findall(f"request_id={fields['request_id']} ", lab.logs(app))) == 1

        lab.ok("ps:stop", "web.1", "-a", app)
        lab.wait_up(app, ["web.1", "web.2"], timeout=90)
        assert _router_id(lab, space) == before, "ps:stop never touches the router"
        assert lab.answer(app)[0].status_code == 200

        # kill -9 of the controller, then a new one: it finds the routers again
        pid = controller_pid(lab)
        assert pid
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: controller_pid(lab) not in (None, pid), 60, 0.5, "a new controller")
        assert _router_id(lab, space) == before
        r, fields = lab.answer(app)
        assert r.status_code == 200 and fields["dyno"] in ("web.1", "web.2")
        assert orphan_problems(lab, [space]) == []

        # the space goes: its router goes with it
        lab.ok("apps:destroy", "-a", app)
        lab.ok("spaces:destroy", space)
        assert set(_routers(lab)) == {"common"}
        assert [c.labels.get(const.LABEL_SPACE) for c in lab_containers(lab.name, const.KIND_ROUTER)] == [None]


def test_streaming_and_idle_windows_through_a_space_router(lab: Lab, app_name: str):
    space = f"s{app_name[1:]}"
    lab.ok("spaces:create", space)
    try:
        deploy_sample(lab, app_name, space=space)
        every = round(40 * SCALE * 1000)  # a byte every 40 s (scaled): inside the rolling 55 s
        r, fields = lab.answer(app_name, f"/stream?every={every}&count=2", timeout=30)
        assert r.status_code == 200 and r.content == b"<..", r.content
        assert fields["at"] == "info" and fields["status"] == "200" and fields["dyno"] == "web.1"
        idle = round(60 * SCALE * 1000)  # 60 s (scaled) of silence after the first byte: H15 at 55 s
        rid = f"labctl-test-{uuid.uuid4().hex}"
        t = time.monotonic()
        with pytest.raises(requests.RequestException):  # the body is cut short: 1 of the 2 promised bytes
            lab.get(app_name, f"/stream?every={idle}&count=1", timeout=30, rid=rid).content  # noqa: B018
        took = time.monotonic() - t
        # cut (the body is short: the dyno would have completed it at 3 s) at the scaled 55 s, give or take load
        assert 55 * SCALE - 0.1 <= took < idle / 1000 + 1.0, f"cut at the scaled 55 s (took {took:.2f}s)"
        fields = lab.router_line(app_name, rid)
        assert fields["line"].startswith('at=error code=H15 desc="Idle connection" method=GET ')
        assert fields["dyno"] == "web.1" and fields["status"] == "503"
        # H18: the dyno closes mid-response; H13: it closes without a byte (no retry in a space)
        rid = f"labctl-test-{uuid.uuid4().hex}"
        with pytest.raises(requests.RequestException):
            lab.get(app_name, "/cut?bytes=10", rid=rid).content  # noqa: B018
        assert lab.router_line(app_name, rid)["line"].startswith(
            'sock=backend at=error code=H18 desc="Server Request Interrupted" method=GET path="/cut?bytes=10" '
        )
        r, fields = lab.answer(app_name, "/hangup")
        assert r.status_code == 503 and fields["code"] == "H13" and fields["dyno"] == "web.1"
    finally:
        lab.cli("apps:destroy", "-a", app_name)
        lab.cli("spaces:destroy", space)
