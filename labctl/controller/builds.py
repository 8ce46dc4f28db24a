"""Builds as the Platform API has them (issue 19 item 1): ``POST /apps/{app}/builds`` with
``{"source_blob": {"url": …}}`` answers a ``pending`` build at once; the build runs in a thread (fetch the
source, build the slug, release it: ``Releases.deploy``); ``output_stream_url`` streams its output as text; the
build's ``status`` becomes ``succeeded`` (with its ``release``) or ``failed`` (with the lab's ``error``
``{id, message}``).

The source is on this machine: a ``file://`` URL of a tarball (``.tar``, ``.tgz``...) or of a directory (a lab
extension: ``labctl deploy`` sends its directory so), or an ``http://`` URL on loopback. A tarball with one
top-level directory builds that directory (as GitHub's archives are laid out).
"""

from __future__ import annotations

import ipaddress
import shutil
import tarfile
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from labctl import const
from labctl.controller.manager import Manager
from labctl.controller.releases import host_path
from labctl.controller.schema import TextStream
from labctl.errors import InvalidInput, LabError, NotFound

MAX_SOURCE = 512 << 20  # bytes of a tarball fetched over HTTP
APP = "/apps/(?P<app>[^/]+)"


class _Build:
    """One build: its view's fields and its output so far (readers wait on ``cond`` for more)."""

    def __init__(self, bid: str, app: dict[str, str], url: str, version: str | None, account: str):
        now = time.time()
        self.id, self.app, self.url, self.version, self.account = bid, app, url, version, account
        self.status = "pending"
        self.created_at = self.updated_at = now
        self.release: dict[str, Any] | None = None
        self.error: dict[str, str] | None = None
        self.lines: list[str] = []
        self.cond = threading.Condition()

    def add(self, line: str) -> None:
        with self.cond:
            self.lines.append(line)
            self.cond.notify_all()

    def finish(self, status: str) -> None:
        with self.cond:
            self.status, self.updated_at = status, time.time()
            self.cond.notify_all()

    def follow(self) -> Iterator[str]:
        """Every output line, from the first, until the build is over."""
        sent = 0
        while True:
            with self.cond:
                while sent == len(self.lines) and self.status == "pending":
                    self.cond.wait(timeout=1.0)
                fresh, done = self.lines[sent:], self.status != "pending"
            sent += len(fresh)
            yield from (line + "\n" for line in fresh)
            if done and sent == len(self.lines):
                return


