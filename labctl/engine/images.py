"""Images: the stack image and one app image ("slug") per release (lab-spec §2).

No registry is needed: the stack is built FROM the base image (``engine/base_image.py``: debootstrap from the
host's Debian archive), slugs FROM the stack, as Heroku's Python buildpack would build them
(``engine/buildpack.py`` decides the steps and the output, ``engine/build.py`` runs the build).
Base and stack carry ``io.labctl.image`` (kept by ``labctl down``); slugs carry the lab's labels.
Every function takes the Docker client it should use; none is made here: the Engine adapter
(``engine/docker.py``) holds it and is what callers outside ``labctl.engine`` use.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Mapping
from pathlib import Path

import docker
from docker.models.images import Image

from labctl import const, resources
from labctl.engine import base_image, build, buildpack
from labctl.engine.build import Progress
from labctl.errors import BuildFailed, LabError

HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


# -- stack image ----------------------------------------------------------------------------------------
def stack_dockerfile() -> str:
    """The stack's Dockerfile: images/stack/Dockerfile (package data in an installed wheel)."""
    return resources.stack_dockerfile_path().read_text()


def stack_packages(dockerfile: str) -> list[str]:
    """The Debian packages the stack needs (its ``ARG PACKAGES``): the base image is debootstrapped with them."""
    m = re.search(r'^ARG PACKAGES="([^"]*)"', dockerfile.replace("\\\n", ""), re.MULTILINE)
    if not m:
        raise LabError("The stack Dockerfile declares no ARG PACKAGES")
    return m.group(1).split()


def ensure_base_image(client: docker.DockerClient, progress: Progress, base_override: str | None = None) -> str:
    """The image the stack is built FROM (``base_image.ensure_base_image`` with the stack's packages)."""
    return base_image.ensure_base_image(client, progress, stack_packages(stack_dockerfile()), base_override)


def ensure_stack_image(client: docker.DockerClient, progress: Progress, base_override: str | None = None) -> str:
    """Build the stack image (``const.STACK_IMAGE``) unless it exists from the same Dockerfile and base.

    Returns its ref.
    """
    dockerfile = stack_dockerfile()
    stack = build.image(client, const.STACK_IMAGE)
    recorded = ((stack.labels or {}).get(const.LABEL_STACK_BASE) if stack is not None else None) or const.BASE_IMAGE
    if (
        stack is not None
        and not (base_override or os.environ.get(base_image.ENV_BASE_IMAGE))
        and not build.exists(client, recorded)
        and _stack_hash(stack) == _hash(_base_key(client, recorded), dockerfile)
    ):
        return const.STACK_IMAGE  # a current stack whose base is not here (copied in with docker load): no pull
    # The base is resolved first (no network when the engine has it): the stack is current when it was built
    # from the same base *image* (a base pulled under another name is the same base) and Dockerfile.
    base = ensure_base_image(client, progress, base_override)
    want = _hash(_base_key(client, base), dockerfile)
    if _stack_hash(stack) == want:
        return const.STACK_IMAGE
    with build.file_lock("stack", progress):
        old = build.image(client, const.STACK_IMAGE)
        if _stack_hash(old) == want:
            return const.STACK_IMAGE  # built by another process while we waited
        progress(f"Building stack image {const.STACK_IMAGE} from {base}…")
        context = build.tar_context({"Dockerfile": dockerfile.encode()})
        build.run_build(
            client,
            context,
            tag=const.STACK_IMAGE,
            what=f"Build of {const.STACK_IMAGE}",
            progress=progress,
            buildargs={"BASE": base},
            labels={const.LABEL_STACK_HASH: want, const.LABEL_STACK_BASE: base},
        )  # the Dockerfile sets io.labctl.image=stack
        new = build.image(client, const.STACK_IMAGE)
        if old and new and old.id != new.id:
            build.remove_unused(client, old.id)  # still used by a container: leave it
    return const.STACK_IMAGE


def _hash(base_key: str, dockerfile: str) -> str:
    return hashlib.sha256(f"{base_key}\n{dockerfile}".encode()).hexdigest()[:16]


def _base_key(client: docker.DockerClient, base: str) -> str:
    """The base as the stack's hash records it: ``labctl/base:trixie`` when it is that image (under any name),
    else the image's id."""
    img = build.image(client, base)
    home = img if base == const.BASE_IMAGE else build.image(client, const.BASE_IMAGE)
    if img is None or (home is not None and home.id == img.id):
        return const.BASE_IMAGE if img is not None else base
    return img.id


