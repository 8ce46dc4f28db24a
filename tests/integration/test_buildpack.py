"""The slug build as Heroku's Python buildpack's main path (issue #8), against the real engine, no lab started:
the Django fixture (requirements.txt, .python-version, collectstatic), the pip layer's cache, the Python version
warning, pip's and collectstatic's failures, pyproject.toml and uv.lock apps.

Every image is built under a lab label of this module's own (``test-bp-<hex>``) and removed at the end, the
build-cache layers included.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from labctl import const
from labctl.engine import buildpack, images
from labctl.errors import BuildFailed
from tests.fixtures import DJANGO_APP, copy_django_app

pytestmark = [pytest.mark.docker, pytest.mark.xdist_group("test_buildpack")]  # module fixtures: one worker

APP = "web"  # one app name for every build here: builds share the cache chain as one app's deploys do
SITE_PACKAGES = "/app/.heroku/python/lib/python3.13/site-packages"


@pytest.fixture(scope="module")
def client():
    import docker

    c = docker.from_env(timeout=900)
    c.ping()
    return c


@pytest.fixture(scope="module")
def lab(client) -> Iterator[str]:
    images.ensure_stack_image(client, lambda line: None)
    name = f"test-bp-{uuid.uuid4().hex[:8]}"
    yield name
    label = f"{const.LABEL_LAB}={name}"
    for image in client.images.list(filters={"label": label}):  # tagged slugs first: their layers follow
        client.images.remove(image.id, force=True)
    for _ in range(20):  # what is left: build-cache layers of failed or superseded builds, children first
        left = client.images.list(all=True, filters={"label": label})
        if not left:
            break
        for image in left:
            try:
                client.images.remove(image.id, force=True)
            except Exception:  # a parent whose child is removed later in this same pass
                pass
    assert client.images.list(all=True, filters={"label": label}) == []


class Build:
    """One build_slug call: its tag (or error), output lines and duration."""

    def __init__(self, client, lab: str, version: int, src: Path, **kw):
        self.lines: list[str] = []
        self.error: BuildFailed | None = None
        self.tag = ""
        started = time.monotonic()
        try:
            self.tag = images.build_slug(
                client, lab=lab, app=APP, version=version, src_dir=src, progress=self.lines.append, **kw
            )
        except BuildFailed as err:
            self.error = err
        self.seconds = time.monotonic() - started

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def _run(client, lab: str, image: str, cmd: str) -> str:
    out = client.containers.run(
        image,
        ["bash", "-c", cmd],
        remove=True,
        stdout=True,
        stderr=True,
        labels={const.LABEL_LAB: lab, const.LABEL_KIND: "test"},
    )
    return out.decode()


def _layer(client, tag: str, created_by: str) -> str:
    """The id of the image layer whose instruction contains ``created_by``."""
    ids = [h["Id"] for h in client.images.get(tag).history() if created_by in h.get("CreatedBy", "")]
    assert len(ids) == 1, (tag, created_by, ids)
    return ids[0]


@pytest.fixture(scope="module")
def django_builds(client, lab) -> tuple[Build, Build]:
    """The Django fixture deployed twice, unchanged: the second build must come from the cache."""
    first = Build(client, lab, 1, DJANGO_APP)
    assert first.error is None, f"{first.error}\n{first.text}"
    second = Build(client, lab, 2, DJANGO_APP)
    assert second.error is None, f"{second.error}\n{second.text}"
    return first, second


def test_django_app_builds_like_the_buildpack(client, lab, django_builds, capsys):
    first, _ = django_builds
    assert first.tag == f"labctl-slug/{lab}-{APP}:v1"
    lines = first.lines
    assert lines[0] == f"-----> Building {first.tag} on the lab-24 stack"
    assert "-----> Using Python 3.13.x of the lab-24 stack (.python-version asks for 3.13)" in lines
    assert "-----> Installing requirements with pip" in lines
    assert any(line.startswith("       Successfully installed ") and "Django-6." in line for line in lines)
    assert "-----> $ python manage.py collectstatic --noinput" in lines
    assert any("static file copied to '/app/staticfiles'" in line for line in lines), first.text
    assert lines[-2:] == ["-----> Discovering process types", "       Procfile declares types -> release, web"]
    assert not [line for line in lines if line.startswith(("Step ", " ---> ", "Successfully built"))]
    order = [
        lines.index(s)
        for s in ("-----> Installing requirements with pip", "-----> $ python manage.py collectstatic --noinput")
    ]
    assert order == sorted(order)

    out = _run(
        client,
        lab,
        first.tag,
        "python -c 'import django; print(django.__file__, django.get_version())'; "
        "command -v python gunicorn; ls /app/staticfiles/css; ls -A /tmp",
    )
    assert f"{SITE_PACKAGES}/django/__init__.py 6." in out
    assert "/app/.heroku/python/bin/python\n/app/.heroku/python/bin/gunicorn\n" in out
    assert "site.css" in out.split()  # collected into STATIC_ROOT at build time (and its hashed copy)
    assert "labctl-build" not in out and "ca.crt" not in out
    labels = client.images.get(first.tag).labels
    assert labels[const.LABEL_RELEASE] == "1" and labels[const.LABEL_LAB] == lab
    with capsys.disabled():
        print(f"\n[buildpack] Django app, first build: {first.seconds:.1f} s")


def test_second_build_with_unchanged_requirements_reuses_the_pip_layer(client, lab, django_builds, capsys):
    first, second = django_builds
    with capsys.disabled():
        print(f"\n[buildpack] Django app: first build {first.seconds:.1f} s, second build {second.seconds:.1f} s")
    # an unchanged redeploy reuses the first slug under the new release's tag (engine/images.py slug_key)
    assert second.tag.endswith(":v2") and client.images.get(second.tag).id == client.images.get(first.tag).id
    assert "       Dependencies unchanged: reusing the cached install" in second.lines
    assert not any("Collecting" in line or "Downloading" in line for line in second.lines)
    assert _layer(client, first.tag, "pip install") == _layer(client, second.tag, "pip install")
    assert second.seconds < 30 and second.seconds < first.seconds / 2, (first.seconds, second.seconds)


def test_python_version_the_stack_lacks_warns_and_builds(client, lab, django_builds, tmp_path):
    first, _ = django_builds
    src = copy_django_app(tmp_path / "app")
    (src / ".python-version").write_text("# the version we develop with\n3.12\n")
    (src / "mysite" / "extra.py").write_text("CHANGED = True\n")  # new app code, same requirements
    build = Build(client, lab, 3, src)
    assert build.error is None, f"{build.error}\n{build.text}"
    assert (
        "Warning: .python-version asks for 3.12; the lab-24 stack has Python 3.13.x — building with it" in build.lines
    )
    assert "       Dependencies unchanged: reusing the cached install" in build.lines  # the pip layer is kept
    assert _layer(client, first.tag, "pip install") == _layer(client, build.tag, "pip install")
    assert any("static file copied" in line for line in build.lines)  # the app changed: collectstatic ran
    assert _run(client, lab, build.tag, "python --version").startswith("Python 3.13.")


@pytest.mark.parametrize("requested", ["3", "3.13.5"])
def test_python_versions_the_stack_satisfies(tmp_path, requested):
    (tmp_path / ".python-version").write_text(f"{requested}\n")
    line = buildpack.python_version_line(tmp_path)
    assert line == f"-----> Using Python 3.13.x of the lab-24 stack (.python-version asks for {requested})"


def test_unknown_requirement_fails_with_pips_error(client, lab, django_builds, tmp_path):
    first, _ = django_builds
    src = copy_django_app(tmp_path / "app")
    with (src / "requirements.txt").open("a") as f:
        f.write("nonexistent-package-xyz==1.0\n")
    build = Build(client, lab, 4, src)
    assert build.error is not None and not build.tag
    msg = str(build.error)
    assert "\n" not in msg and msg.startswith("Build failed: ERROR:") and "nonexistent-package-xyz" in msg, msg
    assert any("nonexistent-package-xyz" in line and line.startswith("       ERROR:") for line in build.lines)
    tags = {t for image in client.images.list(filters={"label": f"{const.LABEL_LAB}={lab}"}) for t in image.tags}
    assert f"labctl-slug/{lab}-{APP}:v4" not in tags and first.tag in tags  # earlier releases untouched
    assert _run(client, lab, first.tag, "python -c 'import django'") == ""  # and still whole


def test_disable_collectstatic_in_the_build_env_skips_it(client, lab, django_builds):
    build = Build(client, lab, 5, DJANGO_APP, build_env={"DISABLE_COLLECTSTATIC": "1"})
    assert build.error is None, f"{build.error}\n{build.text}"
    assert "-----> Skipping Django collectstatic since the env var DISABLE_COLLECTSTATIC is set." in build.lines
    assert "-----> $ python manage.py collectstatic --noinput" not in build.lines
    assert _run(client, lab, build.tag, "test -e /app/staticfiles && echo present || echo absent").strip() == "absent"


def test_collectstatic_runs_without_the_apps_config_and_its_failure_fails_the_build(
    client, lab, django_builds, tmp_path
):
    src = copy_django_app(tmp_path / "app")
    with (src / "mysite" / "settings.py").open("a") as f:  # settings that need a config var to import
        f.write(
            "\nfrom django.core.exceptions import ImproperlyConfigured\n\n"
            "if 'SECRET_KEY' not in os.environ:\n"
            "    raise ImproperlyConfigured('Set the SECRET_KEY environment variable')\n"
        )
    build = Build(client, lab, 6, src, build_env={"SECRET_KEY": "x"})  # config is no build env
    assert build.error is not None, build.text
    msg = str(build.error)
    assert msg == (
        "Build failed: $ python manage.py collectstatic --noinput: "
        "django.core.exceptions.ImproperlyConfigured: Set the SECRET_KEY environment variable"
    ), msg
    assert "-----> $ python manage.py collectstatic --noinput" in build.lines
    assert any(line.startswith(" !     Error: Unable to generate Django static files") for line in build.lines)


def test_pyproject_dependencies_are_installed_with_pip(client, lab, tmp_path):
    (tmp_path / "Procfile").write_text("worker: python -c 'import six; print(six.__version__)'\n")
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "svc"\nversion = "0.1.0"\nrequires-python = ">=3.12"\ndependencies = ["six>=1.15"]\n\n'
        '[dependency-groups]\ndev = ["labctl-no-such-dev-tool-zz9"]\n'
    )  # not installed, as uv --no-default-groups
    (tmp_path / "svc").mkdir()  # two top-level dirs: `pip install .` would stop at setuptools' flat layout
    (tmp_path / "svc" / "__init__.py").write_text("")
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "__init__.py").write_text("")
    build = Build(client, lab, 7, tmp_path)
    assert build.error is None, f"{build.error}\n{build.text}"
    assert "-----> Installing dependencies from pyproject.toml with pip" in build.lines
    assert "-----> No Python version specified: using the lab-24 stack's Python 3.13.x" in build.lines
    out = _run(client, lab, build.tag, "python -c 'import six; print(six.__file__)'; pip list 2>/dev/null")
    assert f"{SITE_PACKAGES}/six.py" in out and "svc" not in out.split()


def test_uv_lock_pins_the_versions(client, lab, tmp_path):
    (tmp_path / "Procfile").write_text("worker: python -c 'import six; print(six.__version__)'\n")
    (tmp_path / ".python-version").write_text("3.13\n")
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "svc"\nversion = "0.1.0"\nrequires-python = ">=3.12"\ndependencies = ["six"]\n'
    )
    (tmp_path / "uv.lock").write_text(
        'version = 1\nrevision = 2\nrequires-python = ">=3.12"\n\n'
        '[[package]]\nname = "six"\nversion = "1.16.0"\nsource = { registry = "https://pypi.org/simple" }\n'
        'sdist = { url = "https://files.pythonhosted.org/packages/six-1.16.0.tar.gz", size = 34041 }\n\n'
        '[[package]]\nname = "svc"\nversion = "0.1.0"\nsource = { virtual = "." }\n'
        'dependencies = [{ name = "six" }]\n\n[package.metadata]\nrequires-dist = [{ name = "six" }]\n'
    )
    build = Build(client, lab, 8, tmp_path)
    assert build.error is None, f"{build.error}\n{build.text}"
    assert "-----> Installing dependencies from uv.lock with pip" in build.lines
    assert _run(client, lab, build.tag, "python -c 'import six; print(six.__version__)'").strip() == "1.16.0"


def test_requirement_files_pip_reads_come_before_the_app_and_local_paths_after_it(tmp_path):
    (tmp_path / "requirements").mkdir()
    (tmp_path / "requirements.txt").write_text("-r requirements/base.txt  # shared\n")
    (tmp_path / "requirements" / "base.txt").write_text("Django>=6,<7\n--constraint=pins.txt\n")
    (tmp_path / "requirements" / "pins.txt").write_text("asgiref<4\n")
    deps = buildpack.dependencies(tmp_path)
    assert (deps.header, deps.pip_args, deps.cwd, deps.late) == (
        "-----> Installing requirements with pip",
        "-r requirements.txt",
        f"{buildpack.BUILD_TMP}/app",
        False,
    )
    assert sorted(deps.files) == ["app/requirements.txt", "app/requirements/base.txt", "app/requirements/pins.txt"]
    (tmp_path / "requirements" / "pins.txt").write_text("-e .\n")
    deps = buildpack.dependencies(tmp_path)
    assert (deps.cwd, deps.late, deps.files) == ("/app", True, {})  # pip needs the app's files: after them
