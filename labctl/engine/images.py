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
import time
import tomllib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

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
STACK_PYTHON = "3.13"  # the stack's Python minor version (images/stack/Dockerfile: Debian trixie's python3)
BUILD_TMP = "/tmp/labctl-build"  # build-only files (CA bundle, generated requirements), deleted after pip
PIP_INSTALL = (f"{VENV}/bin/pip install --no-cache-dir --no-input --disable-pip-version-check "
               "--progress-bar off")
COLLECTSTATIC = "python manage.py collectstatic --noinput"
INDENT = "       "  # the buildpack indents what a step prints under its "-----> " line


def slug_tag(lab: str, app: str, version: int) -> str:
    return f"{SLUG_REPO}/{lab}-{app}:v{version}"


def build_slug(client: docker.DockerClient, *, lab: str, app: str, version: int, src_dir: Path,
               progress: Progress, build_env: Mapping[str, str] | None = None) -> str:
    """Build release ``version``'s app image from ``src_dir`` as Heroku's Python buildpack's main path does:
    the app in /app, its dependencies in a virtualenv at /app/.heroku/python (first on PATH), installed with
    pip from requirements.txt, else from pyproject.toml's ``[project] dependencies`` (pinned by uv.lock when
    there is one); ``.python-version`` checked against the stack's Python; Django's collectstatic run.

    ``build_env`` is what the build may read of the app's config: only ``DISABLE_COLLECTSTATIC``. The build
    steps themselves run without the app's config vars (collectstatic included).
    Output goes to ``progress`` in the buildpack's shape (``-----> `` steps, indented detail).
    Returns the image's tag. Raises BuildFailed (no Procfile, no stack image, a failing step)."""
    src = Path(src_dir)
    if not (src / "Procfile").is_file():
        raise BuildFailed(f"No Procfile in {src}: a Procfile declares the app's process types.")
    try:
        process_types = sorted(parse_procfile((src / "Procfile").read_text(errors="replace")))
    except InvalidInput as err:
        raise BuildFailed(str(err)) from None
    if not _exists(client, const.STACK_IMAGE):
        raise BuildFailed(f"The stack image {const.STACK_IMAGE} is missing: run `labctl up` to build it")
    tag = slug_tag(lab, app, version)
    progress(f"-----> Building {tag} on the {const.STACK_NAME} stack")
    progress("-----> Python app detected")
    progress(_python_version_line(src))
    deps = _dependencies(src)
    if deps.warning:
        progress(deps.warning)
    collectstatic = (src / "manage.py").is_file()
    if collectstatic and (reason := _collectstatic_disabled(src, build_env or {})):
        progress(f"-----> Skipping Django collectstatic since {reason}.")
        collectstatic = False
    steps = _slug_steps(lab, app, deps, collectstatic)
    output = _BuildpackOutput(progress, steps)
    started = time.time()
    try:
        _build(client, _tar_context(_slug_context(steps, deps), app_dir=src), tag=tag, what="Build",
               progress=output, dockerfile=".labctl/Dockerfile", labels={const.LABEL_RELEASE: str(version)}, raw=True)
    except BuildFailed as err:
        _remove_build_leftovers(client, lab, app, started)
        if output.current and output.current.kind == "collectstatic":
            raise BuildFailed(f"Build failed: $ {COLLECTSTATIC}: {str(err).removeprefix('Build failed: ')}") from None
        raise
    progress("-----> Discovering process types")
    progress(f"{INDENT}Procfile declares types -> {', '.join(process_types)}")
    return tag


# .python-version: "3.13" or "3.13.5" (the buildpack's forms), "3" accepted too; comments on their own lines.
_VERSION = re.compile(r"^(\d+)(?:\.(\d+))?(?:\.(\d+))?$")


def _python_version_line(src: Path) -> str:
    """The build's line about the Python version: the app's request honoured, or a warning (the build goes on
    with the stack's Python either way: the lab has one Python)."""
    stack = f"the {const.STACK_NAME} stack has Python {STACK_PYTHON}.x"
    origin, request = _requested_python(src)
    if origin is None:
        return f"-----> No Python version specified: using the {const.STACK_NAME} stack's Python {STACK_PYTHON}.x"
    m = _VERSION.match(request)
    if not m:
        return f"Warning: {origin} has no valid Python version ({request[:40]!r}); {stack} — building with it"
    major, minor = STACK_PYTHON.split(".")
    if m.group(1) == major and m.group(2) in (None, minor):
        return f"-----> Using Python {STACK_PYTHON}.x of the {const.STACK_NAME} stack ({origin} asks for {request})"
    return f"Warning: {origin} asks for {request}; {stack} — building with it"


