"""A deploy of unchanged source reuses the slug built from the same inputs (issue 18: second deploy ≤ 2 s)."""

from __future__ import annotations

import shutil
from pathlib import Path

import docker
import pytest

from tests.conftest import SAMPLE_APP, Lab, wait_until

pytestmark = pytest.mark.docker


def _deploy(lab: Lab, src: Path, app: str) -> str:
    r = lab.cli("deploy", str(src), "-a", app)
    assert r.code == 0, r.err + r.out
    return r.out + r.err  # the build's lines go to stderr, as the Heroku CLI's "remote:" lines


def _slug_id(lab: Lab, app: str, version: int) -> str:
    return docker.from_env().images.get(f"labctl-slug/{lab.name}-{app}:v{version}").id


def test_unchanged_source_reuses_the_slug_and_a_change_builds_again(lab: Lab, app_name: str, tmp_path: Path):
    src = tmp_path / "app"
    shutil.copytree(SAMPLE_APP, src)
    lab.ok("apps:create", app_name)
    try:
        first = _deploy(lab, src, app_name)
        second = _deploy(lab, src, app_name)
        assert _slug_id(lab, app_name, 2) == _slug_id(lab, app_name, 1)
        for out in (first, second):
            assert "-----> Python app detected" in out
            assert "Procfile declares types -> web, worker" in out
        assert "done, v2" in second

        def serves_v2() -> bool:
            r = lab.get(app_name)  # a 503 (H20) while the new release's dyno boots
            return r.status_code == 200 and r.json().get("release") == "v2"

        wait_until(serves_v2, 30, what="v2 serves")
        (src / "app.py").write_text((src / "app.py").read_text() + "\n# changed\n")
        _deploy(lab, src, app_name)
        assert _slug_id(lab, app_name, 3) != _slug_id(lab, app_name, 2)
    finally:
        lab.ok("apps:destroy", "-a", app_name)
