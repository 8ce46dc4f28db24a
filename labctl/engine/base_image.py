"""The base image the stack is built FROM (lab-spec §2): ``debian:trixie-slim`` (or the image the user names,
$LABCTL_BASE_IMAGE / ``labctl up --base-image``) pulled when the engine can pull it; else a Debian trixie root
filesystem made with ``debootstrap`` from the host's own Debian archive (found in its apt configuration) and
loaded with ``docker import`` as ``labctl/base:trixie``, which carries ``io.labctl.image=base`` so that
``labctl down`` keeps it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import docker

from labctl import const
from labctl.engine import build
from labctl.engine.build import Progress
from labctl.engine.build_output import meaningful
from labctl.errors import BuildFailed, LabError

ENV_BASE_IMAGE = "LABCTL_BASE_IMAGE"  # use this image (pulled if missing) instead of debian:trixie-slim
DEFAULT_PULL_IMAGE = "debian:trixie-slim"  # pulled when the engine can: no root, no debootstrap
ENV_MIRROR = "LABCTL_DEBIAN_MIRROR"  # Debian archive URI for debootstrap when the host's apt config has none


# -- the host's Debian archive ------------------------------------------------------------------------
_DEBIAN_SUITES = re.compile(
    r"^(buster|bullseye|bookworm|trixie|forky|duke|sid|"
    r"oldstable|stable|testing|unstable)(-updates|-backports)?$"
)


def host_debian_mirror(etc_apt: Path = Path("/etc/apt")) -> str:
    """The main Debian archive URI of the host's apt configuration (not -security, not third-party repos)."""
    if os.environ.get(ENV_MIRROR):
        return os.environ[ENV_MIRROR].rstrip("/")
    for uri, suites, components in _apt_sources(etc_apt):
        if (
            "main" in components and any(_DEBIAN_SUITES.match(s) for s in suites) and re.match(r"^(https?|file):", uri)
        ):  # no -security suite matches
            return uri.rstrip("/")
    raise LabError(
        "No Debian archive found in the host's apt sources (/etc/apt/sources.list*); set "
        f"{ENV_MIRROR} to a Debian mirror URI or {ENV_BASE_IMAGE} to a Debian trixie image"
    )


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
def ensure_base_image(
    client: docker.DockerClient, progress: Progress, packages: Sequence[str], base_override: str | None = None
) -> str:
    """The image the stack is built FROM, with no network use when the engine has it already.

    ``base_override`` / $LABCTL_BASE_IMAGE if given, else ``labctl/base:trixie`` or ``debian:trixie-slim`` if
    the engine has one. Otherwise it is pulled (``debian:trixie-slim`` by default: no root needed); when the
    engine cannot pull it, ``labctl/base:trixie`` is built with debootstrap (root, about a minute, with
    ``packages`` installed). One progress line says which of the two happened."""
    wanted = base_override or os.environ.get(ENV_BASE_IMAGE)
    candidates = [wanted] if wanted else [const.BASE_IMAGE, DEFAULT_PULL_IMAGE]
    for ref in candidates:
        if build.exists(client, ref):
            return ref
    ref = wanted or DEFAULT_PULL_IMAGE
    why = build.pull(client, ref)
    if why is None:
        progress(f"Pulled base image {ref}.")
        return ref
    progress(f"Could not pull base image {ref} ({why}); using {const.BASE_IMAGE}, built with debootstrap.")
    if build.exists(client, const.BASE_IMAGE):
        return const.BASE_IMAGE
    with build.file_lock("base", progress):
        if not build.exists(client, const.BASE_IMAGE):  # another process may have built it while we waited
            _build_base(client, progress, packages)
    return const.BASE_IMAGE


def describe_stack_base(client: docker.DockerClient) -> str | None:
    """The path taken to the stack's base image (``labctl doctor``): the stack's own record of its base, else
    the base the next ``labctl up`` would use; None when there is none yet."""
    stack = build.image(client, const.STACK_IMAGE)
    if stack is not None:  # a stack from before the label was recorded was built from labctl/base:trixie
        return describe_base(client, (stack.labels or {}).get(const.LABEL_STACK_BASE) or const.BASE_IMAGE)
    for ref in (const.BASE_IMAGE, DEFAULT_PULL_IMAGE):
        if build.exists(client, ref):
            return describe_base(client, ref)
    return None


def describe_base(client: docker.DockerClient, ref: str) -> str:
    """How the base image ``ref`` came to the engine, for ``labctl doctor``: pulled, debootstrap or local."""
    img = build.image(client, ref)
    if img is None:
        return f"{ref} (no longer on the engine)"
    digests = img.attrs.get("RepoDigests") or []
    if digests:
        return f"{ref}, pulled ({digests[0]})"
    if (img.labels or {}).get(const.LABEL_IMAGE) == "base":
        return f"{ref}, built with debootstrap"
    return f"{ref}, a local image"


