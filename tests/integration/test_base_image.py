"""The base image from a registry (issue 20 item 4), offline: a registry from Debian's ``docker-registry`` package
started on 127.0.0.1 by the test (dockerd allows 127.0.0.1 registries without TLS), holding the local
``labctl/base:trixie`` as ``127.0.0.1:PORT/debian:trixie-slim``. ``labctl up --base-image`` on a fresh lab pulls
it and says so; an image that cannot be pulled falls back to the debootstrapped base and says so.

The shared images stay: the pulled image is the same image (same id) as ``labctl/base:trixie``, so the stack is
current and is not rebuilt; the test removes only the names it added.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import docker.errors
import pytest
import requests

from labctl import const
from labctl.engine import images
from tests.conftest import _leftovers, cli, wait_until

pytestmark = [pytest.mark.docker, pytest.mark.xdist_group("test_base_image")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def client() -> docker.DockerClient:
    c = docker.from_env(timeout=600)
    images.ensure_stack_image(c, lambda line: None)  # base and stack exist (built once, shared)
    return c


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A registry on 127.0.0.1:<free port> for this module, stopped and its storage removed afterwards."""
    exe = shutil.which("docker-registry")
    assert exe, "docker-registry not found: apt-get install docker-registry (.ci/run installs it)"
    root = tmp_path_factory.mktemp("registry")
    port = _free_port()
    (root / "config.yml").write_text(
        "version: 0.1\nlog:\n  level: warn\n"
        f"storage:\n  filesystem:\n    rootdirectory: {root / 'data'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    with (root / "log").open("w") as log:
        proc = subprocess.Popen([exe, "serve", str(root / "config.yml")], stdout=log, stderr=log)
    try:
        wait_until(lambda: _answers(f"http://127.0.0.1:{port}/v2/"), 20, 0.1, "the registry to answer")
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(root, ignore_errors=True)


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def _untag(client: docker.DockerClient, repo: str) -> None:
    """Remove every name of ``repo`` (tags and digests) from the engine; the image itself keeps its other names."""
    for img in client.images.list(name=repo):
        for ref in [*img.tags, *(img.attrs.get("RepoDigests") or [])]:
            if ref.split("@")[0].rsplit(":", 1)[0] == repo or ref.split("@")[0] == repo:
                with contextlib.suppress(docker.errors.ImageNotFound):  # untagging may drop the digest too
                    client.images.remove(ref)


@pytest.fixture
def pushed(client: docker.DockerClient, registry: str) -> Iterator[str]:
    """``labctl/base:trixie`` in the registry as debian:trixie-slim, and not on the engine by that name."""
    repo = f"{registry}/debian"
    ref = f"{repo}:trixie-slim"
    client.images.get(const.BASE_IMAGE).tag(repo, "trixie-slim")
    try:
        for row in client.images.push(repo, "trixie-slim", stream=True, decode=True):
            assert "error" not in row, row
        _untag(client, repo)
        assert not client.images.list(name=repo)
        yield ref
    finally:
        _untag(client, repo)


def test_up_pulls_the_named_base_image_when_the_engine_can(client, pushed, lab_state: Path):
    lab = f"t{uuid.uuid4().hex[:8]}"
    try:
        r = cli("up", "--base-image", pushed, "--timescale", "0.05", "--http-port", "0", lab=lab)
        assert r.code == 0, r.err + r.out
        assert f"Pulled base image {pushed}.\n" in r.err
        assert "Could not pull" not in r.err
        # the same image as labctl/base:trixie (same id): the stack is current, not rebuilt
        assert "Building stack image" not in r.err
        assert client.images.get(pushed).id == client.images.get(const.BASE_IMAGE).id
        r = cli("doctor", "--json", lab=lab)
        details = [c["detail"] for c in json.loads(r.out)["checks"] if c["name"] == "image"]
        assert details[0].startswith("base ") and f", pulled ({pushed.rsplit(':', 1)[0]}@sha256:" in details[0]
    finally:
        down = cli("down", lab=lab)
        assert down.code == 0, down.err
        assert _leftovers(lab) == []


def test_an_image_that_cannot_be_pulled_falls_back_to_debootstrap(client):
    ref = f"127.0.0.1:{_free_port()}/debian:trixie-slim"  # nothing listens there
    lines: list[str] = []
    assert images.ensure_base_image(client, lines.append, ref) == const.BASE_IMAGE
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"Could not pull base image {ref} (")
    assert lines[0].endswith("; using labctl/base:trixie, built with debootstrap.")
    assert not client.images.list(name=ref.rsplit(":", 1)[0])
