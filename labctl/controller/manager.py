"""The platform operations the API exposes: spaces, apps, releases, config, formation, dyno actions.

Each operation validates its input first (so bad input changes nothing), records intent in the store,
and lets the runtime carry it out.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from labctl.controller.logsink import LogSink
from labctl.controller.runtime import Runtime
from labctl.domain import actions, names
from labctl.domain.formation import Process, apply_updates, describe, initial_formation, parse_scale_args
from labctl.domain.sizes import default_size
from labctl.engine import images
from labctl.errors import BuildFailed, Conflict, InvalidInput, NotFound
from labctl.store import Store

USER = "labctl@localhost"


class Manager:
    """Platform API semantics over the store and the runtime."""

    def __init__(self, store: Store, runtime: Runtime, sink: LogSink, lab: str):
        self.store = store
        self.rt = runtime
        self.sink = sink
        self.lab = lab

    # -- lookups ------------------------------------------------------------------------------------
    def app(self, name: str) -> dict[str, Any]:
        app = self.store.app(name)
        if app is None:
            raise NotFound(f"Couldn't find that app: {name}")
        return app

    def _dyno(self, app: str, name: str) -> dict[str, Any]:
        row = self.store.dyno(app, name)
        if row is None:
            raise NotFound(f"No such dyno {name} on ⬢ {app}")
        return row

    def set_timescale(self, factor: float) -> None:
        """Change the lab-wide time scale; timers already set keep their deadlines, new ones use it."""
        from labctl.domain.clock import TimeScale
        from labctl.labdir import LabDir

        with self.rt.lock:
            d = LabDir(self.lab)
            settings = d.settings()
            settings.timescale = factor
            d.save_settings(settings)
            old = self.rt.scale.factor
            self.rt.scale = TimeScale(factor)
            self._rescale_timers(factor / old)
            self.rt.routing.applied_routes = None  # the router's timeouts scale too
            self.rt.sync_router()

    def _rescale_timers(self, ratio: float) -> None:
        """The lab clock changed speed: what is left of every running timer changes with it."""
        now = time.time()
        for row in self.store.dynos():
            changes = {k: now + (row[k] - now) * ratio for k in ("cycle_at", "next_start", "boot_deadline")
                       if row[k] is not None and row[k] > now}
            if changes:
                self.store.update_dyno(row["app"], row["name"], **changes)
        self.rt.wake()

    # -- spaces ---------------------------------------------------------------------------------
    def create_space(self, name: str) -> dict[str, Any]:
        names.validate_space_name(name)
        with self.rt.lock:
            if self.store.space(name):
                raise Conflict(f"Space {name} already exists")
            net = self.rt.engine.ensure_network(name)
            self.rt.engine.connect_router(net)
            self.store.add_space(name)
            return self.store.space(name)  # type: ignore[return-value]

    def destroy_space(self, name: str) -> None:
        with self.rt.lock:
            if not self.store.space(name):
                raise NotFound(f"Couldn't find that space: {name}")
            used = [a["name"] for a in self.store.apps() if a["space"] == name]
            if used:
                raise Conflict(f"Space {name} still has apps: {', '.join(used)}. Destroy them first.")
            self.store.delete_space(name)
            self.rt.engine.remove_network(name)

    # -- apps ------------------------------------------------------------------------------------
    def create_app(self, name: str, space: str | None) -> dict[str, Any]:
        names.validate_app_name(name)
        with self.rt.lock:
            if space and not self.store.space(space):
                raise NotFound(f"Couldn't find that space: {space}")
            if self.store.app(name):
                raise Conflict(f"Name {name} is already taken")
            self.store.add_app(name, space)
            self.rt.sync_router()
            return self.app(name)

    def destroy_app(self, name: str) -> None:
        with self.rt.lock:
            self.rt.destroy_app(self.app(name))
        self.rt.engine.remove_app_images(name)

    def set_maintenance(self, name: str, on: bool) -> dict[str, Any]:
        with self.rt.lock:
            self.app(name)
            self.store.update_app(name, maintenance=int(on))
            self.rt.sync_router()
            return self.app(name)

    # -- releases ----------------------------------------------------------------------------------
    def deploy(self, name: str, src: str, progress: Callable[[str], None]) -> dict[str, Any]:
        """Build a slug from ``src`` and release it (lab-spec §6); a failed build changes nothing."""
        app = self.app(name)
        src_dir = Path(src)
        if not src_dir.is_dir():
            raise InvalidInput(f"No such directory: {src}")
        procfile_path = src_dir / "Procfile"
        if not procfile_path.is_file():
            raise InvalidInput(f"No Procfile in {src}: a Procfile declares the app's process types.")
        procfile = images.parse_procfile(procfile_path.read_text())
        version = self._reserve_version(name)
        try:
            image = self.rt.engine.build_slug(app=name, version=version,
                                              src_dir=src_dir, progress=progress, build_env=app["config"])
        except BaseException:
            self.store.delete_release(name, version)  # a failed build leaves the current release untouched
            raise
        digest = _source_digest(src_dir)
        with self.rt.lock:
            formation = initial_formation(procfile, app["space"], self._formation(self.app(name)))
            config = self.app(name)["config"]
        rel = self._release(name, version, image, procfile, config, f"Deploy {digest}", progress)
        with self.rt.lock:  # the formation follows the Procfile once the release went out
            self.store.update_app(name, formation={k: vars(p) for k, p in formation.items()})
            self.rt.tick()
        return rel

    def _reserve_version(self, name: str) -> int:
        with self.rt.lock:
            version = self.store.next_version(name)
            self.store.add_release({"app": name, "version": version, "image": None, "procfile": {}, "config": {},
                                    "description": "Build in progress", "status": "pending"})
            return version

    def _release(self, name: str, version: int, image: str | None, procfile: dict[str, str],
                 config: dict[str, str], description: str,
                 progress: Callable[[str], None] | None = None) -> dict[str, Any]:
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
                self.store.add_release({**self.store.release(name, version), "status": "failed"})  # type: ignore[dict-item]
                self.sink.api(name, f"Release v{version} failed: release command exited with status {status}")
                current = self.store.current_release(name)
                keep = f"v{current['version']} keeps running" if current else "nothing was deployed"
                raise BuildFailed(f"Release command failed (exit status {status}): v{version} was not released; "
                                  f"{keep}.")
            self.store.add_release({**self.store.release(name, version), "status": "succeeded"})  # type: ignore[dict-item]
            self.sink.api(name, f"Release v{version} created by user {USER}")
            self.sink.api(name, f"{description} by user {USER}")
            self._restart_formation(name, version)
            self.rt.wake()
            return self.store.release(name, version)  # type: ignore[return-value]

    def _release_phase(self, name: str, version: int, command: str | None, progress: Callable[[str], None]) -> int:
        """Run the release command attached; its output goes to ``progress`` and the logs. Returns its status."""
        if not command:
            return 0
        with self.rt.lock:
            app = self.app(name)
            taken = {r["name"] for r in self.store.dynos(name)}
            dyno = names.one_off_name("release", taken)
            proc = Process("release", 1, default_size(app["space"]), command)
            row = self.rt._new_dyno_row(app, dyno, proc, version, one_off=True, attach=True)
            row["next_start"] = None
            progress(f"Running release command... ({dyno}: {command})")
            self.rt.start_dyno(row)
            fresh = self.store.dyno(name, dyno)
        cid = fresh["container"] if fresh else None
        if not cid:
            return 1
        status = None
        try:
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
            status = self.rt.engine.wait(cid)
        finally:
            self.finish_attached(name, dyno, cid)
        return status if status is not None else 1

    def _restart_formation(self, name: str, version: int) -> None:
        procfile = self.store.release(name, version)["procfile"]  # type: ignore[index]
        for row in self.store.dynos(name):
            if not row["one_off"] and row["type"] in procfile:
                self.store.update_dyno(name, row["name"], command=procfile[row["type"]])
        self.rt.rollouts.on_release(self.app(name), version)

    def releases(self, name: str) -> list[dict[str, Any]]:
        self.app(name)
        return [r for r in self.store.releases(name) if r["status"] != "pending"]

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
            version = self._reserve_version(name)
        return self._release(name, version, target["image"], target["procfile"], target["config"],
                             f"Rollback to v{target_v}")

    def config(self, name: str) -> dict[str, str]:
        return dict(self.app(name)["config"])

    def update_config(self, name: str, changes: dict[str, str | None]) -> dict[str, Any]:
        """``config:set``/``config:unset``: a new release restarting the dynos (heroku-reference §7)."""
        for key, value in changes.items():
            if not key or "=" in key or not key.replace("_", "a").isalnum():
                raise InvalidInput(f"Invalid config var name {key!r}")
            if value is not None and "\x00" in value:
                raise InvalidInput(f"Config var {key} has a NUL byte: values must be text without NUL")
        with self.rt.lock:
            app = self.app(name)
            config = dict(app["config"])
            for k, v in changes.items():
                if v is None:
                    config.pop(k, None)
                else:
                    config[k] = v
            self.store.update_app(name, config=config)
            keys = ", ".join(changes)
            verb = "Set" if all(v is not None for v in changes.values()) else "Unset"
            current = self.store.current_release(name)
            if current is None:  # nothing deployed yet: config waits for the first deploy
                return {"config": config, "release": None}
            version = self._reserve_version(name)
        rel = self._release(name, version, current["image"], current["procfile"], config, f"{verb} {keys} config vars")
        return {"config": config, "release": rel}

    # -- formation ---------------------------------------------------------------------------------
    @staticmethod
    def _formation(app: dict[str, Any]) -> dict[str, Process]:
        return {k: Process(**v) for k, v in app["formation"].items()}

    def formation(self, name: str) -> list[dict[str, Any]]:
        return [vars(p) for p in self._formation(self.app(name)).values()]

    def scale(self, name: str, args: list[str]) -> dict[str, Any]:
        updates = parse_scale_args(args)
        with self.rt.lock:
            app = self.app(name)
            self._check_formation_unlocked(app)
            current = self._formation(app)
            if not current:
                raise NotFound(f"No process types on ⬢ {name}. Upload a Procfile to add process types.")
            new = apply_updates(current, updates, app["space"])
            self.store.update_app(name, formation={k: vars(p) for k, p in new.items()})
            for u in updates:
                p = new[u.type]
                if current[u.type].quantity == 0 and p.quantity > 0:
                    for row in self.store.dynos(name):  # scale 0 -> N resets cool-offs
                        self.store.update_dyno(name, row["name"], crashes=0)
            self.sink.api(name, "Scaled to " + ", ".join(f"{p.type}@{p.quantity}:{p.size}" for p in new.values())
                          + f" by user {USER}")
            self.rt.tick()
            return {"formation": [vars(p) for p in new.values()], "message": describe(new)}

    def _check_formation_unlocked(self, app: dict[str, Any]) -> None:
        """Formation changes are refused while a preboot runs (heroku-reference §4.4)."""
        from labctl.domain.preboot import FORMATION_LOCKED

        if self.rt.rollouts.preboot_in_progress(app):
            raise Conflict(FORMATION_LOCKED)

    def resize(self, name: str, sizes: dict[str, str]) -> dict[str, Any]:
        """``ps:type``: new sizes restart the dynos of those types (heroku-reference §1.5, §6.1)."""
        from labctl.domain.sizes import check_size_for_runtime, get_size

        with self.rt.lock:
            app = self.app(name)
            self._check_formation_unlocked(app)
            formation = self._formation(app)
            if not formation:
                raise NotFound(f"No process types on ⬢ {name}. Upload a Procfile to add process types.")
            targets = dict(sizes)
            if "*" in targets:
                size = targets.pop("*")
                targets.update({t: size for t in formation})
            for ptype, size in targets.items():
                if ptype not in formation:
                    raise InvalidInput(f"Type {ptype} not found in process formation. "
                                       f"Types: {', '.join(sorted(formation))}")
                s = get_size(size)
                check_size_for_runtime(s, app["space"])
                targets[ptype] = s.name
            for ptype, size in targets.items():
                p = formation[ptype]
                formation[ptype] = Process(p.type, p.quantity, size, p.command)
                from labctl.domain.formation import _check_single_dyno_tier

                _check_single_dyno_tier(ptype, p.quantity, size)
            self.store.update_app(name, formation={k: vars(p) for k, p in formation.items()})
            for row in self.store.dynos(name):
                if not row["one_off"] and row["type"] in targets and row["size"] != targets[row["type"]]:
                    self.store.update_dyno(name, row["name"], size=targets[row["type"]])
                    fresh = self.store.dyno(name, row["name"])
                    plan = actions.plan_restart(row["name"], bool(app["space"]), False)
                    self.rt.apply_plan(fresh, plan)  # type: ignore[arg-type]
            return {"formation": [vars(p) for p in formation.values()]}

    # -- dyno actions ------------------------------------------------------------------------------
    def _targets(self, name: str, dyno: str | None, ptype: str | None) -> list[dict[str, Any]]:
        rows = self.store.dynos(name)
        if dyno:
            names.split_dyno_name(dyno)
            return [self._dyno(name, dyno)]
        if ptype:
            names.validate_process_type(ptype)
            found = [r for r in rows if r["type"] == ptype]
            if not found:
                raise NotFound(f"No {ptype} dynos on ⬢ {name}")
            return found
        return [r for r in rows]

    def restart(self, name: str, dyno: str | None = None, ptype: str | None = None) -> list[str]:
        with self.rt.lock:
            app = self.app(name)
            targets = self._targets(name, dyno, ptype)
            rest = targets
            if self.rt.rollouts.preboot_enabled(app):
                web = [r for r in targets if r["type"] == "web" and not r["one_off"]]
                rest = [r for r in targets if r not in web]
                if web:
                    self.rt.rollouts.preboot(app, web, None, "restart")
            self.rt.apply_plans([(row, actions.plan_restart(row["name"], bool(app["space"]), bool(row["one_off"])))
                                 for row in rest])
            return [r["name"] for r in targets]

    def stop(self, name: str, dyno: str | None = None, ptype: str | None = None) -> list[str]:
        if not dyno and not ptype:
            raise InvalidInput("Please specify a process type or dyno name to stop. See more help with --help")
        with self.rt.lock:
            app = self.app(name)
            targets = self._targets(name, dyno, ptype)
            names = {r["name"] for r in targets}
            stuck = [o for o in self.store.old_dynos(name) if o["name"] in names]
            if stuck:  # ps:stop clears old preboot generations at once (lab-spec §7)
                self.rt.rollouts.retire_old(stuck)
            self.rt.apply_plans([(row, actions.plan_stop(row["name"], bool(app["space"]), bool(row["one_off"])))
                                 for row in targets])
            return [r["name"] for r in targets]

    def run(self, name: str, command: str, attach: bool, size: str | None = None) -> dict[str, Any]:
        """A one-off dyno ``run.NNNN`` on the current release (heroku-reference §1.6)."""
        if not command.strip():
            raise InvalidInput("Usage: labctl run COMMAND -a APP")
        with self.rt.lock:
            app = self.app(name)
            rel = self.store.current_release(name)
            if rel is None:
                raise Conflict(f"⬢ {name} has no release yet: deploy it first")
            taken = {r["name"] for r in self.store.dynos(name)}
            dyno = names.one_off_name("run", taken)
            if size:  # checked before anything is recorded: a bad size changes nothing
                from labctl.domain.sizes import check_size_for_runtime, get_size

                chosen = get_size(size)
                check_size_for_runtime(chosen, app["space"])
                size = chosen.name
            if "\x00" in command:
                raise InvalidInput("The command has a NUL byte")
            proc = Process("run", 1, size or default_size(app["space"]), command)
            row = self.rt._new_dyno_row(app, dyno, proc, rel["version"], one_off=True, attach=attach)
            row["next_start"] = None
            self.rt.start_dyno(row)
            return self.dyno_view(self.store.dyno(name, dyno) or row)

    def hang_up(self, name: str, dyno: str, container: str) -> None:
        """The attached client went away: SIGHUP, then R16 and a stop if the process keeps running."""
        from labctl.domain import clock

        self.sink.heroku(name, dyno, "Client connection closed. Sending SIGHUP to all processes")
        engine = self.rt.engine
        engine.signal(container, "SIGHUP")
        if engine.wait_for_exit(container, max(1.0, self.rt.scale(clock.SHUTDOWN_GRACE))):
            return
        self.sink.heroku(name, dyno, "Error R16 (Detached) -> An attached process is not responding to SIGHUP "
                                     "after its external connection was closed.")
        engine.terminate(container, self.rt.scale(clock.SHUTDOWN_GRACE))

    def finish_attached(self, name: str, dyno: str, container: str) -> None:
        with self.rt.lock:
            self.rt.attached.discard(container)
            row = self.store.dyno(name, dyno)
            if row and row["container"] == container:
                self.rt._on_exit(row)

    # -- views -------------------------------------------------------------------------------------
    def dynos(self, name: str, include_old: bool = False) -> list[dict[str, Any]]:
        """``ps`` shows the current dynos; ``ps --all`` adds the old generations preboot keeps serving."""
        self.app(name)
        views = [self.dyno_view(r) for r in self.store.dynos(name)]
        if include_old:
            for o in self.store.old_dynos(name):
                views.append({"name": o["name"], "type": o["name"].split(".")[0], "state": "up", "size": o["size"],
                              "command": o["command"], "instance": o["instance"],
                              "release": {"version": o["release"]}, "updated_at": _iso(o["started_at"]),
                              "app": {"name": name}, "port": o["port"], "container": o["container"],
                              "attach": False, "old": True, "routed": bool(o["routed"]),
                              "retire_at": _iso(o["retire_at"])})
        return views

    # -- features ------------------------------------------------------------------------------------
    def features(self, name: str) -> list[dict[str, Any]]:
        from labctl.domain.preboot import KNOWN_FEATURES

        enabled = self.app(name)["features"]
        return [{"name": k, "description": v, "enabled": bool(enabled.get(k)), "state": "general"}
                for k, v in KNOWN_FEATURES.items()]

    def set_feature(self, name: str, feature: str, on: bool) -> dict[str, Any]:
        """``features:enable/disable``: no restart (heroku-reference §4.1)."""
        from labctl.domain import preboot
        from labctl.domain.sizes import get_size

        if feature not in preboot.KNOWN_FEATURES:
            raise NotFound(f"Couldn't find that feature: {feature}")
        with self.rt.lock:
            app = self.app(name)
            features = dict(app["features"])
            if on:
                tiers = {get_size(p.size).tier for p in self._formation(app).values()}
                preboot.check_can_enable(app["space"], tiers, bool(features.get(feature)))
            elif not features.get(feature):
                raise Conflict(f"{feature} is already disabled.")
            features[feature] = on
            self.store.update_app(name, features=features)
            return next(f for f in self.features(name) if f["name"] == feature)

    @staticmethod
    def dyno_view(row: dict[str, Any]) -> dict[str, Any]:
        return {"name": row["name"], "type": row["type"], "state": row["state"], "size": row["size"],
                "command": row["command"], "instance": row["instance"], "release": {"version": row["release"]},
                "updated_at": _iso(row["updated_at"]), "app": {"name": row["app"]}, "port": row["port"],
                "container": row["container"], "attach": bool(row["attach"]), "cycle_at": _iso(row["cycle_at"]),
                "crashes": row["crashes"], "next_start": _iso(row["next_start"])}

    def instances(self) -> list[dict[str, Any]]:
        rows = self.store.dynos()
        out = []
        for inst in self.store.instances():
            hosted = [f"{r['app']}/{r['name']}" for r in rows if r["instance"] == inst["id"] and r["container"]]
            out.append({"id": inst["id"], "runtime": inst["runtime"], "state": inst["state"],
                        "created_at": _iso(inst["created_at"]), "dynos": hosted, "faults": inst["faults"]})
        return out

    def app_view(self, name: str) -> dict[str, Any]:
        app = self.app(name)
        rel = self.store.current_release(name)
        return {"name": name, "space": app["space"], "maintenance": bool(app["maintenance"]),
                "stack": "lab-24", "features": app["features"], "created_at": _iso(app["created_at"]),
                "release": rel["version"] if rel else None, "web_url": None,
                "formation": self.formation(name), "region": "lab"}

    def logs(self, name: str, after: int, limit: int, **filters: str | None) -> list[dict[str, Any]]:
        self.app(name)
        return self.store.logs(name, after=after, limit=min(max(limit, 1), 1500), **filters)


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _source_digest(src: Path) -> str:
    h = hashlib.sha1()
    for p in sorted(src.rglob("*")):
        if p.is_file() and ".git" not in p.parts:
            h.update(str(p.relative_to(src)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()[:7]