class Builds:
    """The builds of the lab's apps since the controller started (a restart forgets them; releases stay)."""

    def __init__(self, manager: Manager, base_url: Callable[[], str]):
        self.m = manager
        self.base_url = base_url  # where the API listens (``output_stream_url`` is absolute, as Heroku's)
        self.builds: dict[str, _Build] = {}
        self.lock = threading.Lock()

    def register(self, api: Any) -> None:
        r = api.add_route
        r("POST", APP + "/builds", self.create, status=201, resource="build", title="Create")
        r("GET", APP + "/builds", self.list, resource="build", title="List", ranges=("created_at", "id"))
        r("GET", APP + "/builds/(?P<build>[^/]+)", self.info, resource="build", title="Info")
        r("GET", "/build-output/(?P<build>[^/]+)", self.output, public=True)

    # -- routes ------------------------------------------------------------------------------------------
    def create(self, q: dict[str, str], b: dict[str, Any], app: str) -> dict[str, Any]:
        blob = b.get("source_blob")
        url = blob.get("url") if isinstance(blob, dict) else None
        if not isinstance(url, str) or not url:
            raise InvalidInput("body must have a 'source_blob' object with a string 'url'")
        version = blob.get("version") if isinstance(blob, dict) else None
        if version is not None and not isinstance(version, str):
            raise InvalidInput("'source_blob.version' must be a string")
        _check_source(url)
        app_row = self.m.app_row(app)
        build = _Build(
            str(uuid.uuid4()), {"id": app_row["id"], "name": app_row["name"]}, url, version, self.m.account_id()
        )
        with self.lock:
            self.builds[build.id] = build
        threading.Thread(target=self._run, args=(build,), daemon=True, name=f"build-{build.id[:8]}").start()
        return self.view(build)

    def list(self, q: dict[str, str], b: dict[str, Any], app: str) -> list[dict[str, Any]]:
        name = self.m.app_row(app)["name"]
        with self.lock:
            mine = [x for x in self.builds.values() if x.app["name"] == name]
        return [self.view(x) for x in sorted(mine, key=lambda x: x.created_at)]

    def info(self, q: dict[str, str], b: dict[str, Any], app: str, build: str) -> dict[str, Any]:
        return self.view(self._find(app, build))

    def output(self, q: dict[str, str], b: dict[str, Any], build: str) -> Any:
        with self.lock:
            found = self.builds.get(build)
        if found is None:
            raise NotFound("Couldn't find that build.")
        return TextStream(found.follow())

    # -- the work ----------------------------------------------------------------------------------------
    def _run(self, build: _Build) -> None:
        tmp = Path(tempfile.mkdtemp(prefix="labctl-build-"))
        try:
            src = _fetch(build.url, tmp)
            rel = self.m.deploy(build.app["name"], str(src), build.add)
            build.release = {"id": rel["id"], "version": rel["version"]}
            build.finish("succeeded")
        except LabError as err:
            build.error = {"id": err.id, "message": str(err)}
            build.finish("failed")
        except Exception as err:  # noqa: BLE001 - the build's boundary: the caller reads it as a failed build
            build.error = {"id": "internal", "message": f"internal error: {err}"}
            build.finish("failed")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _find(self, app: str, build: str) -> _Build:
        name = self.m.app_row(app)["name"]
        with self.lock:
            found = self.builds.get(build)
        if found is None or found.app["name"] != name:
            raise NotFound("Couldn't find that build.")
        return found

    def view(self, build: _Build) -> dict[str, Any]:
        return {
            "id": build.id,
            "app": {"id": build.app["id"]},
            "status": build.status,
            "created_at": _iso(build.created_at),
            "updated_at": _iso(build.updated_at),
            "output_stream_url": f"{self.base_url()}/build-output/{build.id}",
            "source_blob": {"url": build.url, "version": build.version, "checksum": None, "version_description": None},
            "release": {"id": build.release["id"]} if build.release else None,
            "slug": None,
            "buildpacks": [],
            "stack": const.STACK_NAME,
            "user": {"id": build.account, "email": "lab@localhost"},
            "error": build.error,  # the lab's: why a failed build failed
        }


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _check_source(url: str) -> None:
    """A source on this machine: a file URL that exists, or an HTTP URL on loopback (checked before the build)."""
    u = urlparse(url)
    if u.scheme == "file":
        if u.netloc not in ("", "localhost") or not host_path(unquote(u.path)).exists():
            raise InvalidInput(f"source_blob.url {url!r}: no such file or directory on this machine")
        return
    if u.scheme in ("http", "https"):
        host = (u.hostname or "").strip("[]")
        try:
            loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise InvalidInput(f"source_blob.url {url!r}: the lab fetches sources from this machine only (loopback)")
        return
    raise InvalidInput(f"source_blob.url {url!r}: expected a file:// or a loopback http:// URL")


def _fetch(url: str, tmp: Path) -> Path:
    """The source directory to build: the URL's directory itself, or its tarball unpacked under ``tmp``."""
    u = urlparse(url)
    if u.scheme == "file":
        path = host_path(unquote(u.path))  # a controller under Compose sees the host's files under /host
        if path.is_dir():
            return path
        return _unpack(path, tmp)
    archive = tmp / "source.tar"
    with urllib.request.urlopen(url, timeout=60) as resp, archive.open("wb") as out:  # noqa: S310 - loopback only
        total = 0
        while chunk := resp.read(1 << 16):
            total += len(chunk)
            if total > MAX_SOURCE:
                raise InvalidInput(f"source_blob.url {url!r}: over {MAX_SOURCE >> 20} MiB")
            out.write(chunk)
    return _unpack(archive, tmp)


def _unpack(archive: Path, tmp: Path) -> Path:
    root = tmp / "src"
    root.mkdir()
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(root, filter="data")  # no links out of the tree, no devices, sane modes
    except (tarfile.TarError, OSError) as err:
        raise InvalidInput(f"The source is not a tarball this lab can unpack: {err}") from None
    entries = list(root.iterdir())
    if not (root / "Procfile").exists() and len(entries) == 1 and entries[0].is_dir():
        return entries[0]
    return root
