"""An existing Heroku API client, unmodified, against the lab (issue 19: "an existing Heroku client pointed at the
lab"): the ``heroku3`` Python client (Basic auth with the token as password, ``Accept: …version=3.cedar-acm``,
``Range: id ..; max=1000;``, ``maintenance: 0/1``), pointed at ``status --json``'s ``api.url``.

heroku3 is not a runtime dependency of labctl (its last release is from 2023 and it needs ``six`` without declaring
it): both are in the ``dev`` extra, so the module runs wherever the tests do.
"""

from __future__ import annotations

import uuid

import heroku3.api as heroku3_api
import pytest
import requests

from tests.conftest import Lab, deploy_sample
from tests.integration.helpers import assert_nothing_lost

pytestmark = [pytest.mark.docker, pytest.mark.xdist_group("test_heroku3_client")]


@pytest.fixture(scope="module")
def heroku(lab: Lab):
    h = heroku3_api.Heroku(session=requests.session())
    h._heroku_url = lab.json("status")["api"]["url"]  # the client's base URL (it has no public setting for it)
    assert h.authenticate(lab.ok("auth:token").strip()) is True
    return h


def test_apps_maintenance_config_rename_delete(heroku):
    name = f"h{uuid.uuid4().hex[:8]}"
    app = heroku.create_app(name=name)
    assert app.name == name and uuid.UUID(app.id)
    assert name in [a.name for a in heroku.apps()]
    app.enable_maintenance_mode()
    assert heroku.app(name).maintenance is True
    app.disable_maintenance_mode()
    config = app.config()
    config["FOO"] = "bar"
    assert heroku.app(name).config().to_dict() == {"FOO": "bar"}
    assert {f.name for f in app.features()} >= {"preboot", "log-runtime-metrics"}
    app.rename(f"{name}-r")
    assert heroku.app(f"{name}-r").id == app.id
    heroku.app(f"{name}-r").delete()
    assert name not in [a.name for a in heroku.apps()] and 0 < heroku.ratelimit_remaining() <= 4500


def test_formation_dynos_run_and_rollback(heroku, lab: Lab):
    name = deploy_sample(lab, f"h{uuid.uuid4().hex[:8]}")
    try:
        app = heroku.app(name)
        formation = app.process_formation()
        assert {p.type: p.quantity for p in formation} == {"web": 1, "worker": 0}
        formation["web"].scale(2)
        assert app.process_formation()["web"].quantity == 2
        formation["web"].resize("standard-2x")
        assert app.process_formation()["web"].size == "Standard-2X"
        batch = app.batch_scale_formation_processes({"web": 1, "worker": 0})
        assert {(p.type, p.quantity) for p in batch} == {("web", 1), ("worker", 0)}
        assert_nothing_lost(lab, {name: {"web": 1}}, timeout=120)
        assert [d.name for d in app.dynos()] == ["web.1"]
        app.restart()
        dyno = app.run_command_detached("echo hi")
        assert "run." in repr(dyno)
        releases = app.releases()
        assert [r.version for r in releases] == [1]
        assert app.rollback(releases[0].id).version == 2
        assert_nothing_lost(lab, {name: {"web": 1}}, timeout=120)
    finally:
        lab.cli("apps:destroy", "-a", name, "--confirm", name)