def _requested_python(src: Path) -> tuple[str | None, str]:
    text = _read(src / ".python-version")
    if text:
        lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
        return ".python-version", " ".join(lines)
    text = _read(src / "runtime.txt").strip()  # the buildpack's older file: python-3.13
    if text:
        return "runtime.txt", text.removeprefix("python-")
    return None, ""


def _collectstatic_disabled(src: Path, build_env: Mapping[str, str]) -> str | None:
    """Why the buildpack would skip collectstatic (its two switches), or None."""
    if build_env.get("DISABLE_COLLECTSTATIC", "0") not in ("", "0"):
        return "the env var DISABLE_COLLECTSTATIC is set"
    if (src / ".heroku" / "collectstatic_disabled").is_file():
        return "the file '.heroku/collectstatic_disabled' exists"
    return None


@dataclass
class _Deps:
    """How the app's dependencies get installed: ``pip`` arguments and the files they need first."""

    header: str = ""  # the step's line; empty: nothing to install (no venv, the stack's Python)
    pip_args: str = ""
    cwd: str = "/app"  # where pip runs (relative paths in requirement lines are relative to it, as on Heroku)
    files: dict[str, bytes] = field(default_factory=dict)  # under BUILD_TMP, copied in before the install
    late: bool = False  # pip needs the whole app (a local path requirement): install after the app's files
    warning: str = ""


def _dependencies(src: Path) -> _Deps:
    """requirements.txt first (the buildpack's pip path), else pyproject.toml (+ uv.lock).

    Choice for pyproject.toml/uv.lock: the lab has neither uv nor a build backend in the stack, so it does not
    ``pip install .`` (a Django project without [build-system] fails setuptools' flat-layout discovery).
    It installs what ``uv sync --locked --no-default-groups`` installs for such a project: the
    ``[project] dependencies``, not the project itself nor its dependency groups. With a uv.lock, every
    registry package the lock names (once) becomes a pip constraint ``name==version``, so pip installs the
    locked versions; packages that the lock pins from git or a path, or several times (per-platform forks),
    are left to pip's resolver.
    """
    if _has_requirements(src / "requirements.txt"):
        # The requirement files alone come first (in BUILD_TMP/app, the layer pip's cache rests on); a
        # requirement that needs the app's own files (-e ., ./pkg) makes pip run in /app after the app's code.
        names, late = _requirement_files(src, "requirements.txt")
        header = "-----> Installing requirements with pip"
        if late:
            return _Deps(header, "-r requirements.txt", late=True)
        return _Deps(header, "-r requirements.txt", f"{BUILD_TMP}/app",
                     {f"app/{rel}": (src / rel).read_bytes() for rel in names})
    pyproject = src / "pyproject.toml"
    if pyproject.is_file():
        project = _toml(pyproject).get("project") or {}
        reqs = [str(r) for r in project.get("dependencies") or []]
        lock = src / "uv.lock"
        if not reqs:
            return _Deps(warning="" if "dependencies" in project else
                         "Warning: pyproject.toml has no [project] dependencies: nothing to install")
        generated = {"requirements.txt": "".join(f"{r}\n" for r in reqs).encode()}
        args = f"-r {BUILD_TMP}/requirements.txt"
        source = "pyproject.toml"
        if lock.is_file():
            generated["constraints.txt"] = "".join(f"{p}\n" for p in _uv_lock_pins(lock)).encode()
            args += f" -c {BUILD_TMP}/constraints.txt"
            source = "uv.lock"
        late = any(_local_requirement(r) for r in reqs)
        return _Deps(f"-----> Installing dependencies from {source} with pip", args, files=generated, late=late)
    for name in ("Pipfile.lock", "Pipfile", "poetry.lock"):
        if (src / name).is_file():
            return _Deps(warning=f"Warning: {name} found, which the lab does not install from: add a "
                                 "requirements.txt (or [project] dependencies in pyproject.toml)")
    return _Deps()


def _has_requirements(path: Path) -> bool:
    """A requirements.txt with at least one requirement (blank lines and comments don't count)."""
    return any(line.strip() and not line.strip().startswith("#") for line in _read(path).splitlines())


_INCLUDE = re.compile(r"^(?:-r|-c|--requirement|--constraint)(?:\s+|=|(?=[^\s-]))(\S+)")


