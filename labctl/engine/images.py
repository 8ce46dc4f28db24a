"""Images: the shared base and stack images and one app image ("slug") per release (lab-spec §2).

No registry is needed: the base image is a Debian trixie root filesystem made with ``debootstrap`` from the
host's own Debian archive and loaded with ``docker import``; the stack is built FROM it; slugs FROM the stack.
Base and stack carry ``io.labctl.image`` (kept by ``labctl down``); slugs carry the lab's labels.
Every function takes the Docker client it should use; none is made here.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO

import docker
import docker.errors
from docker.models.images import Image

from labctl import const
from labctl.domain.names import validate_process_type
from labctl.engine.docker import ENGINE_ERRORS as _ENGINE_ERRORS
from labctl.errors import BuildFailed, EngineUnavailable, InvalidInput, LabError

Progress = Callable[[str], None]

ENV_BASE_IMAGE = "LABCTL_BASE_IMAGE"  # use this image (e.g. debian:trixie) instead of debootstrapping one
ENV_MIRROR = "LABCTL_DEBIAN_MIRROR"  # Debian archive URI for debootstrap when the host's apt config has none
LABEL_STACK_HASH = "io.labctl.stack-hash"
SLUG_REPO = "labctl-slug"
VENV = "/app/.heroku/python"  # where Heroku's Python buildpack puts Python (heroku-reference.md)
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
REPO_STACK_DOCKERFILE = Path(__file__).resolve().parents[2] / "images" / "stack" / "Dockerfile"

# Byte-identical to images/stack/Dockerfile (a test checks): pyproject ships only *.py in the package, and a
# non-editable install must still be able to build the stack.
STACK_DOCKERFILE = """\
# The stack every dyno (and the router) runs on, like Heroku's heroku-24 (lab-spec §2): Debian trixie,
# Python 3.13, nginx, iproute2 (tc) and iptables for instance faults. Built with no registry:
# BASE defaults to labctl/base:trixie, a debootstrapped rootfs that `labctl up` imports with the
# packages below already installed, so the RUN step only checks them. With another BASE
# (LABCTL_BASE_IMAGE=debian:trixie) the same step installs them from the Debian archive.
#
# labctl/engine/images.py carries a byte-identical copy (STACK_DOCKERFILE) so that a non-editable
# install can build the stack too; tests/integration/test_images.py fails when the two differ.
# `labctl up` builds it; by hand: docker build --build-arg BASE=labctl/base:trixie images/stack
ARG BASE=labctl/base:trixie
FROM ${BASE}
ARG PACKAGES="bash ca-certificates python3 python3-venv python3-pip python-is-python3 \\
    iproute2 iptables nginx procps curl openssl tini"