def _build_base(client: docker.DockerClient, progress: Progress, packages: Sequence[str]) -> None:
    debootstrap = shutil.which("debootstrap") or shutil.which("debootstrap", path="/usr/sbin:/sbin")
    if not debootstrap:
        raise LabError(
            "debootstrap not found: install it (apt-get install debootstrap) or set "
            f"{ENV_BASE_IMAGE} to a Debian trixie image"
        )
    if os.geteuid() != 0:
        raise LabError(
            f"Building {const.BASE_IMAGE} with debootstrap needs root: run `sudo labctl up` once, "
            f"or set {ENV_BASE_IMAGE} to a Debian trixie image"
        )
    mirror = host_debian_mirror()
    progress(f"Building base image {const.BASE_IMAGE} with debootstrap from {mirror} (about a minute)…")
    tmp = Path(tempfile.mkdtemp(prefix="labctl-base-", dir=os.environ.get("TMPDIR") or "/var/tmp"))
    try:
        rootfs = tmp / "rootfs"
        _debootstrap(debootstrap, rootfs, mirror, progress, packages)
        _tidy_rootfs(rootfs)
        progress(f"Importing the root filesystem as {const.BASE_IMAGE}…")
        _import_rootfs(client, rootfs, tmp / "rootfs.tar")
    finally:
        _remove_tree(tmp)


def _debootstrap(debootstrap: str, rootfs: Path, mirror: str, progress: Progress, packages: Sequence[str]) -> None:
    cmd = [debootstrap, "--variant=minbase", f"--include={','.join(packages)}", const.DEBIAN_SUITE, str(rootfs), mirror]
    script = Path("/usr/share/debootstrap/scripts") / const.DEBIAN_SUITE
    if not script.exists() and (script.parent / "sid").exists():
        cmd.append(str(script.parent / "sid"))  # an older debootstrap without a trixie script: sid's works
    tail = _run_streaming(
        cmd,
        progress,
        quiet=re.compile(
            r"^I: (Retrieving|Validating|Extracting|Unpacking|"
            r"Configuring|Resolving|Found) "
        ),
    )
    if tail is not None:
        hint = ""
        if any(re.search(r"unknown key|Invalid Release signature|NO_PUBKEY", t) for t in tail):
            hint = " (the host's debian-archive-keyring lacks the trixie keys: upgrade that package)"
        raise BuildFailed(f"debootstrap {const.DEBIAN_SUITE} failed{hint}: {meaningful(tail)}")


def _run_streaming(cmd: list[str], progress: Progress, quiet: re.Pattern[str]) -> list[str] | None:
    """Run ``cmd``, its output lines (but ``quiet`` ones) to ``progress``; the output's tail if it fails."""
    tail: list[str] = []
    with subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True, errors="replace"
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip()
            tail = [*tail[-40:], line]
            if line and not quiet.match(line):
                progress(line)
    return tail if proc.returncode else None


def _tidy_rootfs(rootfs: Path) -> None:
    """What docker import should not carry: package caches and lists, the host's resolver and hostname."""
    for pattern in (
        "var/cache/apt/archives/*.deb",
        "var/cache/apt/*.bin",
        "var/lib/apt/lists/*_*",
        "var/log/*.log",
        "var/log/apt/*",
    ):
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
        'Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";\n'
    )


def _import_rootfs(client: docker.DockerClient, rootfs: Path, tar_path: Path) -> None:
    # GNU tar keeps what Python's tarfile drops (xattrs such as file capabilities); /dev, /proc, /sys stay
    # empty: the engine provides them.
    subprocess.run(
        [
            "tar",
            "--numeric-owner",
            "--xattrs",
            "--xattrs-include=*",
            "-C",
            str(rootfs),
            "--exclude=./dev/*",
            "--exclude=./proc/*",
            "--exclude=./sys/*",
            "-cf",
            str(tar_path),
            ".",
        ],
        check=True,
        stdin=subprocess.DEVNULL,
    )
    changes = [
        f"LABEL {const.LABEL_IMAGE}=base",
        'CMD ["bash"]',
        "ENV LANG=C.UTF-8",
        "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    ]
    build.import_rootfs(client, tar_path, const.BASE_IMAGE, changes)


def _remove_tree(path: Path) -> None:
    """rmtree, after unmounting what a killed debootstrap left mounted inside (never delete through /proc)."""
    mounts = [line.split()[1] for line in _read(Path("/proc/mounts")).splitlines() if len(line.split()) > 1]
    for m in sorted((m for m in mounts if m.startswith(str(path) + "/")), reverse=True):
        subprocess.run(["umount", "-l", m], check=False, stdin=subprocess.DEVNULL)
    shutil.rmtree(path, ignore_errors=True)
