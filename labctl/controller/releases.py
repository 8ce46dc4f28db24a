"""The release pipeline (lab-spec §6, §7): build a slug, record a release, run its release phase, restart
the formation on it; rollbacks and config changes are releases of an existing slug.

A release number is reserved before the build (``Build in progress``, hidden from ``releases``) so two
deploys never share one; a failed build or release phase leaves the current release running.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from labctl.controller.logsink import LogSink
from labctl.controller.oneoffs import OneOffs
from labctl.controller.runtime import Runtime
from labctl.controller.views import formation_of
from labctl.domain.formation import initial_formation
from labctl.domain.procfile import parse_procfile
from labctl.errors import BuildFailed, InvalidInput, NotFound

USER = "labctl@localhost"
Progress = Callable[[str], None]


class Releases:
    """Deploys, rollbacks and config releases of one lab."""

    def __init__(self, runtime: Runtime, sink: LogSink, oneoffs: OneOffs, lab: str,
                 app: Callable[[str], dict[str, Any]]):
        self.rt = runtime
        self.store = runtime.store
        self.sink = sink
        self.oneoffs = oneoffs
        self.lab = lab
        self.app = app  # name -> app row; raises NotFound

    def deploy(self, name: str, src: str, progress: Progress) -> dict[str, Any]:
        """Build a slug from ``src`` and release it (lab-spec §6); a failed build changes nothing."""
        app = self.app(name)
        src_dir = Path(src)
        procfile = _read_procfile(src_dir, src)
        version = self.reserve_version(name)
        try:
            image = self.rt.engine.build_slug(app=name, version=version, src_dir=src_dir, progress=progress,
                                              build_env=app["config"], process_types=sorted(procfile))
        except BaseException:
            self.store.delete_release(name, version)  # a failed build leaves the current release untouched
            raise
        digest = _source_digest(src_dir)
        with self.rt.lock:
            formation = initial_formation(procfile, app["space"], formation_of(self.app(name)))
            config = self.app(name)["config"]
        rel = self.release(name, version, image, procfile, config, f"Deploy {digest}", progress)
        with self.rt.lock:  # the formation follows the Procfile once the release went out
            self.store.update_app(name, formation={k: vars(p) for k, p in formation.items()})
            self.rt.tick()
        return rel

    def reserve_version(self, name: str) -> int:
        with self.rt.lock:
            version = self.store.next_version(name)
            self.store.add_release({"app": name, "version": version, "image": None, "procfile": {}, "config": {},
                                    "description": "Build in progress", "status": "pending"})
            return version

    def release(self, name: str, version: int, image: str | None, procfile: dict[str, str],
                config: dict[str, str], description: str, progress: Progress | None = None) -> dict[str, Any]:
        """Record a release, run its release phase, then restart the formation on it (§7).

        Release phase (heroku-reference §7): the Procfile's ``release:`` command runs in a one-off
        ``release.NNNN`` dyno before any dyno boots on the new release; a non-zero exit fails the release
        and the current one keeps running. Called without the lock held: the release dyno may take a while.
        """
        with self.rt.lock:
            self.store.add_release({"app": name, "version": version, "image": image, "procfile": procfile,
                                    "config": config, "description": description, "status": "pending"})
        status = self._release_phase(name, version, procfile.get("release"), progress or (lambda _l: None))
        with self.rt.lock:
            if status != 0:
                self._fail(name, version, status)
            self.store.add_release({**self.store.release(name, version), "status": "succeeded"})  # type: ignore[dict-item]
            self.sink.api(name, f"Release v{version} created by user {USER}")
            self.sink.api(name, f"{description} by user {USER}")
            self._restart_formation(name, version)
            self.rt.wake()
            return self.store.release(name, version)  # type: ignore[return-value]

    def _fail(self, name: str, version: int, status: int) -> None:
        self.store.add_release({**self.store.release(name, version), "status": "failed"})  # type: ignore[dict-item]
        self.sink.api(name, f"Release v{version} failed: release command exited with status {status}")
        current = self.store.current_release(name)
        keep = f"v{current['version']} keeps running" if current else "nothing was deployed"
        raise BuildFailed(f"Release command failed (exit status {status}): v{version} was not released; {keep}.")

    def _release_phase(self, name: str, version: int, command: str | None, progress: Progress) -> int:
        """Run the release command attached; its output goes to ``progress`` and the logs. Returns its status."""
        if not command:
            return 0
        with self.rt.lock:
            app = self.app(name)
            dyno = self.oneoffs.new_name(name, "release")
            progress(f"Running release command... ({dyno}: {command})")
            self.oneoffs.start(app, dyno, command, version, attach=True)
            fresh = self.store.dyno(name, dyno)
        cid = fresh["container"] if fresh else None
        if not cid:
            return 1
        status = None
        try:
            self._relay_output(name, dyno, cid, progress)
            status = self.rt.engine.wait(cid)
        finally:
            self.oneoffs.finish_attached(name, dyno, cid)
        return status if status is not None else 1

    def _relay_output(self, name: str, dyno: str, cid: str, progress: Progress) -> None:
        """The release dyno's output, line by line, to the deploying client and the app's log."""
        buf = ""
        for chunk in self.rt.engine.output(cid):
            buf += chunk
            while "\n" in buf:
                line, buf = buf.split("\n", 1)
                progress(line)
                self.sink.app(name, dyno, line)
        if buf:
            progress(buf)
            self.sink.app(name, dyno, buf)

    def _restart_formation(self, name: str, version: int) -> None:
        procfile = self.store.release(name, version)["procfile"]  # type: ignore[index]
        for row in self.store.dynos(name):
            if not row["one_off"] and row["type"] in procfile:
                self.store.update_dyno(name, row["name"], command=procfile[row["type"]])
        self.rt.rollouts.on_release(self.app(name), version)

    def rollback(self, name: str, version: int | None) -> dict[str, Any]:
        with self.rt.lock:
            self.app(name)
            current = self.store.current_release(name)
            if current is None:
                raise NotFound(f"⬢ {name} has no releases to roll back to")
            target_v = version if version is not None else current["version"] - 1
            target = self.store.release(name, target_v)
            if target is None or target["status"] != "succeeded":
                raise NotFound(f"Couldn't find release v{target_v} of ⬢ {name}")
            version = self.reserve_version(name)
        return self.release(name, version, target["image"], target["procfile"], target["config"],
                            f"Rollback to v{target_v}")


def _read_procfile(src_dir: Path, src: str) -> dict[str, str]:
    """The controller's one look at the Procfile: it must be there, and it is parsed once, before the build."""
    if not src_dir.is_dir():
        raise InvalidInput(f"No such directory: {src}")
    procfile_path = src_dir / "Procfile"
    if not procfile_path.is_file():
        raise InvalidInput(f"No Procfile in {src}: a Procfile declares the app's process types.")
    return parse_procfile(procfile_path.read_text())


def _source_digest(src: Path) -> str:
    h = hashlib.sha1()
    for p in sorted(src.rglob("*")):
        if p.is_file() and ".git" not in p.parts:
            h.update(str(p.relative_to(src)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()[:7]
