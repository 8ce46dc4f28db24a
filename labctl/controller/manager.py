"""The platform operations the API exposes: spaces, apps, releases, config, formation, dyno actions.

Each operation validates its input first (so bad input changes nothing), records intent in the store,
and lets the runtime carry it out. The release pipeline is ``releases.py``, one-offs ``oneoffs.py`` and the
JSON shapes ``views.py``; the methods here say what each API call means.
"""

from __future__ import annotations

from collections.abc import Callable

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
from labctl.records import (
    AppRow,
    AppView,
    ConfigUpdate,
    DynoRow,
    DynoView,
    FeatureView,
    FormationUpdate,
    InstanceView,
    LogRow,
    OldDynoView,
    ProcessDict,
    ReleaseRow,
    ReleaseView,
    ScaleUpdate,
    SpaceRow,
)
from labctl.store import Store


class Manager:
    """Platform API semantics over the store and the runtime."""

    def __init__(self, store: Store, runtime: Runtime, sink: LogSink, lab: str):
        self.store = store
        self.rt = runtime
        self.sink = sink
        self.lab = lab
        self.oneoffs = OneOffs(runtime, sink, self.app_row)
        self.pipeline = Releases(runtime, sink, self.oneoffs, lab, self.app_row)

    # -- lookups ------------------------------------------------------------------------------------
    def app_row(self, app: str) -> AppRow:
        """The app's row; raises NotFound."""
        app_row = self.store.app(app)
        if app_row is None:
            raise NotFound("Couldn't find that app.")
        return app_row

    def _dyno(self, app: str, dyno: str) -> DynoRow:
        row = self.store.dyno(app, dyno)
        if row is None:
            raise NotFound("Couldn't find that dyno.")
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
    def create_space(self, name: str) -> SpaceRow:
        names.validate_space_name(name)
        with self.rt.lock:
            if self.store.space(name):
                raise Conflict(f"Space {name} already exists")
            net = self.rt.engine.ensure_network(name)
            self.rt.engine.connect_router(net)
            self.store.add_space(name)
            created = self.store.space(name)
            assert created is not None  # written just above, under the lock
            return created

    def destroy_space(self, name: str) -> None:
        with self.rt.lock:
            if not self.store.space(name):
                raise NotFound("Couldn't find that space.")
            used = [a["name"] for a in self.store.apps() if a["space"] == name]
            if used:
                raise Conflict(f"Space {name} still has apps: {', '.join(used)}. Destroy them first.")
            self.store.delete_space(name)
            self.rt.engine.remove_network(name)

    # -- apps ------------------------------------------------------------------------------------
    def create_app(self, app: str, space: str | None) -> AppRow:
        names.validate_app_name(app)
        with self.rt.lock:
            if space and not self.store.space(space):
                raise NotFound("Couldn't find that space.")
            if self.store.app(app):
                raise Conflict(f"Name {app} is already taken")
            self.store.add_app(app, space)
            self.rt.sync_router()
            return self.app_row(app)

    def destroy_app(self, app: str) -> None:
        with self.rt.lock:
            self.rt.destroy_app(self.app_row(app))
        self.rt.engine.remove_app_images(app)

    def set_maintenance(self, app: str, on: bool) -> AppRow:
        with self.rt.lock:
            self.app_row(app)
            self.store.update_app(app, maintenance=int(on))
            self.rt.sync_router()
            return self.app_row(app)

    # -- releases ----------------------------------------------------------------------------------
    def deploy(self, app: str, src: str, progress: Callable[[str], None]) -> ReleaseRow:
        """Build a slug from ``src`` and release it (lab-spec §6); a failed build changes nothing."""
        return self.pipeline.deploy(app, src, progress)

    def releases(self, app: str) -> list[ReleaseView]:
        self.app_row(app)
        return [r for r in self.store.releases(app) if r["status"] != "pending"]

    def release(self, app: str, version: str) -> ReleaseView:
        """One release by its version number (``releases:info vN``)."""
        self.app_row(app)
        row = self.store.release(app, int(version)) if version.isdigit() and len(version) < 10 else None
        if row is None or row["status"] == "pending":  # a release still building is not listed either
            raise NotFound("Couldn't find that release.")  # the Platform API's not_found words
        return row

    def rollback(self, app: str, version: int | None) -> ReleaseRow:
        return self.pipeline.rollback(app, version)

    def config(self, app: str) -> dict[str, str]:
        return dict(self.app_row(app)["config"])

    def update_config(self, app: str, changes: dict[str, str | None]) -> ConfigUpdate:
        """``config:set``/``config:unset``: a new release restarting the dynos (heroku-reference §7)."""
        for key, value in changes.items():
            if not key or "=" in key or not key.replace("_", "a").isalnum():
                raise InvalidInput(f"Invalid config var name {key!r}")
            if value is not None and "\x00" in value:
                raise InvalidInput(f"Config var {key} has a NUL byte: values must be text without NUL")
        with self.rt.lock:
            config = dict(self.app_row(app)["config"])
            for k, v in changes.items():
                if v is None:
                    config.pop(k, None)
                else:
                    config[k] = v
            self.store.update_app(app, config=config)
            current = self.store.current_release(app)
            if current is None:  # nothing deployed yet: config waits for the first deploy
                return {"config": config, "release": None}
            version = self.pipeline.reserve_version(app)
        verb = "Set" if all(v is not None for v in changes.values()) else "Unset"
        rel = self.pipeline.release(
            app, version, current["image"], current["procfile"], config, f"{verb} {', '.join(changes)} config vars"
        )
        return {"config": config, "release": rel}

    # -- formation ---------------------------------------------------------------------------------
    def formation(self, app: str) -> list[ProcessDict]:
        return views.formation_view(self.app_row(app))

    def scale(self, app: str, args: list[str]) -> ScaleUpdate:
        updates = parse_scale_args(args)
        with self.rt.lock:
            app_row = self.app_row(app)
            self._check_formation_unlocked(app_row)
            current = views.formation_of(app_row)
            if not current:
                raise NotFound(f"No process types on ⬢ {app}. Upload a Procfile to add process types.")
            new = apply_updates(current, updates, app_row["space"])
            self.store.update_app(app, formation=views.formation_dicts(new))
            for u in updates:
                if current[u.type].quantity == 0 and new[u.type].quantity > 0:
                    for row in self.store.dynos(app):  # scale 0 -> N resets cool-offs
                        self.store.update_dyno(app, row["name"], crashes=0)
            self.sink.api(
                app,
                "Scaled to " + ", ".join(f"{p.type}@{p.quantity}:{p.size}" for p in new.values()) + f" by user {USER}",
            )
            self.rt.tick()
            return {"formation": [views.process_dict(p) for p in new.values()], "message": describe(new)}

    def _check_formation_unlocked(self, app_row: AppRow) -> None:
        """Formation changes are refused while a preboot runs (heroku-reference §4.4)."""
        if self.rt.rollouts.preboot_in_progress(app_row):
            raise Conflict(preboot.FORMATION_LOCKED)

    def resize(self, app: str, sizes: dict[str, str]) -> FormationUpdate:
        """``ps:type``: new sizes restart the dynos of those types (heroku-reference §1.5, §6.1)."""
        with self.rt.lock:
            app_row = self.app_row(app)
            self._check_formation_unlocked(app_row)
            formation = views.formation_of(app_row)
            if not formation:
                raise NotFound(f"No process types on ⬢ {app}. Upload a Procfile to add process types.")
            targets = _size_targets(sizes, formation, app_row["space"])
            for ptype, size in targets.items():
                p = formation[ptype]
                formation[ptype] = Process(p.type, p.quantity, size, p.command)
                _check_single_dyno_tier(ptype, p.quantity, size)
            self.store.update_app(app, formation=views.formation_dicts(formation))
            for row in self.store.dynos(app):
                if not row["one_off"] and row["type"] in targets and row["size"] != targets[row["type"]]:
                    self.store.update_dyno(app, row["name"], size=targets[row["type"]])
                    fresh = self.store.dyno(app, row["name"])
                    if fresh is not None:  # it is: the lock is held
                        plan = actions.plan_restart(row["name"], bool(app_row["space"]), False)
                        self.rt.dynos.apply_plan(fresh, plan)
            return {"formation": [views.process_dict(p) for p in formation.values()]}

    # -- dyno actions ------------------------------------------------------------------------------
    def _targets(self, app: str, dyno: str | None, ptype: str | None) -> list[DynoRow]:
        rows = self.store.dynos(app)
        if dyno:
            names.split_dyno_name(dyno)
            return [self._dyno(app, dyno)]
        if ptype:
            names.validate_process_type(ptype)
            found = [r for r in rows if r["type"] == ptype]
            if not found:
                raise NotFound(f"No {ptype} dynos on ⬢ {app}")
            return found
        return rows

    def restart(self, app: str, dyno: str | None = None, ptype: str | None = None) -> list[str]:
        with self.rt.lock:
            app_row = self.app_row(app)
            targets = self._targets(app, dyno, ptype)
            self.rt.rollouts.restart(app_row, targets)
            return [r["name"] for r in targets]

    def stop(self, app: str, dyno: str | None = None, ptype: str | None = None) -> list[str]:
        if not dyno and not ptype:
            raise InvalidInput("Please specify a process type or dyno name to stop. See more help with --help")
        with self.rt.lock:
            app_row = self.app_row(app)
            targets = self._targets(app, dyno, ptype)
            stopped = {r["name"] for r in targets}
            stuck = [o for o in self.store.old_dynos(app) if o["name"] in stopped]
            if stuck:  # ps:stop clears old preboot generations at once (lab-spec §7)
                self.rt.rollouts.retire_old(stuck)
            self.rt.dynos.apply_plans(
                [(row, actions.plan_stop(row["name"], bool(app_row["space"]), bool(row["one_off"]))) for row in targets]
            )
            return [r["name"] for r in targets]

    def run(self, app: str, command: str, attach: bool, size: str | None = None) -> DynoView:
        """A one-off dyno ``run.NNNN`` on the current release (heroku-reference §1.6)."""
        return self.oneoffs.run(app, command, attach, size)

    def hang_up(self, app: str, dyno: str, container: str) -> None:
        """The attached client went away: SIGHUP, then R16 and a stop if the process keeps running."""
        self.oneoffs.hang_up(app, dyno, container)

    def finish_attached(self, app: str, dyno: str, container: str) -> None:
        self.oneoffs.finish_attached(app, dyno, container)

    # -- features ------------------------------------------------------------------------------------
    def features(self, app: str) -> list[FeatureView]:
        return views.feature_views(self.app_row(app))

    def set_feature(self, app: str, feature: str, on: bool) -> FeatureView:
        """``features:enable/disable``: no restart (heroku-reference §4.1)."""
        if feature not in preboot.KNOWN_FEATURES:
            raise NotFound("Couldn't find that feature.")
        with self.rt.lock:
            app_row = self.app_row(app)
            features = dict(app_row["features"])
            if on and feature == preboot.FEATURE:
                tiers = {get_size(p.size).tier for p in views.formation_of(app_row).values()}
                preboot.check_can_enable(app_row["space"], tiers, bool(features.get(feature)))
            elif on and features.get(feature):
                raise Conflict(f"{feature} is already enabled.")
            elif not on and not features.get(feature):
                raise Conflict(f"{feature} is already disabled.")
            features[feature] = on
            self.store.update_app(app, features=features)
            return next(f for f in self.features(app) if f["name"] == feature)

    # -- views -------------------------------------------------------------------------------------
    def dynos(self, app: str, include_old: bool = False, extended: bool = False) -> list[DynoView | OldDynoView]:
        """``ps`` shows the current dynos; ``ps --all`` adds the old generations preboot keeps serving;
        ``extended`` adds where each runs (``ps --extended``)."""
        app_row = self.app_row(app)
        found: list[DynoView | OldDynoView] = [views.dyno_view(r) for r in self.store.dynos(app)]
        if include_old:
            found += [views.old_dyno_view(o) for o in self.store.old_dynos(app)]
        if extended:
            ips = {s["instance"]: s["ip"] for s in self.store.sandboxes() if s["app"] == app}
            for d in found:
                d["extended"] = views.dyno_extended(d, app_row, ips.get(d["instance"] or ""))
        return found

    def instances(self) -> list[InstanceView]:
        return views.instance_views(self.store.instances(), self.store.dynos())

    def app_view(self, app: str) -> AppView:
        return views.app_view(self.app_row(app), self.store.current_release(app))

    def logs(self, app: str, after: int, limit: int, **filters: str | None) -> list[LogRow]:
        self.app_row(app)
        return self.store.logs(app, after=after, limit=min(max(limit, 1), 1500), **filters)


def _size_targets(sizes: dict[str, str], formation: dict[str, Process], space: str | None) -> dict[str, str]:
    """``ps:type`` arguments as {process type: size name}; ``*`` means every type. Bad input raises."""
    targets = dict(sizes)
    if "*" in targets:
        size = targets.pop("*")
        targets.update({t: size for t in formation})
    for ptype, size in targets.items():
        if ptype not in formation:
            raise InvalidInput(f"Type {ptype} not found in process formation. Types: {', '.join(sorted(formation))}")
        s = get_size(size)
        check_size_for_runtime(s, space)
        targets[ptype] = s.name
    return targets
