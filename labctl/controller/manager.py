"""The platform operations the API exposes: spaces, apps, releases, config, formation, dyno actions.

Each operation validates its input first (so bad input changes nothing), records intent in the store,
and lets the runtime carry it out. The release pipeline is ``releases.py``, one-offs ``oneoffs.py`` and the
JSON shapes ``views.py``; the methods here say what each API call means.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from labctl.controller import views
from labctl.controller.logsink import LogSink
from labctl.controller.oneoffs import OneOffs
from labctl.controller.releases import USER, Releases
from labctl.controller.runtime import Runtime
from labctl.domain import actions, names, preboot
from labctl.domain.formation import ScaleUpdate, apply_updates, parse_quantity
from labctl.domain.sizes import get_size
from labctl.errors import Conflict, InvalidInput, NotFound
from labctl.labdir import LabDir
from labctl.records import (
    AppRow,
    AppView,
    DynoRow,
    DynoView,
    FeatureView,
    InstanceView,
    LogRow,
    OldDynoView,
    ReleaseRow,
    ReleaseView,
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
        """The app's row, by name or by its UUID id; raises NotFound."""
        app_row = self.store.app(app) or (self.store.app_by_id(app) if _is_uuid(app) else None)
        if app_row is None:
            raise NotFound("Couldn't find that app.")
        return app_row

    def app_name(self, ident: str) -> str:
        """An app's name from its name or id; an unknown identity comes back unchanged (its lookup says 404)."""
        if _is_uuid(ident):
            row = self.store.app_by_id(ident)
            if row is not None:
                return row["name"]
        return ident

    def dyno_name(self, app: str, ident: str) -> str:
        """A dyno's name from its name or id (the Platform API accepts both)."""
        if _is_uuid(ident):
            row = self.store.dyno_by_id(self.app_name(app), ident)
            if row is not None:
                return row["name"]
        return ident

    def account_id(self) -> str:
        """The lab's one account: a UUID made once and kept in the store."""
        with self.store.tx():
            aid = self.store.get_meta("account_id")
            if aid is None:
                aid = str(uuid.uuid4())
                self.store.set_meta("account_id", aid)
                self.store.set_meta("account_created_at", str(time.time()))
        return aid

    def account(self) -> dict[str, Any]:
        aid = self.account_id()
        return views.account_view(aid, float(self.store.get_meta("account_created_at") or 0))

    def _space_row(self, space: str) -> SpaceRow:
        row = self.store.space(space) or (self.store.space_by_id(space) if _is_uuid(space) else None)
        if row is None:
            raise NotFound("Couldn't find that space.")
        return row

    def _release_ids(self, app: str) -> dict[int, str]:
        return {r["version"]: r["id"] for r in self.store.releases(app)}

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
    def spaces(self) -> list[dict[str, Any]]:
        return [views.space_view(r) for r in self.store.spaces()]

    def space(self, space: str) -> dict[str, Any]:
        return views.space_view(self._space_row(space))

    def create_space(self, name: str) -> dict[str, Any]:
        names.validate_space_name(name)
        with self.rt.lock:
            if self.store.space(name):
                raise Conflict(f"Space {name} already exists")
            self.store.add_space(name)
            try:
                self.rt.routing.add_space(name)  # its network, its own router, the common router forwarding to it
            except Exception:
                self.store.delete_space(name)  # nothing changed
                self.rt.routing.remove_space(name)
                raise
            return views.space_view(self._space_row(name))

    def destroy_space(self, space: str) -> dict[str, Any]:
        with self.rt.lock:
            row = self._space_row(space)
            name = row["name"]
            used = [a["name"] for a in self.store.apps() if a["space"] == name]
            if used:
                raise Conflict(f"Space {name} still has apps: {', '.join(used)}. Destroy them first.")
            self.store.delete_space(name)
            self.rt.routing.remove_space(name)
            self.rt.engine.remove_network(name)
            return views.space_view(row)

    # -- apps ------------------------------------------------------------------------------------
    def apps(self) -> list[AppView]:
        return [self.app_view(a["name"]) for a in self.store.apps()]

    def create_app(self, app: str, space: str | None) -> AppView:
        names.validate_app_name(app)
        with self.rt.lock:
            if space:
                space = self._space_row(space)["name"]
            if self.store.app(app):
                raise Conflict(f"Name {app} is already taken")
            self.store.add_app(app, space)
            self.rt.sync_router()
            return self.app_view(app)

    def destroy_app(self, app: str) -> AppView:
        with self.rt.lock:
            app_row = self.app_row(app)
            view = self.app_view(app_row["name"])
            self.rt.destroy_app(app_row)
        self.rt.engine.remove_app_images(app_row["name"])
        return view

    def update_app(self, app: str, maintenance: bool | None = None, name: str | None = None) -> AppView:
        """``PATCH /apps/{app}``: the maintenance flag and the name (``apps:rename``), checked before either
        changes."""
        if name is not None:
            names.validate_app_name(name)
        with self.rt.lock:
            app_row = self.app_row(app)
            app = app_row["name"]
            if name is not None and name != app:
                self._rename(app_row, name)
                app = name
            if maintenance is not None:
                self.store.update_app(app, maintenance=int(maintenance))
            self.rt.sync_router()
            return self.app_view(app)

    def _rename(self, app_row: AppRow, new: str) -> None:
        """The lab renames an app whose dynos are all stopped (its containers are labelled with the old name);
        Heroku renames a running app. Scale to 0 first, rename, scale back (docs/api.md)."""
        app = app_row["name"]
        if self.store.app(new):
            raise Conflict(f"Name {new} is already taken")
        busy = [r["name"] for r in self.store.dynos(app) if r["container"]] + [
            o["name"] for o in self.store.old_dynos(app)
        ]
        if busy or any(s["app"] == app for s in self.store.sandboxes()):
            raise Conflict(
                f"⬢ {app} still runs dynos ({', '.join(busy) or 'starting'}): the lab renames an app with no "
                f"running dynos. Scale its process types to 0, wait for ps to be empty, then rename."
            )
        self.store.rename_app(app, new)

    # -- releases ----------------------------------------------------------------------------------
    def release_view(self, rel: ReleaseRow) -> ReleaseView:
        current = self.store.current_release(rel["app"])
        app_row = self.app_row(rel["app"])
        return views.release_view(rel, app_row, current["version"] if current else None, self.account_id())

    def deploy(self, app: str, src: str, progress: Callable[[str], None]) -> ReleaseView:
        """Build a slug from ``src`` and release it (lab-spec §6); a failed build changes nothing."""
        return self.release_view(self.pipeline.deploy(app, src, progress))

    def releases(self, app: str) -> list[ReleaseView]:
        """Oldest first, as the Platform API lists them (a ``Range: version ..; order=desc`` turns it round)."""
        app_row = self.app_row(app)
        rows = [r for r in self.store.releases(app_row["name"]) if r["status"] != "pending"]
        return [self.release_view(r) for r in reversed(rows)]

    def _release_row(self, app: str, ident: str) -> ReleaseRow:
        row = None
        if ident.isdigit() and len(ident) < 10:
            row = self.store.release(app, int(ident))
        elif _is_uuid(ident):
            row = self.store.release_by_id(app, ident)
        if row is None or row["status"] == "pending":  # a release still building is not listed either
            raise NotFound("Couldn't find that release.")  # the Platform API's not_found words
        return row

    def release(self, app: str, ident: str) -> ReleaseView:
        """One release by its version number (``releases:info vN``) or its id."""
        app = self.app_row(app)["name"]
        return self.release_view(self._release_row(app, ident))

    def release_config(self, app: str, ident: str) -> dict[str, str]:
        """The config vars a release ran with."""
        app = self.app_row(app)["name"]
        return dict(self._release_row(app, ident)["config"])

    def rollback(self, app: str, release: int | str | None) -> ReleaseView:
        """``POST /apps/{app}/releases`` ``{"release": <id>}`` (the lab also takes a version number; none: the
        previous version)."""
        app = self.app_row(app)["name"]
        version = release if isinstance(release, int) or release is None else None
        if isinstance(release, str):
            version = self._release_row(app, release)["version"]
        return self.release_view(self.pipeline.rollback(app, version))

    def config(self, app: str) -> dict[str, str]:
        return dict(self.app_row(app)["config"])

    def update_config(self, app: str, changes: dict[str, str | None]) -> dict[str, str]:
        """``config:set``/``config:unset``: a new release restarting the dynos (heroku-reference §7)."""
        for key, value in changes.items():
            if not key or "=" in key or not key.replace("_", "a").isalnum():
                raise InvalidInput(f"Invalid config var name {key!r}")
            if value is not None and "\x00" in value:
                raise InvalidInput(f"Config var {key} has a NUL byte: values must be text without NUL")
        with self.rt.lock:
            app = self.app_row(app)["name"]
            config = dict(self.app_row(app)["config"])
            for k, v in changes.items():
                if v is None:
                    config.pop(k, None)
                else:
                    config[k] = v
            self.store.update_app(app, config=config)
            current = self.store.current_release(app)
            if current is None:  # nothing deployed yet: config waits for the first deploy
                return config
            version = self.pipeline.reserve_version(app)
        verb = "Set" if all(v is not None for v in changes.values()) else "Unset"
        self.pipeline.release(
            app, version, current["image"], current["procfile"], config, f"{verb} {', '.join(changes)} config vars"
        )
        return config

    # -- formation ---------------------------------------------------------------------------------
    def formation(self, app: str) -> list[dict[str, Any]]:
        return views.formation_view(self.app_row(app))

    def formation_type(self, app: str, ptype: str) -> dict[str, Any]:
        """One process type's formation, by its type or its id."""
        for entry in self.formation(app):
            if ptype in (entry["type"], entry["id"]):
                return entry
        raise NotFound(f"Couldn't find that process type ({ptype}).")

    def update_formation(self, app: str, updates: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """``PATCH /apps/{app}/formation``: ``[{"type", "quantity"?, "size"?}]`` all at once or none (bad input
        changes nothing). A quantity scales (``ps:scale``; from 0 resets crash cool-offs); a new size restarts that
        type's dynos on it (``ps:type``; heroku-reference §1.4, §1.5, §6.1). Answers the whole formation."""
        parsed = [_formation_update(u) for u in updates]
        if not parsed:
            raise InvalidInput("updates must list at least one process type")
        with self.rt.lock:
            app_row = self.app_row(app)
            app = app_row["name"]
            self._check_formation_unlocked(app_row)
            current = views.formation_of(app_row)
            if not current:
                raise NotFound(f"No process types on ⬢ {app}. Upload a Procfile to add process types.")
            for u in parsed:  # a formation entry may be named by its id
                if u.type not in current:
                    ids = {views.derived_id("formation", app_row["id"], t): t for t in current}
                    if u.type in ids:
                        parsed[parsed.index(u)] = ScaleUpdate(ids[u.type], u.op, u.amount, u.size)
            new = apply_updates(current, parsed, app_row["space"])
            self.store.update_app(app, formation=views.formation_dicts(new))
            scaled = [u for u in parsed if u.op]
            for u in scaled:
                if current[u.type].quantity == 0 and new[u.type].quantity > 0:
                    for row in self.store.dynos(app):  # scale 0 -> N resets cool-offs
                        self.store.update_dyno(app, row["name"], crashes=0)
            resized = {t: p.size for t, p in new.items() if p.size != current[t].size}
            for row in self.store.dynos(app):
                if not row["one_off"] and row["type"] in resized and row["size"] != resized[row["type"]]:
                    self.store.update_dyno(app, row["name"], size=resized[row["type"]])
                    fresh = self.store.dyno(app, row["name"])
                    if fresh is not None:  # it is: the lock is held
                        plan = actions.plan_restart(row["name"], bool(app_row["space"]), False)
                        self.rt.dynos.apply_plan(fresh, plan)
            if scaled:
                self.sink.api(
                    app,
                    "Scaled to "
                    + ", ".join(f"{p.type}@{p.quantity}:{p.size}" for p in new.values())
                    + f" by user {USER}",
                )
                self.rt.tick()
            return views.formation_view(self.app_row(app))

    def _check_formation_unlocked(self, app_row: AppRow) -> None:
        """Formation changes are refused while a preboot runs (heroku-reference §4.4)."""
        if self.rt.rollouts.preboot_in_progress(app_row):
            raise Conflict(preboot.FORMATION_LOCKED)

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
        app_row = self.app_row(app)
        row = self.oneoffs.run(app_row["name"], command, attach, size)
        return views.dyno_view(row, app_row, self._release_ids(app_row["name"]))

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
        app = app_row["name"]
        ids = self._release_ids(app)
        found: list[DynoView | OldDynoView] = [views.dyno_view(r, app_row, ids) for r in self.store.dynos(app)]
        if include_old:
            found += [views.old_dyno_view(o, app_row, ids) for o in self.store.old_dynos(app)]
        if extended:
            ips = {s["instance"]: s["ip"] for s in self.store.sandboxes() if s["app"] == app}
            for d in found:
                d["extended"] = views.dyno_extended(d, app_row, ips.get(d["instance"] or ""))
        return found

    def dyno(self, app: str, dyno: str) -> DynoView:
        """One dyno by name or id."""
        app_row = self.app_row(app)
        row = self._dyno(app_row["name"], self.dyno_name(app_row["name"], dyno))
        return views.dyno_view(row, app_row, self._release_ids(app_row["name"]))

    def instances(self) -> list[InstanceView]:
        rows, inst = self.store.instances(), self.rt.instances
        budgets = {i["id"]: (inst.budget(i).as_dict(), inst.effective_budget(i).as_dict()) for i in rows}
        usage = inst.live([i["id"] for i in rows])
        return views.instance_views(rows, self.store.dynos(), budgets, usage, inst.cgroups.enabled)

    def app_view(self, app: str) -> AppView:
        app_row = self.app_row(app)
        space = self.store.space(app_row["space"]) if app_row["space"] else None
        return views.app_view(app_row, self.store.current_release(app_row["name"]), space, self.account_id())

    def logs(self, app: str, after: int, limit: int, **filters: str | None) -> list[LogRow]:
        self.app_row(app)
        return self.store.logs(app, after=after, limit=min(max(limit, 1), 1500), **filters)


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return len(text) == 36


def _formation_update(u: object) -> ScaleUpdate:
    """One entry of a formation update, checked: ``type`` (a name), ``quantity`` and/or ``size`` (a size name or
    ``{"name": …}``; ``dyno_size`` too). Unknown keys are ignored."""
    if not isinstance(u, dict):
        raise InvalidInput("each update must be an object with a 'type'")
    ptype = u.get("type")
    if not isinstance(ptype, str) or not ptype:
        raise InvalidInput("each update must have a non-empty string 'type'")
    op, amount = parse_quantity(u["quantity"]) if u.get("quantity") is not None else ("", 0)
    size = u.get("size", u.get("dyno_size"))
    if isinstance(size, dict):
        size = size.get("name", size.get("id"))
    if size is not None:
        if not isinstance(size, str) or not size:
            raise InvalidInput("'size' must be a dyno size name, e.g. standard-2x")
        get_size(size)  # an unknown size is refused before anything changes
    if not op and size is None:
        raise InvalidInput(f"update of {ptype!r} must have a 'quantity' or a 'size'")
    return ScaleUpdate(ptype, op, amount, size)
