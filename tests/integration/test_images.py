"""The image layer against the real engine: stack image (built once, kept: it is shared and slow to build)
and slugs (built per test under a lab of the test's own, removed by that lab's label).

The first tests need no engine: the apt-source parsing behind the debootstrap mirror, the Dockerfile copy
shipped in the package, and the no-Procfile check that must fail before any Docker call.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from labctl import const
from labctl.engine import base_image, images
from labctl.errors import BuildFailed, LabError

pytestmark = pytest.mark.xdist_group("test_images")  # module fixtures (stack, slug lab): one worker
REPO = Path(__file__).resolve().parents[2]


# -- no engine needed ---------------------------------------------------------------------------------
def test_the_stack_dockerfile_is_the_repository_one():
    assert images.stack_dockerfile() == (REPO / "images" / "stack" / "Dockerfile").read_text()


def _etc_apt(tmp_path: Path, sources_list: str = "", **d: str) -> Path:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text(sources_list)
    for name, text in d.items():
        (tmp_path / "sources.list.d" / name.replace("_", ".")).write_text(text)
    return tmp_path


def test_mirror_from_deb822_skips_security_and_third_party(tmp_path, monkeypatch):
    monkeypatch.delenv(base_image.ENV_MIRROR, raising=False)
    etc = _etc_apt(
        tmp_path,
        "deb https://packages.example.org/apt cloud-sdk-bookworm main\n",
        a_vendor_sources="Types: deb\nURIs: https://vendor.example.org/n\nSuites: nodistro\nComponents: main\n",
        debian_sources=(
            "Types: deb\n# a comment\nURIs: http://archive.example.org/debian-security\n"
            "Suites: bookworm-security\nComponents: main\n\n"
            "Types: deb\nURIs: http://archive.example.org/debian/\n"
            "Suites: bookworm bookworm-updates\nComponents: main\n"
            "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        ),
    )
    assert base_image.host_debian_mirror(etc) == "http://archive.example.org/debian"


def test_mirror_from_one_line_sources_list_with_options(tmp_path, monkeypatch):
    monkeypatch.delenv(base_image.ENV_MIRROR, raising=False)
    etc = _etc_apt(
        tmp_path,
        "# deb http://old.example.org/debian buster main\n"
        "deb-src http://src.example.org/debian bookworm main\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://mirror.example.org/debian bookworm "
        "main contrib\n",
    )
    assert base_image.host_debian_mirror(etc) == "http://mirror.example.org/debian"


def test_no_debian_archive_is_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.delenv(base_image.ENV_MIRROR, raising=False)
    etc = _etc_apt(
        tmp_path,
        x_sources="Types: deb\nURIs: http://a.example.org/d\nSuites: bookworm\nComponents: main\nEnabled: no\n",
    )
    with pytest.raises(LabError) as err:
        base_image.host_debian_mirror(etc)
    assert "\n" not in str(err.value) and base_image.ENV_BASE_IMAGE in str(err.value)


class NoEngine:
    """A client that fails the test on any use."""

    def __getattr__(self, name):
        raise AssertionError(f"docker client used: .{name}")


class EngineWithoutImages:
    """Just enough of a client for an engine on which no image exists."""

    class images:  # the attribute DockerClient has
        @staticmethod
        def get(ref):
            import docker.errors

            raise docker.errors.ImageNotFound(ref)

        @staticmethod
        def pull(ref, **kw):  # nor can it pull one: the debootstrap path
            import docker.errors

            raise docker.errors.APIError(f"pull access denied for {ref}")


def test_missing_debootstrap_is_one_line_with_both_ways_out(monkeypatch):
    monkeypatch.delenv(base_image.ENV_BASE_IMAGE, raising=False)
    monkeypatch.setattr(base_image.shutil, "which", lambda *a, **k: None)
    lines: list[str] = []
    with pytest.raises(LabError) as err:
        images.ensure_base_image(EngineWithoutImages(), lines.append)
    assert lines == [
        "Could not pull base image debian:trixie-slim (pull access denied for debian:trixie-slim); "
        "using labctl/base:trixie, built with debootstrap."
    ]
    assert str(err.value) == (
        "debootstrap not found: install it (apt-get install debootstrap) or set "
        "LABCTL_BASE_IMAGE to a Debian trixie image"
    )


def test_dir_without_procfile_fails_before_any_docker_call(tmp_path):
    (tmp_path / "app.py").write_text("print('hi')\n")
    with pytest.raises(BuildFailed) as err:
        images.build_slug(NoEngine(), lab="tx", app="demo", version=1, src_dir=tmp_path, progress=print)
    assert "No Procfile in" in str(err.value) and str(tmp_path) in str(err.value)


# -- against the engine ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def client():
    import docker

    c = docker.from_env(timeout=600)
    c.ping()
    return c


@pytest.fixture(scope="module")
def stack(client) -> str:
    return images.ensure_stack_image(client, lambda line: None)


@pytest.fixture
def slug_lab(client) -> Iterator[str]:
    """A lab name of this test's own; every image labelled with it is removed afterwards."""
    lab = f"t{uuid.uuid4().hex[:8]}"
    yield lab
    label = f"{const.LABEL_LAB}={lab}"
    for image in client.images.list(filters={"label": label}):
        client.images.remove(image.id, force=True)
    assert client.images.list(all=True, filters={"label": label}) == []