def _requirement_files(src: Path, first: str) -> tuple[list[str], bool]:
    """The requirement files pip will read (``-r``/``-c`` followed, relative to the including file as pip
    resolves them) and whether any line needs the app's own files (``-e .``, ``./pkg``, ``file:``)."""
    root = src.resolve()
    seen: list[str] = []
    late = False
    todo = [first]
    while todo:
        rel = todo.pop()
        if rel in seen or len(seen) > 50:
            continue
        seen.append(rel)
        for raw in _read(src / rel).splitlines():
            line = re.sub(r"(^|\s)#.*$", "", raw).strip()
            m = _INCLUDE.match(line)
            if m and "://" not in m.group(1):
                target = (src / rel).parent / m.group(1)
                try:
                    inner = target.resolve().relative_to(root).as_posix()
                except ValueError:
                    late = True  # outside the app: pip will fail, as it would on Heroku
                    continue
                if target.is_file():
                    todo.append(inner)
            elif line and _local_requirement(line):
                late = True
    return seen, late


def _local_requirement(line: str) -> bool:
    line = re.sub(r"^(-e|--editable)(\s+|=)", "", line.strip())
    return line.startswith((".", "/", "file:")) or bool(re.search(r"@\s*file:", line))


def _uv_lock_pins(lock: Path) -> list[str]:
    """``name==version`` for each registry package uv.lock names exactly once."""
    versions: dict[str, list[str]] = {}
    for pkg in _toml(lock).get("package") or []:
        name, version, source = pkg.get("name"), pkg.get("version"), pkg.get("source") or {}
        if name and version and "registry" in source:
            versions.setdefault(re.sub(r"[-_.]+", "-", str(name)).lower(), []).append(str(version))
    return [f"{name}=={vs[0]}" for name, vs in sorted(versions.items()) if len(set(vs)) == 1]


def _toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(errors="replace"))
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise BuildFailed(f"{path.name} is not valid TOML: {str(err).splitlines()[0][:200]}") from None


@dataclass(frozen=True)
class _Step:
    """One Dockerfile instruction and what the build output shows for it."""

    instruction: str
    kind: str = ""  # pip | collectstatic | "" (silent)
    header: str = ""  # shown when the step starts
    cached: str = ""  # shown when the engine reuses the step's layer


def _slug_steps(lab: str, app: str, deps: _Deps, collectstatic: bool) -> list[_Step]:
    """The buildpack's main path as layers that cache like Heroku's build cache: the dependency files, the
    pip install, then the app's code, so a deploy with unchanged dependencies reuses the pip layer.

    The LABEL comes first so every intermediate image carries the lab's labels (``labctl down`` finds
    them), but it names no release: a second deploy with unchanged requirements reuses the pip layer and
    builds in seconds. The release label goes on the final image (build ``labels=``, one more step: the
    engine commits a layer per step, so the other labels are not repeated there). A slug blanks the
    stack's ``io.labctl.image``: it is no shared image (const.py).
    """
    cache = {const.LABEL_IMAGE: "", const.LABEL_LAB: lab, const.LABEL_KIND: const.KIND_SLUG, const.LABEL_APP: app}
    label = " ".join(f"{k}={json.dumps(v)}" for k, v in cache.items())
    steps = [_Step(f"FROM {const.STACK_IMAGE}"), _Step(f"LABEL {label}")]
    app_code = _Step("COPY app/ /app/")
    if deps.header:
        if HOST_CA_BUNDLE.is_file() or deps.files:
            steps.append(_Step(f"COPY .labctl/build/ {BUILD_TMP}/"))
        if deps.late:
            steps.append(app_code)
        cert = f"PIP_CERT={BUILD_TMP}/ca.crt " if HOST_CA_BUNDLE.is_file() else ""
        steps.append(_Step(f"RUN python3 -m venv {VENV} && cd {deps.cwd} && {cert}{PIP_INSTALL} {deps.pip_args}; "
                           f"rc=$?; cd /app; rm -rf {BUILD_TMP}; exit $rc",
                           "pip", deps.header, f"{INDENT}Dependencies unchanged: reusing the cached install"))
        steps.append(_Step(f'ENV PATH="{VENV}/bin:$PATH" VIRTUAL_ENV={VENV}'))
    if not deps.late:
        steps.append(app_code)
    if collectstatic:
        # As the buildpack: only when Django is installed, PYTHONPATH=., the app's config vars absent (the
        # build has none), a failure fails the build.
        fail = (f"{{ echo ' !     Error: Unable to generate Django static files: {COLLECTSTATIC} failed "
                "(traceback above). To skip it: labctl config:set DISABLE_COLLECTSTATIC=1'; exit 1; }")
        steps.append(_Step(
            "RUN if python -c \"import importlib.util as u, sys; sys.exit(not u.find_spec('django'))\" "
            f"2>/dev/null; then echo '-----> $ {COLLECTSTATIC}' && PYTHONPATH=. {COLLECTSTATIC} --traceback "
            f"|| {fail}; fi",
            "collectstatic", "", f"-----> $ {COLLECTSTATIC}\n{INDENT}App unchanged: reusing the cached static files"))
    return steps