def _stack_hash(image: Image | None) -> str | None:
    return image.labels.get(const.LABEL_STACK_HASH) if image else None


# -- slugs ----------------------------------------------------------------------------------------------
def slug_tag(lab: str, app: str, version: int) -> str:
    return f"{const.SLUG_REPO}/{lab}-{app}:v{version}"


def _reuse_slug(client: docker.DockerClient, lab: str, app: str, key: str, tag: str) -> bool:
    """Tag the app's slug built from the very same inputs (``key``: build context, app tree, stack image) as
    ``tag``, when there is one: the build would only repeat it layer for layer from the cache, and commit
    one more layer for the release's label (seconds on this storage driver: issue 18, second deploy). The
    image keeps the release label of the build that made it; nothing reads a slug's release label."""
    labels = [f"{const.LABEL_LAB}={lab}", f"{const.LABEL_APP}={app}", f"{const.LABEL_SLUG_KEY}={key}"]
    try:
        found = [i for i in client.images.list(filters={"label": labels}) if i.tags]
        if not found:
            return False
        repo, _, version = tag.rpartition(":")
        return bool(found[0].tag(repo, version))
    except docker.errors.APIError:
        return False  # then it is built


def build_slug(
    client: docker.DockerClient,
    *,
    lab: str,
    app: str,
    version: int,
    src_dir: Path,
    progress: Progress,
    build_env: Mapping[str, str] | None = None,
    process_types: list[str] | None = None,
) -> str:
    """Build release ``version``'s app image from ``src_dir`` as Heroku's Python buildpack's main path does:
    the app in /app, its dependencies in a virtualenv at /app/.heroku/python (first on PATH), installed with
    pip from requirements.txt, else from pyproject.toml's ``[project] dependencies`` (pinned by uv.lock when
    there is one); ``.python-version`` checked against the stack's Python; Django's collectstatic run.

    ``build_env`` is what the build may read of the app's config: only ``DISABLE_COLLECTSTATIC``. The build
    steps themselves run without the app's config vars (collectstatic included).
    Output goes to ``progress`` in the buildpack's shape (``-----> `` steps, indented detail).
    Returns the image's tag. Raises BuildFailed (no Procfile, no stack image, a failing step)."""
    src = Path(src_dir)
    if process_types is None:  # the controller parsed the Procfile already and passes its types
        process_types = buildpack.process_types(src)
    if not build.exists(client, const.STACK_IMAGE):
        raise BuildFailed(f"The stack image {const.STACK_IMAGE} is missing: run `labctl up` to build it")
    tag = slug_tag(lab, app, version)
    for line in buildpack.intro_lines(tag, src):
        progress(line)
    ca_bundle = HOST_CA_BUNDLE.read_bytes() if HOST_CA_BUNDLE.is_file() else None
    plan = buildpack.plan_slug(src, lab=lab, app=app, build_env=build_env or {}, ca_bundle=ca_bundle)
    for line in plan.lines:
        progress(line)
    stack = build.image(client, const.STACK_IMAGE)
    key = build.context_digest({**plan.context, ".labctl/stack": (stack.id if stack else "").encode()}, src)
    if _reuse_slug(client, lab, app, key, tag):
        # Every step's layer would come from the cache: the build prints what a fully cached one prints.
        for step in plan.steps:
            for text in [step.header, *step.cached.splitlines()] if step.header else []:
                progress(text)
        for line in buildpack.outro_lines(process_types):
            progress(line)
        return tag
    release_labels = {const.LABEL_RELEASE: str(version), const.LABEL_SLUG_KEY: key}
    if buildpack.copy_only(plan.steps):
        labels = {**buildpack.slug_labels(lab, app), **release_labels}
        build.commit_copy(client, base=const.STACK_IMAGE, app_dir=src, tag=tag, labels=labels, what="Build")
        for line in buildpack.outro_lines(process_types):
            progress(line)
        return tag
    output = buildpack.BuildpackOutput(progress, plan.steps)
    started = time.time()
    try:
        build.run_build(
            client,
            build.tar_context(plan.context, app_dir=src),
            tag=tag,
            what="Build",
            progress=output,
            dockerfile=buildpack.DOCKERFILE,
            labels=release_labels,
            raw=True,
        )
    except BuildFailed as err:
        build.remove_build_leftovers(client, lab, app, started)
        raise buildpack.build_failure(err, output.current) from None
    for line in buildpack.outro_lines(process_types):
        progress(line)
    return tag