def _run(client, image: str, cmd: str) -> str:
    out = client.containers.run(
        image, ["bash", "-c", cmd], remove=True, stdout=True, stderr=True, labels={const.LABEL_KIND: "test"}
    )
    return out.decode()


@pytest.mark.docker
def test_stack_image_is_idempotent(client, stack):
    lines: list[str] = []
    started = time.monotonic()
    assert images.ensure_stack_image(client, lines.append) == const.STACK_IMAGE == stack
    assert lines == [] and time.monotonic() - started < 3
    labels = client.images.get(stack).labels
    assert labels[const.LABEL_IMAGE] == "stack" and labels[const.LABEL_STACK_HASH]
    assert const.LABEL_LAB not in labels  # shared: `labctl down` keeps it
    assert client.images.get(const.BASE_IMAGE).labels[const.LABEL_IMAGE] == "base"


@pytest.mark.docker
def test_stack_has_what_dynos_router_and_faults_need(client, stack):
    assert _run(client, stack, "python3 --version").startswith("Python 3.13.")
    assert _run(client, stack, "python --version").startswith("Python 3.13.")
    assert "nginx version: nginx/" in _run(client, stack, "nginx -v")
    assert _run(client, stack, "iptables --version").startswith("iptables v")
    assert "iproute2" in _run(client, stack, "tc -V")
    env = _run(client, stack, 'echo "$LANG $HOME $(pwd)"').split()
    assert env == ["C.UTF-8", "/app", "/app"]


@pytest.mark.docker
def test_slug_installs_requirements_in_a_venv_first_on_path(client, stack, slug_lab, tmp_path):
    (tmp_path / "Procfile").write_text("web: python -m http.server $PORT\n")
    (tmp_path / "requirements.txt").write_text("six\n")
    (tmp_path / "app.py").write_text("print('hello')\n")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    lines: list[str] = []
    tag = images.build_slug(client, lab=slug_lab, app="demo", version=3, src_dir=tmp_path, progress=lines.append)
    assert tag == f"labctl-slug/{slug_lab}-demo:v3"
    assert any("six" in line for line in lines)  # pip's output was streamed
    image = client.images.get(tag)
    assert image.labels == {
        const.LABEL_LAB: slug_lab,
        const.LABEL_KIND: const.KIND_SLUG,
        const.LABEL_APP: "demo",
        const.LABEL_RELEASE: "3",
        const.LABEL_IMAGE: "",  # blanked: the stack's value is inherited
        const.LABEL_SLUG_KEY: image.labels.get(const.LABEL_SLUG_KEY, "missing"),  # checked just below
        **{  # inherited from the stack (a stack built before its base was recorded has no stack-base label)
            k: v
            for k, v in client.images.get(stack).labels.items()
            if k in (const.LABEL_STACK_HASH, const.LABEL_STACK_BASE)
        },
    }
    assert re.fullmatch(r"[0-9a-f]{64}", image.labels[const.LABEL_SLUG_KEY])  # the build's inputs: reuse key
    out = _run(
        client,
        tag,
        "python -c 'import six; print(six.__file__)'; command -v python; cat /app/app.py; ls -a /app; ls /tmp",
    )
    assert "/app/.heroku/python/lib/python3.13/site-packages/six.py" in out
    assert "/app/.heroku/python/bin/python" in out
    assert "hello" in out and "Procfile" in out
    assert ".git" not in out.split() and "labctl-build-ca.crt" not in out


@pytest.mark.docker
def test_slug_without_requirements_uses_the_stack_python(client, stack, slug_lab, tmp_path):
    (tmp_path / "Procfile").write_text("worker: python worker.py\n")
    (tmp_path / "worker.py").write_text("import sys; print(sys.prefix)\n")
    tag = images.build_slug(client, lab=slug_lab, app="demo", version=1, src_dir=tmp_path, progress=lambda s: None)
    assert _run(client, tag, "python /app/worker.py").strip() == "/usr"


@pytest.mark.docker
def test_failing_pip_is_one_line_naming_the_cause_and_leaves_no_image(client, stack, slug_lab, tmp_path):
    (tmp_path / "Procfile").write_text("web: python app.py\n")
    (tmp_path / "requirements.txt").write_text("labctl-no-such-package-zz9==1.0\n")
    with pytest.raises(BuildFailed) as err:
        images.build_slug(client, lab=slug_lab, app="demo", version=2, src_dir=tmp_path, progress=lambda s: None)
    msg = str(err.value)
    assert "\n" not in msg and "labctl-no-such-package-zz9" in msg and msg.startswith("Build failed: ERROR:")
    assert client.images.list(all=True, filters={"label": f"{const.LABEL_LAB}={slug_lab}"}) == []