def _slug_context(steps: list[_Step], deps: _Deps) -> dict[str, bytes]:
    """The build context's own files (the app goes in as ``app/``)."""
    files = {".labctl/Dockerfile": ("\n".join(s.instruction for s in steps) + "\n").encode()}
    if any(s.instruction.startswith("COPY .labctl/build/") for s in steps):
        if HOST_CA_BUNDLE.is_file():
            files[".labctl/build/ca.crt"] = HOST_CA_BUNDLE.read_bytes()
        files.update({f".labctl/build/{name}": data for name, data in deps.files.items()})
    return files


class _BuildpackOutput:
    """The engine's build stream shown as the buildpack shows a build: a step's line when it starts, its
    output indented, the engine's own lines (Step N/M, layer ids) left out."""

    _STEP = re.compile(r"^Step (\d+)/\d+ : ")

    def __init__(self, progress: Progress, steps: list[_Step]):
        self.progress, self.steps = progress, steps
        self.current: _Step | None = None

    def __call__(self, line: str) -> None:
        m = self._STEP.match(line)
        if m:
            n = int(m.group(1))
            self.current = self.steps[n - 1] if n <= len(self.steps) else None
            if self.current and self.current.header:
                self.progress(self.current.header)
        elif line.startswith(" ---> Using cache"):
            if self.current and self.current.cached:
                for text in self.current.cached.splitlines():
                    self.progress(text)
        elif _NOISE.match(line) or line.startswith(("Successfully tagged ", " ---> ")):
            pass
        elif line.startswith(("-----> ", " !", "Warning: ")):
            self.progress(line)
        else:
            self.progress(INDENT + line)


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
           labels: dict[str, str] | None = None, raw: bool = False) -> None:
    """Run a build, its output lines to ``progress`` (``raw``: every line, the engine's own included)."""
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
                if raw or not _NOISE.match(line):
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


_PY_EXCEPTION = re.compile(r"^([a-z_]\w*\.)*[A-Z]\w*(Error|Exception|Configured|Exit): ")


def _meaningful(lines: list[str]) -> str:
    """The line of a failed build's output that says why, from the failing step's output: pip's and apt's
    ``ERROR:``/``E:`` lines first, then a Python traceback's last line."""
    starts = [i for i, line in enumerate(lines) if line.startswith("Step ")]
    lines = lines[starts[-1] + 1:] if starts else lines
    for line in reversed(lines):
        if re.match(r"^\s*(ERROR|E|error|fatal|FATAL):", line):
            return line.strip()[:300]
    for line in reversed(lines):
        if _PY_EXCEPTION.match(line):
            return line.strip()[:300]
    for line in reversed(lines):
        if not (line.startswith("Step ") or _NOISE.match(line) or "returned a non-zero code" in line):
            return line.strip()[:300]
    return ""


def _remove_build_leftovers(client: docker.DockerClient, lab: str, app: str, since: float) -> None:
    """Remove the untagged layers a failed slug build committed (they carry the LABEL of its Dockerfile), newest
    first; older layers (the cache of earlier builds, parents of releases) are kept."""
    filters = {"label": [f"{const.LABEL_LAB}={lab}", f"{const.LABEL_APP}={app}"]}
    with contextlib.suppress(*_ENGINE_ERRORS):
        rows = client.api.images(all=True, filters=filters)
        new = [r for r in rows if r.get("Created", 0) >= int(since) - 1
               and not [t for t in r.get("RepoTags") or [] if t != "<none>:<none>"]]
        left = [r["Id"] for r in sorted(new, key=lambda r: r.get("Created", 0), reverse=True)]
        while left:  # a parent goes once its child is gone: layers committed in one second sort in any order
            kept = []
            for image_id in left:
                try:
                    client.images.remove(image_id)
                except docker.errors.ImageNotFound:
                    pass
                except _ENGINE_ERRORS:
                    kept.append(image_id)
            if len(kept) == len(left):
                break
            left = kept


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