RUN dpkg -s $PACKAGES >/dev/null 2>&1 \\
    || (apt-get update \\
        && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $PACKAGES \\
        && rm -rf /var/lib/apt/lists/*)
ENV LANG=C.UTF-8 \\
    HOME=/app \\
    PYTHONUNBUFFERED=true
WORKDIR /app
LABEL io.labctl.image=stack
CMD ["bash"]
"""


# -- Procfile -----------------------------------------------------------------------------------------
_PROCFILE_LINE = re.compile(r"^([^:\s]+)\s*:\s*(.*)$")


def parse_procfile(text: str) -> dict[str, str]:
    """Parse a Procfile (``type: command`` per line) into an ordered ``{type: command}``.

    Blank lines and ``#`` comments are ignored. Raises InvalidInput naming the line for anything else.
    """
    procs: dict[str, str] = {}
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = _PROCFILE_LINE.match(line)
        if not m or not m.group(2).strip():
            raise InvalidInput(f"Procfile line {n}: expected 'TYPE: COMMAND', got {line[:60]!r}")
        ptype, command = m.group(1), m.group(2).strip()
        try:
            validate_process_type(ptype)
        except InvalidInput:
            raise InvalidInput(f"Procfile line {n}: invalid process type {ptype!r} (lowercase letters, "
                               "digits, '_' and '-', starting with a letter)") from None
        if ptype in procs:
            raise InvalidInput(f"Procfile line {n}: process type {ptype!r} is declared twice")
        procs[ptype] = command
    return procs


# -- the host's Debian archive ------------------------------------------------------------------------
_DEBIAN_SUITES = re.compile(r"^(buster|bullseye|bookworm|trixie|forky|duke|sid|"
                            r"oldstable|stable|testing|unstable)(-updates|-backports)?$")


def host_debian_mirror(etc_apt: Path = Path("/etc/apt")) -> str:
    """The main Debian archive URI of the host's apt configuration (not -security, not third-party repos)."""
    if os.environ.get(ENV_MIRROR):
        return os.environ[ENV_MIRROR].rstrip("/")
    for uri, suites, components in _apt_sources(etc_apt):
        if ("main" in components and any(_DEBIAN_SUITES.match(s) for s in suites)
                and re.match(r"^(https?|file):", uri)):  # no -security suite matches
            return uri.rstrip("/")
    raise LabError("No Debian archive found in the host's apt sources (/etc/apt/sources.list*); set "
                   f"{ENV_MIRROR} to a Debian mirror URI or {ENV_BASE_IMAGE} to a Debian trixie image")


def _apt_sources(etc_apt: Path) -> Iterator[tuple[str, list[str], list[str]]]:
    """(uri, suites, components) of every enabled ``deb`` source, one-line and deb822 formats."""
    one_line = [etc_apt / "sources.list", *sorted((etc_apt / "sources.list.d").glob("*.list"))]
    for path in one_line:
        for line in _read(path).splitlines():
            words = re.sub(r"\[[^\]]*\]", " ", line.split("#", 1)[0]).split()
            if len(words) >= 3 and words[0] == "deb":
                yield words[1], [words[2]], words[3:]
    for path in sorted((etc_apt / "sources.list.d").glob("*.sources")):
        for stanza in re.split(r"\n\s*\n", _read(path)):
            fields = _deb822(stanza)
            if "deb" in fields.get("types", "").split() and fields.get("enabled", "yes").lower() != "no":
                for uri in fields.get("uris", "").split():
                    yield uri, fields.get("suites", "").split(), fields.get("components", "").split()


def _deb822(stanza: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    key = None
    for line in stanza.splitlines():
        if line.startswith("#"):
            continue
        if line[:1].isspace() and key:
            fields[key] += " " + line.strip()
        elif ":" in line:
            key, _, value = line.partition(":")
            key = key.strip().lower()
            fields[key] = value.strip()
    return fields


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


# -- base image -----------------------------------------------------------------------------------------
def ensure_base_image(client: docker.DockerClient, progress: Progress,
                      base_override: str | None = None) -> str:
    """The image the stack is built FROM: ``base_override`` / $LABCTL_BASE_IMAGE, else ``labctl/base:trixie``
    (built with debootstrap the first time, about a minute)."""
    override = base_override or os.environ.get(ENV_BASE_IMAGE)
    if override:
        return _ensure_present(client, override, progress)
    if _exists(client, const.BASE_IMAGE):
        return const.BASE_IMAGE
    with _file_lock("base", progress):
        if not _exists(client, const.BASE_IMAGE):  # another process may have built it while we waited
            _build_base(client, progress)
    return const.BASE_IMAGE


def _ensure_present(client: docker.DockerClient, ref: str, progress: Progress) -> str:
    if _exists(client, ref):
        return ref
    progress(f"Pulling base image {ref}…")
    try:
        client.images.pull(ref)
    except _ENGINE_ERRORS as err:
        raise LabError(f"Base image {ref} is not on the engine and could not be pulled ({_short(err)}); "
                       f"load it first or unset {ENV_BASE_IMAGE} to build one with debootstrap") from None
    return ref


def _build_base(client: docker.DockerClient, progress: Progress) -> None:
    debootstrap = shutil.which("debootstrap") or shutil.which("debootstrap", path="/usr/sbin:/sbin")
    if not debootstrap:
        raise LabError("debootstrap not found: install it (apt-get install debootstrap) or set "
                       f"{ENV_BASE_IMAGE} to a Debian trixie image")
    if os.geteuid() != 0:
        raise LabError(f"Building {const.BASE_IMAGE} with debootstrap needs root: run `sudo labctl up` once, "
                       f"or set {ENV_BASE_IMAGE} to a Debian trixie image")
    mirror = host_debian_mirror()
    progress(f"Building base image {const.BASE_IMAGE} with debootstrap from {mirror} (about a minute)…")
    tmp = Path(tempfile.mkdtemp(prefix="labctl-base-", dir=os.environ.get("TMPDIR") or "/var/tmp"))
    try:
        rootfs = tmp / "rootfs"
        _debootstrap(debootstrap, rootfs, mirror, progress)
        _tidy_rootfs(rootfs)
        progress(f"Importing the root filesystem as {const.BASE_IMAGE}…")
        _import_rootfs(client, rootfs, tmp / "rootfs.tar")
    finally:
        _remove_tree(tmp)


def _debootstrap(debootstrap: str, rootfs: Path, mirror: str, progress: Progress) -> None:
    packages = ",".join(_stack_packages(stack_dockerfile()))
    cmd = [debootstrap, "--variant=minbase", f"--include={packages}", const.DEBIAN_SUITE, str(rootfs), mirror]
    script = Path("/usr/share/debootstrap/scripts") / const.DEBIAN_SUITE
    if not script.exists() and (script.parent / "sid").exists():
        cmd.append(str(script.parent / "sid"))  # an older debootstrap without a trixie script: sid's works
    tail = _run_streaming(cmd, progress, quiet=re.compile(r"^I: (Retrieving|Validating|Extracting|Unpacking|"
                                                          r"Configuring|Resolving|Found) "))
    if tail is not None:
        hint = ""
        if any(re.search(r"unknown key|Invalid Release signature|NO_PUBKEY", t) for t in tail):
            hint = " (the host's debian-archive-keyring lacks the trixie keys: upgrade that package)"
        raise BuildFailed(f"debootstrap {const.DEBIAN_SUITE} failed{hint}: {_meaningful(tail)}")


def _run_streaming(cmd: list[str], progress: Progress, quiet: re.Pattern[str]) -> list[str] | None:
    """Run ``cmd``, its output lines (but ``quiet`` ones) to ``progress``; the output's tail if it fails."""
    tail: list[str] = []
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                          text=True, errors="replace") as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip()
            tail = [*tail[-40:], line]
            if line and not quiet.match(line):
                progress(line)
    return tail if proc.returncode else None


def _tidy_rootfs(rootfs: Path) -> None:
    """What docker import should not carry: package caches and lists, the host's resolver and hostname."""
    for pattern in ("var/cache/apt/archives/*.deb", "var/cache/apt/*.bin", "var/lib/apt/lists/*_*",
                    "var/log/*.log", "var/log/apt/*"):
        for p in rootfs.glob(pattern):
            if p.is_file() and not p.is_symlink():
                p.unlink()
    for name in ("etc/resolv.conf", "etc/hostname"):
        p = rootfs / name
        if p.is_file() and not p.is_symlink():
            p.write_text("")
    (rootfs / "etc/apt/apt.conf.d/docker-clean").write_text(
        'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };\n'
        'APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };\n'
        'Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";\n')


def _import_rootfs(client: docker.DockerClient, rootfs: Path, tar_path: Path) -> None:
    # GNU tar keeps what Python's tarfile drops (xattrs such as file capabilities); /dev, /proc, /sys stay
    # empty: the engine provides them.
    subprocess.run(["tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "-C", str(rootfs),
                    "--exclude=./dev/*", "--exclude=./proc/*", "--exclude=./sys/*",
                    "-cf", str(tar_path), "."],
                   check=True, stdin=subprocess.DEVNULL)
    repo, tag = const.BASE_IMAGE.split(":")
    changes = [f"LABEL {const.LABEL_IMAGE}=base", 'CMD ["bash"]', "ENV LANG=C.UTF-8",
               "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
    try:
        out = client.api.import_image_from_file(str(tar_path), repository=repo, tag=tag, changes=changes)
    except _ENGINE_ERRORS as err:
        raise BuildFailed(f"docker import of {const.BASE_IMAGE} failed: {_short(err)}") from None
    if "error" in str(out).lower() and not _exists(client, const.BASE_IMAGE):
        raise BuildFailed(f"docker import of {const.BASE_IMAGE} failed: {str(out).strip()[:200]}")


def _remove_tree(path: Path) -> None:
    """rmtree, after unmounting what a killed debootstrap left mounted inside (never delete through /proc)."""
    mounts = [line.split()[1] for line in _read(Path("/proc/mounts")).splitlines() if len(line.split()) > 1]
    for m in sorted((m for m in mounts if m.startswith(str(path) + "/")), reverse=True):
        subprocess.run(["umount", "-l", m], check=False, stdin=subprocess.DEVNULL)
    shutil.rmtree(path, ignore_errors=True)


# -- stack image ----------------------------------------------------------------------------------------
def stack_dockerfile() -> str:
    """The stack's Dockerfile: the repository's images/stack/Dockerfile, else the package's copy."""
    try:
        return REPO_STACK_DOCKERFILE.read_text()
    except OSError:
        return STACK_DOCKERFILE


def _stack_packages(dockerfile: str) -> list[str]:
    m = re.search(r'^ARG PACKAGES="([^"]*)"', dockerfile.replace("\\\n", ""), re.MULTILINE)
    if not m:
        raise LabError("The stack Dockerfile declares no ARG PACKAGES")
    return m.group(1).split()


def ensure_stack_image(client: docker.DockerClient, progress: Progress,
                       base_override: str | None = None) -> str:
    """Build ``labctl/stack:lab-24`` unless it exists from the same Dockerfile and base; returns its ref."""
    dockerfile = stack_dockerfile()
    base_ref = base_override or os.environ.get(ENV_BASE_IMAGE) or const.BASE_IMAGE
    want = hashlib.sha256(f"{base_ref}\n{dockerfile}".encode()).hexdigest()[:16]
    if _stack_hash(_image(client, const.STACK_IMAGE)) == want:
        return const.STACK_IMAGE
    with _file_lock("stack", progress):
        old = _image(client, const.STACK_IMAGE)
        if _stack_hash(old) == want:
            return const.STACK_IMAGE  # built by another process while we waited
        base = ensure_base_image(client, progress, base_override)
        progress(f"Building stack image {const.STACK_IMAGE} from {base}…")
        context = _tar_context({"Dockerfile": dockerfile.encode()})
        _build(client, context, tag=const.STACK_IMAGE, what=f"Build of {const.STACK_IMAGE}",
               progress=progress, buildargs={"BASE": base},
               labels={LABEL_STACK_HASH: want})  # the Dockerfile sets io.labctl.image=stack
        new = _image(client, const.STACK_IMAGE)
        if old and new and old.id != new.id:
            with contextlib.suppress(*_ENGINE_ERRORS):  # still used by a container: leave it
                client.images.remove(old.id)
    return const.STACK_IMAGE


def _stack_hash(image: Image | None) -> str | None:
    return image.labels.get(LABEL_STACK_HASH) if image else None


# -- slugs ----------------------------------------------------------------------------------------------
def slug_tag(lab: str, app: str, version: int) -> str:
    return f"{SLUG_REPO}/{lab}-{app}:v{version}"


def build_slug(client: docker.DockerClient, *, lab: str, app: str, version: int, src_dir: Path,
               progress: Progress) -> str:
    """Build release ``version``'s app image from ``src_dir`` as Heroku's Python buildpack lays it out:
    the app in /app, its requirements in a virtualenv at /app/.heroku/python, first on PATH.

    Returns the image's tag. Raises BuildFailed (no Procfile, no stack image, a failing step)."""
    src = Path(src_dir)
    if not (src / "Procfile").is_file():
        raise BuildFailed(f"No Procfile in {src}: a Procfile declares the app's process types.")
    if not _exists(client, const.STACK_IMAGE):
        raise BuildFailed(f"The stack image {const.STACK_IMAGE} is missing: run `labctl up` to build it")
    labels = {const.LABEL_LAB: lab, const.LABEL_KIND: const.KIND_SLUG, const.LABEL_APP: app,
              const.LABEL_RELEASE: str(version)}
    reqs = _has_requirements(src / "requirements.txt")
    ca = HOST_CA_BUNDLE.read_bytes() if reqs and HOST_CA_BUNDLE.is_file() else None
    files = {".labctl/Dockerfile": _slug_dockerfile(lab, app, reqs, ca is not None).encode()}
    if ca is not None:
        files[".labctl/ca.crt"] = ca
    tag = slug_tag(lab, app, version)
    progress(f"Building {tag}…")
    try:
        _build(client, _tar_context(files, app_dir=src), tag=tag, what="Build", progress=progress,
               dockerfile=".labctl/Dockerfile", labels=labels)
    except BuildFailed:
        _remove_images(client, labels)  # intermediate images of the failed build carry the labels too
        raise
    return tag


def _has_requirements(path: Path) -> bool:
    """A requirements.txt with at least one requirement (blank lines and comments don't count)."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return False
    return any(line.strip() and not line.strip().startswith("#") for line in lines)


def _slug_dockerfile(lab: str, app: str, reqs: bool, ca: bool) -> str:
    """The buildpack's main path as layers that cache like Heroku's build cache.

    The LABEL comes first so every intermediate image carries the lab's labels (``labctl down`` finds
    them), but it names no release: a second deploy with unchanged requirements reuses the pip layer and
    builds in seconds. The release labels go on the final image (build ``labels=``). A slug blanks the
    stack's ``io.labctl.image``: it is no shared image (const.py).
    """
    cache = {const.LABEL_IMAGE: "", const.LABEL_LAB: lab, const.LABEL_KIND: const.KIND_SLUG, const.LABEL_APP: app}
    label = " ".join(f"{k}={json.dumps(v)}" for k, v in cache.items())
    lines = [f"FROM {const.STACK_IMAGE}", f"LABEL {label}"]
    if reqs:
        cert = "/tmp/labctl-build-ca.crt"
        if ca:
            lines.append(f"COPY .labctl/ca.crt {cert}")
        pip_cert = f"PIP_CERT={cert} " if ca else ""
        lines += ["COPY app/requirements.txt /app/requirements.txt",
                  f"RUN python3 -m venv {VENV} && {pip_cert}{VENV}/bin/pip install --no-cache-dir --no-input "
                  f"--disable-pip-version-check -r /app/requirements.txt; rc=$?; rm -f {cert}; exit $rc",
                  f'ENV PATH="{VENV}/bin:$PATH" VIRTUAL_ENV={VENV}']
    lines.append("COPY app/ /app/")
    return "\n".join(lines) + "\n"


_SKIPPED = {".git", "__pycache__", ".venv"}


def _tar_context(files: dict[str, bytes], app_dir: Path | None = None) -> IO[bytes]:
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


def _build(client: docker.DockerClient, context: IO[bytes], *, tag: str, what: str, progress: Progress,
           dockerfile: str = "Dockerfile", buildargs: dict[str, str] | None = None,
           labels: dict[str, str] | None = None) -> None:
    lines: list[str] = []
    try:
        stream = client.api.build(fileobj=context, custom_context=True, decode=True, rm=True, forcerm=True,
                                  tag=tag, dockerfile=dockerfile, buildargs=buildargs, labels=labels,
                                  pull=False)
        for chunk in stream:
            if "error" in chunk:
                raise BuildFailed(f"{what} failed: {_meaningful(lines) or chunk['error'].strip()}")
            for line in _lines(chunk.get("stream") or chunk.get("status") or ""):
                lines = [*lines[-200:], line]
                if not _NOISE.match(line):
                    progress(line)
    except _ENGINE_ERRORS as err:
        if isinstance(err, docker.errors.APIError):
            raise BuildFailed(f"{what} failed: {_short(err)}") from None
        raise EngineUnavailable(f"Docker engine failed during the build ({_short(err)})") from None
    finally:
        context.close()


_NOISE = re.compile(r"^( ---> |Removing intermediate container |Successfully built )")


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _lines(text: str) -> Iterable[str]:
    for line in _ANSI.sub("", text).splitlines():  # the engine paints a step's stderr red
        line = line.rsplit("\r", 1)[-1].rstrip()  # progress bars redraw with \r: keep the final state
        if line:
            yield line


def _meaningful(lines: list[str]) -> str:
    """The line of a failed build's output that says why: pip's and apt's ``ERROR:``/``E:`` lines first."""
    for line in reversed(lines):
        if re.match(r"^\s*(ERROR|E|error|fatal|FATAL):", line):
            return line.strip()[:300]
    for line in reversed(lines):
        if not (line.startswith("Step ") or _NOISE.match(line) or "returned a non-zero code" in line):
            return line.strip()[:300]
    return ""


def _remove_images(client: docker.DockerClient, labels: dict[str, str]) -> None:
    filters = {"label": [f"{k}={v}" for k, v in labels.items()]}
    with contextlib.suppress(*_ENGINE_ERRORS):
        for image in client.images.list(all=True, filters=filters):
            with contextlib.suppress(*_ENGINE_ERRORS):
                client.images.remove(image.id, force=True)


# -- small helpers --------------------------------------------------------------------------------------
def _image(client: docker.DockerClient, ref: str) -> Image | None:
    try:
        return client.images.get(ref)
    except docker.errors.ImageNotFound:
        return None
    except _ENGINE_ERRORS as err:
        raise EngineUnavailable(f"Docker engine is not reachable ({_short(err)})") from None


def _exists(client: docker.DockerClient, ref: str) -> bool:
    return _image(client, ref) is not None


@contextlib.contextmanager
def _file_lock(name: str, progress: Progress) -> Iterator[None]:
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


def _short(err: Exception) -> str:
    text = getattr(err, "explanation", None) or str(err) or type(err).__name__
    return str(text).strip().splitlines()[0][:200]
