"""Which base image `labctl up` takes (issue 20 item 4), against a fake engine: what it has, whether it can pull.

The pull against a real registry and the fallback against the real engine are in
tests/integration/test_base_image.py."""

from __future__ import annotations

import pytest

from labctl import const
from labctl.engine import base_image


class FakeEngine:
    def __init__(self, present: set[str], pullable: set[str]):
        self.present, self.pullable, self.pulled, self.built = set(present), pullable, [], []


@pytest.fixture
def engine(monkeypatch):
    fake = FakeEngine(set(), set())
    monkeypatch.delenv(base_image.ENV_BASE_IMAGE, raising=False)
    monkeypatch.setattr(base_image.build, "exists", lambda client, ref: ref in fake.present)

    def pull(client, ref):
        fake.pulled.append(ref)
        if ref in fake.pullable:
            fake.present.add(ref)
            return None
        return "connection refused"

    def build_base(client, progress, packages):
        fake.built.append(const.BASE_IMAGE)
        fake.present.add(const.BASE_IMAGE)

    monkeypatch.setattr(base_image.build, "pull", pull)
    monkeypatch.setattr(base_image, "_build_base", build_base)
    return fake


def test_first_run_pulls_debian_trixie_slim_when_the_engine_can(engine):
    engine.pullable = {"debian:trixie-slim"}
    lines: list[str] = []
    assert base_image.ensure_base_image(object(), lines.append, []) == "debian:trixie-slim"
    assert lines == ["Pulled base image debian:trixie-slim."]
    assert engine.pulled == ["debian:trixie-slim"] and engine.built == []


def test_first_run_falls_back_to_debootstrap_when_the_pull_fails(engine):
    lines: list[str] = []
    assert base_image.ensure_base_image(object(), lines.append, []) == const.BASE_IMAGE
    assert lines == [
        "Could not pull base image debian:trixie-slim (connection refused); "
        "using labctl/base:trixie, built with debootstrap."
    ]
    assert engine.built == [const.BASE_IMAGE]


def test_a_base_already_on_the_engine_is_used_without_network(engine):
    engine.present = {const.BASE_IMAGE}
    lines: list[str] = []
    assert base_image.ensure_base_image(object(), lines.append, []) == const.BASE_IMAGE
    assert lines == [] and engine.pulled == [] and engine.built == []
    engine.present = {"debian:trixie-slim"}
    assert base_image.ensure_base_image(object(), lines.append, []) == "debian:trixie-slim"
    assert lines == [] and engine.pulled == []


def test_the_named_image_is_pulled_else_debootstrap(engine, monkeypatch):
    engine.pullable = {"registry.example:5000/debian:trixie-slim"}
    engine.present = {const.BASE_IMAGE}  # the named image wins over the debootstrapped one when it can be pulled
    lines: list[str] = []
    ref = "registry.example:5000/debian:trixie-slim"
    assert base_image.ensure_base_image(object(), lines.append, [], ref) == ref
    assert lines == [f"Pulled base image {ref}."]
    monkeypatch.setenv(base_image.ENV_BASE_IMAGE, "other.example/debian:trixie")
    lines.clear()
    assert base_image.ensure_base_image(object(), lines.append, []) == const.BASE_IMAGE
    assert lines == [
        "Could not pull base image other.example/debian:trixie (connection refused); "
        "using labctl/base:trixie, built with debootstrap."
    ]
    assert engine.built == []  # it was there already


class FakeImage:
    def __init__(self, digests: list[str], labels: dict[str, str]):
        self.attrs, self.labels = {"RepoDigests": digests}, labels


@pytest.mark.parametrize(
    ("image", "said"),
    [
        (FakeImage(["debian@sha256:ab12"], {}), "debian:trixie-slim, pulled (debian@sha256:ab12)"),
        (FakeImage([], {const.LABEL_IMAGE: "base"}), "debian:trixie-slim, built with debootstrap"),
        (FakeImage([], {}), "debian:trixie-slim, a local image"),
        (None, "debian:trixie-slim (no longer on the engine)"),
    ],
)
def test_doctor_says_how_the_base_came(monkeypatch, image, said):
    monkeypatch.setattr(base_image.build, "image", lambda client, ref: image)
    assert base_image.describe_base(object(), "debian:trixie-slim") == said


def test_the_stack_records_its_base_and_an_unlabelled_stack_means_labctl_base(monkeypatch):
    stack = FakeImage([], {const.LABEL_STACK_BASE: "debian:trixie-slim"})
    base = FakeImage(["debian@sha256:cd34"], {})
    images = {
        const.STACK_IMAGE: stack,
        "debian:trixie-slim": base,
        const.BASE_IMAGE: FakeImage([], {"io.labctl.image": "base"}),
    }
    monkeypatch.setattr(base_image.build, "image", lambda client, ref: images.get(ref))
    assert base_image.describe_stack_base(object()) == "debian:trixie-slim, pulled (debian@sha256:cd34)"
    stack.labels = {}
    assert base_image.describe_stack_base(object()) == "labctl/base:trixie, built with debootstrap"
    del images[const.STACK_IMAGE], images[const.BASE_IMAGE], images["debian:trixie-slim"]
    assert base_image.describe_stack_base(object()) is None
