"""Docker build plumbing for the image modules (``base_image``, ``images``): build contexts, a build's output
stream, ``docker import``, looking images up and removing them. Every function takes the Docker client the
Engine adapter (``engine/docker.py``) holds; none is made here."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import os
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import docker
import docker.errors
from docker.models.images import Image

from labctl import const
from labctl.engine import build_output
from labctl.engine.translate import SDK_ERRORS, short
from labctl.errors import BuildFailed, EngineUnavailable

Progress = Callable[[str], None]

_SKIPPED = {".git", "__pycache__", ".venv"}


def tar_context(files: dict[str, bytes], app_dir: Path | None = None) -> IO[bytes]:
    """A build context: ``files`` plus ``app_dir`` as ``app/`` (no .git, caches, venvs), owned by root."""
    buf = tempfile.SpooledTemporaryFile(max_size=32 << 20)

    def owned_by_root(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        if Path(info.name).name in _SKIPPED:
            return None
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        return info

    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
        if app_dir is not None:
            tar.add(str(app_dir), arcname="app", filter=owned_by_root)
    buf.seek(0)
    return buf


def context_digest(files: dict[str, bytes], app_dir: Path | None = None) -> str:
    """What ``tar_context`` would send, as a digest: the files, then the app tree's paths, modes, contents
    and links, with what ``tar_context`` leaves out left out too."""
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(b"F\0" + name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    if app_dir is not None:
        for root, dirs, names in os.walk(app_dir):
            dirs[:] = sorted(d for d in dirs if d not in _SKIPPED)
            for name in sorted(n for n in [*names, *dirs] if n not in _SKIPPED):
                path = Path(root) / name
                st = path.lstat()
                rel = str(path.relative_to(app_dir)).encode()
                if path.is_symlink():
                    h.update(b"L\0" + rel + b"\0" + os.readlink(path).encode())
                elif path.is_file():
                    h.update(
                        b"P\0" + rel + b"\0" + oct(st.st_mode).encode() + hashlib.sha256(path.read_bytes()).digest()
                    )
                else:
                    h.update(b"D\0" + rel + b"\0" + oct(st.st_mode).encode())
    return h.hexdigest()


def run_build(
    client: docker.DockerClient,
    context: IO[bytes],
    *,
    tag: str,
    what: str,
    progress: Progress,
    dockerfile: str = "Dockerfile",
    buildargs: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
    raw: bool = False,
) -> None:
    """Run a build, its output lines to ``progress`` (``raw``: every line, the engine's own included).

    A failing step or an engine refusing the build is BuildFailed naming the cause; an engine that stops
    answering mid-build is EngineUnavailable."""
    lines: list[str] = []
    try:
        stream = client.api.build(
            fileobj=context,
            custom_context=True,
            decode=True,
            rm=True,
            forcerm=True,
            tag=tag,
            dockerfile=dockerfile,
            buildargs=buildargs,
            labels=labels,
            pull=False,
        )
        for chunk in stream:
            if "error" in chunk:
                raise BuildFailed(f"{what} failed: {build_output.meaningful(lines) or chunk['error'].strip()}")
            for line in build_output.lines(chunk.get("stream") or chunk.get("status") or ""):
                lines = [*lines[-200:], line]
                if raw or not build_output.NOISE.match(line):
                    progress(line)
    except SDK_ERRORS as err:
        if isinstance(err, docker.errors.APIError):
            raise BuildFailed(f"{what} failed: {short(err)}") from None
        raise EngineUnavailable(f"Docker engine failed during the build ({short(err)})") from None
    finally:
        context.close()


def commit_copy(
    client: docker.DockerClient, *, base: str, app_dir: Path, tag: str, labels: dict[str, str], what: str
) -> None:
    """``tag``: ``base`` with ``app_dir`` copied to ``/app/``, as one layer: a container created from ``base``
    (never started, labelled ``labels``: the image inherits them, and ``labctl down`` finds the container if a
    crash leaves it), the tree put into it, the container committed, then removed. This is what a Dockerfile of
    ``FROM base``, ``LABEL``, ``COPY app/ /app/`` builds, without the builder's intermediate containers and
    one commit per step (seconds each on this engine's storage driver: issue 18, first deploy)."""
    repo, _, version = tag.rpartition(":")
    container_id = ""
    try:
        container_id = client.api.create_container(base, labels=labels)["Id"]
        with tar_context({}, app_dir=app_dir) as tree:
            if not client.api.put_archive(container_id, "/", tree.read()):
                raise BuildFailed(f"{what} failed: the engine refused the app's files")
        client.api.commit(container_id, repository=repo, tag=version)
    except SDK_ERRORS as err:
        if isinstance(err, docker.errors.APIError):
            raise BuildFailed(f"{what} failed: {short(err)}") from None
        raise EngineUnavailable(f"Docker engine failed during the build ({short(err)})") from None
    finally:
        if container_id:
            with contextlib.suppress(*SDK_ERRORS):
                client.api.remove_container(container_id, force=True)


def import_rootfs(client: docker.DockerClient, tar_path: Path, ref: str, changes: list[str]) -> None:
    """``docker import`` of a root filesystem tarball as ``ref`` (``repo:tag``); BuildFailed when it fails."""
    repo, tag = ref.split(":")
    try:
        out = client.api.import_image_from_file(str(tar_path), repository=repo, tag=tag, changes=changes)
    except SDK_ERRORS as err:
        raise BuildFailed(f"docker import of {ref} failed: {short(err)}") from None
    if "error" in str(out).lower() and not exists(client, ref):
        raise BuildFailed(f"docker import of {ref} failed: {str(out).strip()[:200]}")


def pull(client: docker.DockerClient, ref: str) -> str | None:
    """Pull ``ref``; None when it worked, else why not (one line)."""
    try:
        client.images.pull(ref)
    except SDK_ERRORS as err:
        return short(err)
    return None


def image(client: docker.DockerClient, ref: str) -> Image | None:
    """The image ``ref``, or None when the engine has none by that name."""
    try:
        return client.images.get(ref)
    except docker.errors.ImageNotFound:
        return None
    except SDK_ERRORS as err:
        raise EngineUnavailable(f"Docker engine is not reachable ({short(err)})") from None


def exists(client: docker.DockerClient, ref: str) -> bool:
    return image(client, ref) is not None


def remove_unused(client: docker.DockerClient, image_id: str) -> None:
    """Remove an image unless the engine refuses (a container still uses it): then it stays."""
    with contextlib.suppress(*SDK_ERRORS):
        client.images.remove(image_id)


def remove_build_leftovers(client: docker.DockerClient, lab: str, app: str, since: float) -> None:
    """Remove the untagged layers a failed slug build committed (they carry the LABEL of its Dockerfile), newest
    first; older layers (the cache of earlier builds, parents of releases) are kept."""
    filters = {"label": [f"{const.LABEL_LAB}={lab}", f"{const.LABEL_APP}={app}"]}
    with contextlib.suppress(*SDK_ERRORS):
        rows = client.api.images(all=True, filters=filters)
        new = [
            r
            for r in rows
            if r.get("Created", 0) >= int(since) - 1
            and not [t for t in r.get("RepoTags") or [] if t != "<none>:<none>"]
        ]
        left = [r["Id"] for r in sorted(new, key=lambda r: r.get("Created", 0), reverse=True)]
        while left:  # a parent goes once its child is gone: layers committed in one second sort in any order
            kept = []
            for image_id in left:
                try:
                    client.images.remove(image_id)
                except docker.errors.ImageNotFound:
                    pass
                except SDK_ERRORS:
                    kept.append(image_id)
            if len(kept) == len(left):
                break
            left = kept


@contextlib.contextmanager
def file_lock(name: str, progress: Progress) -> Iterator[None]:
    """One builder of an image at a time per user: a second ``labctl up`` waits, then finds it built."""
    path = Path(tempfile.gettempdir()) / f"labctl-{os.getuid()}-image-{name}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress(f"Waiting for another labctl to finish building the {name} image…")
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
