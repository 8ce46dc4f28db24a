"""The platform operations the API exposes: spaces, apps, releases, config, formation, dyno actions.

Each operation validates its input first (so bad input changes nothing), records intent in the store,
and lets the runtime carry it out. The release pipeline is ``releases.py``, one-offs ``oneoffs.py`` and the
JSON shapes ``views.py``; the methods here say what each API call means.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from labctl.controller import views
from labctl.controller.logsink import LogSink
from labctl.controller.oneoffs import OneOffs
from labctl.controller.releases import USER, Releases
from labctl.controller.runtime import Runtime
from labctl.domain import actions, names, preboot
from labctl.domain.formation import Process, _check_single_dyno_tier, apply_updates, describe, parse_scale_args
from labctl.domain.sizes import check_size_for_runtime, get_size
from labctl.errors import Conflict, InvalidInput, NotFound
from labctl.labdir import LabDir
from labctl.store import Store


class Manager:
    """Platform API semantics over the store and the runtime."""

    def __init__(self, store: Store, runtime: Runtime, sink: LogSink, lab: str):
        self.store = store
        self.rt = runtime
        self.sink = sink
        self.lab = lab
        self.oneoffs = OneOffs(runtime, sink, self.app)
        self.pipeline = Releases(runtime, sink, self.oneoffs, lab, self.app)

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
        with self.rt.lock:
            d = LabDir(self.lab)
            settings = d.settings()
            settings.timescale = factor
            d.save_settings(settings)
            self.rt.set_timescale(factor)

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
        return self.pipeline.deploy(name, src, progress)

    def releases(self, name: str) -> list[dict[str, Any]]:
        self.app(name)
        return [r for r in self.store.releases(name) if r["status"] != "pending"]

    def rollback(self, name: str, version: int | None) -> dict[str, Any]:
        return self.pipeline.rollback(name, version)

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
            config = dict(self.app(name)["config"])
            for k, v in changes.items():
                if v is None:
                    config.pop(k, None)
                else:
                    config[k] = v
            self.store.update_app(name, config=config)
            current = self.store.current_release(name)
            if current is None:  # nothing deployed yet: config waits for the first deploy
                return {"config": config, "release": None}
            version = self.pipeline.reserve_version(name)
        verb = "Set" if all(v is not None for v in changes.values()) else "Unset"
        rel = self.pipeline.release(name, version, current["image"], current["procfile"], config,
                                     f"{verb} {', '.join(changes)} config vars")
        return {"config": config, "release": rel}

    # -- formation ---------------------------------------------------------------------------------
    def formation(self, name: str) -> list[dict[str, Any]]:
        return views.formation_view(self.app(name))

    def scale(self, name: str, args: list[str]) -> dict[str, Any]:
        updates = parse_scale_args(args)
        with self.rt.lock:
            app = self.app(name)
            self._check_formation_unlocked(app)
            current = views.formation_of(app)
            if not current:
                raise NotFound(f"No process types on ⬢ {name}. Upload a Procfile to add process types.")
            new = apply_updates(current, updates, app["space"])
            self.store.update_app(name, formation={k: vars(p) for k, p in new.items()})
            for u in updates:
                if current[u.type].quantity == 0 and new[u.type].quantity > 0:
                    for row in self.store.dynos(name):  # scale 0 -> N resets cool-offs
                        self.store.update_dyno(name, row["name"], crashes=0)
            self.sink.api(name, "Scaled to " + ", ".join(f"{p.type}@{p.quantity}:{p.size}" for p in new.values())
                          + f" by user {USER}")
            self.rt.tick()
            return {"formation": [vars(p) for p in new.values()], "message": describe(new)}

    def _check_formation_unlocked(self, app: dict[str, Any]) -> None:
        """Formation changes are refused while a preboot runs (heroku-reference §4.4)."""
        if self.rt.rollouts.preboot_in_progress(app):
            raise Conflict(preboot.FORMATION_LOCKED)

    def resize(self, name: str, sizes: dict[str, str]) -> dict[str, Any]:
        """``ps:type``: new sizes restart the dynos of those types (heroku-reference §1.5, §6.1)."""
        with self.rt.lock:
            app = self.app(name)
            self._check_formation_unlocked(app)
            formation = views.formation_of(app)
            if not formation:
                raise NotFound(f"No process types on ⬢ {name}. Upload a Procfile to add process types.")
            targets = _size_targets(sizes, formation, app["space"])
            for ptype, size in targets.items():
                p = formation[ptype]
                formation[ptype] = Process(p.type, p.quantity, size, p.command)
                _check_single_dyno_tier(ptype, p.quantity, size)
            self.store.update_app(name, formation={k: vars(p) for k, p in formation.items()})
            for row in self.store.dynos(name):
                if not row["one_off"] and row["type"] in targets and row["size"] != targets[row["type"]]:
                    self.store.update_dyno(name, row["name"], size=targets[row["type"]])
                    fresh = self.store.dyno(name, row["name"])
                    plan = actions.plan_restart(row["name"], bool(app["space"]), False)
                    self.rt.dynos.apply_plan(fresh, plan)  # type: ignore[arg-type]
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
            self.rt.rollouts.restart(app, targets)
            return [r["name"] for r in targets]

    def stop(self, name: str, dyno: str | None = None, ptype: str | None = None) -> list[str]:
        if not dyno and not ptype:
            raise InvalidInput("Please specify a process type or dyno name to stop. See more help with --help")
        with self.rt.lock:
            app = self.app(name)
            targets = self._targets(name, dyno, ptype)
            stopped = {r["name"] for r in targets}
            stuck = [o for o in self.store.old_dynos(name) if o["name"] in stopped]
            if stuck:  # ps:stop clears old preboot generations at once (lab-spec §7)
                self.rt.rollouts.retire_old(stuck)
            self.rt.dynos.apply_plans([(row, actions.plan_stop(row["name"], bool(app["space"]),
                                                               bool(row["one_off"]))) for row in targets])
            return [r["name"] for r in targets]

    def run(self, name: str, command: str, attach: bool, size: str | None = None) -> dict[str, Any]:
        """A one-off dyno ``run.NNNN`` on the current release (heroku-reference §1.6)."""
        return self.oneoffs.run(name, command, attach, size)

    def hang_up(self, name: str, dyno: str, container: str) -> None:
        """The attached client went away: SIGHUP, then R16 and a stop if the process keeps running."""
        self.oneoffs.hang_up(name, dyno, container)

    def finish_attached(self, name: str, dyno: str, container: str) -> None:
        self.oneoffs.finish_attached(name, dyno, container)

    # -- features ------------------------------------------------------------------------------------
    def features(self, name: str) -> list[dict[str, Any]]:
        return views.feature_views(self.app(name))

    def set_feature(self, name: str, feature: str, on: bool) -> dict[str, Any]:
        """``features:enable/disable``: no restart (heroku-reference §4.1)."""
        if feature not in preboot.KNOWN_FEATURES:
            raise NotFound(f"Couldn't find that feature: {feature}")
        with self.rt.lock:
            app = self.app(name)
            features = dict(app["features"])
            if on:
                tiers = {get_size(p.size).tier for p in views.formation_of(app).values()}
                preboot.check_can_enable(app["space"], tiers, bool(features.get(feature)))
            elif not features.get(feature):
                raise Conflict(f"{feature} is already disabled.")
            features[feature] = on
            self.store.update_app(name, features=features)
            return next(f for f in self.features(name) if f["name"] == feature)

    # -- views -------------------------------------------------------------------------------------
    def dynos(self, name: str, include_old: bool = False) -> list[dict[str, Any]]:
        """``ps`` shows the current dynos; ``ps --all`` adds the old generations preboot keeps serving."""
        self.app(name)
        found = [views.dyno_view(r) for r in self.store.dynos(name)]
        if include_old:
            found += [views.old_dyno_view(o, name) for o in self.store.old_dynos(name)]
        return found

    def instances(self) -> list[dict[str, Any]]:
        return views.instance_views(self.store.instances(), self.store.dynos())

    def app_view(self, name: str) -> dict[str, Any]:
        return views.app_view(self.app(name), self.store.current_release(name))

    def logs(self, name: str, after: int, limit: int, **filters: str | None) -> list[dict[str, Any]]:
        self.app(name)
        return self.store.logs(name, after=after, limit=min(max(limit, 1), 1500), **filters)


def _size_targets(sizes: dict[str, str], formation: dict[str, Process], space: str | None) -> dict[str, str]:
    """``ps:type`` arguments as {process type: size name}; ``*`` means every type. Bad input raises."""
    targets = dict(sizes)
    if "*" in targets:
        size = targets.pop("*")
        targets.update({t: size for t in formation})
    for ptype, size in targets.items():
        if ptype not in formation:
            raise InvalidInput(f"Type {ptype} not found in process formation. "
                               f"Types: {', '.join(sorted(formation))}")
        s = get_size(size)
        check_size_for_runtime(s, space)
        targets[ptype] = s.name
    return targets
