"""The release pipeline (lab-spec §6, §7): build a slug, record a release, run its release phase, restart
the formation on it; rollbacks and config changes are releases of an existing slug.

A release number is reserved before the build (``Build in progress``, hidden from ``releases``) so two
deploys never share one; a failed build or release phase leaves the current release running.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

from labctl.controller.logsink import LogSink
from labctl.controller.oneoffs import OneOffs
from labctl.controller.runtime import Runtime
from labctl.controller.views import formation_dicts, formation_of
from labctl.domain.formation import initial_formation
from labctl.domain.procfile import parse_procfile
from labctl.errors import BuildFailed, InvalidInput, NotFound
from labctl.records import AppRow, ReleaseRow

ENV_HOST_ROOT = "LABCTL_HOST_ROOT"  # where the host's / is mounted in a controller's container (compose/)

USER = "labctl@localhost"
Progress = Callable[[str], None]


class Releases:
    """Deploys, rollbacks and config releases of one lab."""

    def __init__(self, runtime: Runtime, sink: LogSink, oneoffs: OneOffs, lab: str, app_row: Callable[[str], AppRow]):
        self.rt = runtime
        self.store = runtime.store
        self.sink = sink
        self.oneoffs = oneoffs
        self.lab = lab
        self.app_row = app_row  # app name -> its row; raises NotFound

    def deploy(self, app: str, src: str, progress: Progress) -> ReleaseRow:
        """Build a slug from ``src`` and release it (lab-spec §6); a failed build changes nothing."""
        app_row = self.app_row(app)
        src_dir = host_path(src)
        procfile = _read_procfile(src_dir, src)
        version = self.reserve_version(app)
        try:
            image = self.rt.engine.build_slug(
                app=app,
                version=version,
                src_dir=src_dir,
                progress=progress,
                build_env=app_row["config"],
                process_types=sorted(procfile),
            )
        except BaseException:
            self.store.delete_release(app, version)  # a failed build leaves the current release untouched
            raise
        digest = _source_digest(src_dir)
        with self.rt.lock:
            formation = initial_formation(procfile, app_row["space"], formation_of(self.app_row(app)))
            config = self.app_row(app)["config"]
        rel = self.release(app, version, image, procfile, config, f"Deploy {digest}", progress)
        with self.rt.lock:  # the formation follows the Procfile once the release went out
            self.store.update_app(app, formation=formation_dicts(formation))
            self.rt.tick()
        return rel

    def reserve_version(self, app: str) -> int:
        with self.rt.lock:
            version = self.store.next_version(app)
            self.store.add_release(app, version, None, {}, {}, "Build in progress", "pending")
            return version

    def release(
        self,
        app: str,
        version: int,
        image: str | None,
        procfile: dict[str, str],
        config: dict[str, str],
        description: str,
        progress: Progress | None = None,
    ) -> ReleaseRow:
        """Record a release, run its release phase, then restart the formation on it (§7).

        Release phase (heroku-reference §7): the Procfile's ``release:`` command runs in a one-off
        ``release.NNNN`` dyno before any dyno boots on the new release; a non-zero exit fails the release
        and the current one keeps running. Called without the lock held: the release dyno may take a while.
        """
        with self.rt.lock:
            self.store.add_release(app, version, image, procfile, config, description, "pending")
        status = self._release_phase(app, version, procfile.get("release"), progress or (lambda _l: None))
        with self.rt.lock:
            if status != 0:
                self._fail(app, version, status)
            self.store.set_release_status(app, version, "succeeded")
            self.sink.api(app, f"Release v{version} created by user {USER}")
            self.sink.api(app, f"{description} by user {USER}")
            self._restart_formation(app, version, procfile)
            self.rt.wake()
            return self._release_row(app, version)

    def _release_row(self, app: str, version: int) -> ReleaseRow:
        rel = self.store.release(app, version)
        if rel is None:  # only ``apps:destroy`` deletes a recorded release, and it waits for the lock
            raise NotFound("Couldn't find that release.")
        return rel

    def _fail(self, app: str, version: int, status: int) -> None:
        self.store.set_release_status(app, version, "failed")
        self.sink.api(app, f"Release v{version} failed: release command exited with status {status}")
        current = self.store.current_release(app)
        keep = f"v{current['version']} keeps running" if current else "nothing was deployed"
        raise BuildFailed(f"Release command failed (exit status {status}): v{version} was not released; {keep}.")

    def _release_phase(self, app: str, version: int, command: str | None, progress: Progress) -> int:
        """Run the release command attached; its output goes to ``progress`` and the logs. Returns its status."""
        if not command:
            return 0
        with self.rt.lock:
            app_row = self.app_row(app)
            dyno = self.oneoffs.new_name(app, "release")
            progress(f"Running release command... ({dyno}: {command})")
            self.oneoffs.start(app_row, dyno, command, version, attach=True)
            fresh = self.store.dyno(app, dyno)
        cid = fresh["container"] if fresh else None
        if not cid:
            return 1
        status = None
        try:
            self._relay_output(app, dyno, cid, progress)
            status = self.rt.engine.wait(cid)
        finally:
            self.oneoffs.finish_attached(app, dyno, cid)
        return status if status is not None else 1

    def _relay_output(self, app: str, dyno: str, cid: str, progress: Progress) -> None:
        """The release dyno's output, line by line, to the deploying client and the app's log."""
        buf = ""
        for chunk in self.rt.engine.output(cid):
            buf += chunk
            while "\n" in buf:
                line, buf = buf.split("\n", 1)
                progress(line)
                self.sink.app(app, dyno, line)
        if buf:
            progress(buf)
            self.sink.app(app, dyno, buf)

    def _restart_formation(self, app: str, version: int, procfile: dict[str, str]) -> None:
        """The formation's commands follow the release's Procfile; then its dynos restart on the release."""
        for row in self.store.dynos(app):
            if not row["one_off"] and row["type"] in procfile:
                self.store.update_dyno(app, row["name"], command=procfile[row["type"]])
        self.rt.rollouts.on_release(self.app_row(app), version)

    def rollback(self, app: str, version: int | None) -> ReleaseRow:
        with self.rt.lock:
            self.app_row(app)
            current = self.store.current_release(app)
            if current is None:
                raise NotFound(f"No eligible release found for ⬢ {app} to roll back to.")  # CLI releases/rollback.ts
            target_v = version if version is not None else current["version"] - 1
            target = self.store.release(app, target_v)
            if target is None or target["status"] != "succeeded":
                if version is None:  # CLI releases/rollback.ts: no previous release to go back to
                    raise NotFound(f"No eligible release found for ⬢ {app} to roll back to.")
                raise NotFound("Couldn't find that release.")  # the Platform API's not_found words
            version = self.reserve_version(app)
            # A rollback restores the release's config vars too (heroku-reference §7: "Rollback affects code
            # and config vars"): `config` shows them afterwards.
            self.store.update_app(app, config=target["config"])
        return self.release(
            app, version, target["image"], target["procfile"], target["config"], f"Rollback to v{target_v}"
        )


def host_path(src: str) -> Path:
    """The host's path ``src`` as this controller sees it: a controller in a container (compose/) sees the
    host's files under $LABCTL_HOST_ROOT (the host's / mounted read-only)."""
    root = os.environ.get(ENV_HOST_ROOT)
    if root and src.startswith("/"):
        on_host = Path(root, src.lstrip("/"))
        if on_host.exists() or not Path(src).exists():
            return on_host
    return Path(src)  # (also a directory of the controller's own, e.g. a build's unpacked tarball)


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
