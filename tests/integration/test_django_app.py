"""A real Heroku-style Django app deploys unmodified (issue 8): HTTPS router, release phase, build cache."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests

from tests.conftest import Lab, wait_until
from tests.fixtures import DJANGO_APP, failing_release_app

pytestmark = pytest.mark.docker


def _https(lab: Lab, app: str, path: str = "/") -> requests.Response:
    s = lab.json("status")["router"]
    return requests.get(
        f"https://127.0.0.1:{s['https_port']}{path}",
        headers={"Host": f"{app}.localhost"},
        verify=s["ca_cert"],
        timeout=10,
        allow_redirects=False,
    )


def test_django_app_over_https_with_release_phase_and_cache(lab: Lab, app_name: str, tmp_path: Path):
    app = app_name
    lab.ok("apps:create", app)
    try:
        first = time.time()
        lab.ok("deploy", str(DJANGO_APP), "-a", app)
        first = time.time() - first
        lab.wait_up(app, ["web.1"], timeout=60)
        wait_until(lambda: _https(lab, app).status_code == 200, 20, what="HTTPS 200 through the router")
        assert "web.1" in _https(lab, app).text
        plain = requests.get(
            f"http://127.0.0.1:{lab.port}/", headers={"Host": f"{app}.localhost"}, timeout=10, allow_redirects=False
        )
        assert plain.status_code == 301 and plain.headers["Location"].startswith("https://")
        css = _https(lab, app, "/static/css/site.css")  # whitenoise (settings.py) serves what collectstatic wrote
        assert css.status_code == 200 and css.headers["Content-Type"].startswith("text/css"), css.status_code
        assert css.content == (DJANGO_APP / "static" / "css" / "site.css").read_bytes()
        logs = lab.ok("logs", "-a", app, "-p", "release", "-n", "500")
        assert "State changed from up to complete" in logs
        assert logs.count("Starting process with command `python manage.py migrate --no-input`") == 1

        lab.ok("ps:scale", "web=2", "-a", app)
        lab.wait_up(app, ["web.1", "web.2"], timeout=60)
        lab.ok("ps:restart", "web.1", "-a", app)
        lab.ok("ps:stop", "web.2", "-a", app)
        wait_until(lambda: all(d["state"] == "up" for d in lab.dynos(app).values()), 60, what="back up")
        wait_until(lambda: _https(lab, app).status_code == 200, 20)

        second = time.time()
        lab.ok("deploy", str(DJANGO_APP), "-a", app)  # unchanged requirements: the pip layer is cached
        second = time.time() - second
        print(f"django deploy: first {first:.1f}s, second {second:.1f}s")
        assert second < 30 and second < first

        bad = failing_release_app(tmp_path / "bad")
        codes = []
        r = lab.cli("deploy", str(bad), "-a", app)
        for _ in range(20):
            codes.append(_https(lab, app).status_code)
        assert r.code != 0 and "Release command failed" in r.err
        assert codes == [200] * 20, "the old release keeps serving"
        releases = lab.json("releases", "-a", app)
        assert releases[0]["status"] == "failed"
        assert {d["release"]["version"] for d in lab.dynos(app).values()} == {releases[1]["version"]}
    finally:
        lab.ok("apps:destroy", "-a", app)
