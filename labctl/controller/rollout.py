"""How a release or a restart rolls over the formation: preboot (Common Runtime) and rolling deploys
(Private Spaces). The rules are in ``labctl.domain.preboot``; this module applies them to containers.

An app's ``rollout`` (in the store) says what is in progress:
``{"kind": "deploy", "release": 5, "switch_at": ts, "switched": false}`` (preboot deploy),
``{"kind": "restart"}`` (preboot restart: old dynos carry their own ``retire_at``), or
``{"kind": "rolling", "release": 5, "pending": [...], "batch": [...]}`` (Private Space).
Old dynos live in the ``old_dynos`` table: still serving (``routed``), hidden from ``ps``.
"""

from __future__ import annotations

import time
from typing import Protocol

from labctl.controller.context import Context
from labctl.domain import preboot
from labctl.domain.actions import DynoPlan, Placement, plan_restart
from labctl.domain.formation import Process, desired_dyno_names
from labctl.records import AppRow, DynoRow, OldDynoRow, Rollout
from labctl.store import Store


class DynoActions(Protocol):
    """What a rollout needs of the dyno lifecycle (``Dynos``)."""

    def start_dyno(self, row: DynoRow, placement: Placement = ...) -> None: ...

    def apply_plans(
        self, items: list[tuple[DynoRow, DynoPlan]], release: int | None = None, event: str | None = None
    ) -> None: ...

    def retire_container(
        self,
        cid: str,
        app: str,
        dyno: str,
        retire_instance: str | None = None,
        quiet: bool = False,
        port: int | None = None,
    ) -> None: ...

    def sync_router(self, also_up: set[tuple[str, str]] | None = None) -> None: ...


class RolloutState:
    """What is in progress, read from the store: the router asks which generation takes requests."""

    def __init__(self, store: Store):
        self.store = store

    @staticmethod
    def preboot_enabled(app_row: AppRow) -> bool:
        return bool(app_row["features"].get(preboot.FEATURE)) and not app_row["space"]

    def preboot_in_progress(self, app_row: AppRow) -> bool:
        kind = app_row["rollout"].get("kind")
        return kind in ("deploy", "restart") and (
            not app_row["rollout"].get("switched") or bool(self.store.old_dynos(app_row["name"]))
        )

    def routed_old(self, app_row: AppRow) -> list[OldDynoRow]:
        return [o for o in self.store.old_dynos(app_row["name"]) if o["routed"]]

    def new_routable(self, app_row: AppRow) -> bool:
        """Before a preboot deploy's switch the new dynos take no requests (while old ones can)."""
        ro = app_row["rollout"]
        return not (ro.get("kind") == "deploy" and not ro.get("switched") and self.routed_old(app_row))


class Rollouts(RolloutState):
    """Starts rollouts and moves them on (``tick``) through the dyno lifecycle's actions."""

    def __init__(self, ctx: Context, dynos: DynoActions):
        super().__init__(ctx.store)
        self.ctx = ctx
        self.dynos = dynos

    def restart(self, app_row: AppRow, rows: list[DynoRow], event: str | None = None) -> None:
        """``ps:restart`` (or cycling) of these dynos: web dynos preboot when the app_row has it, others restart."""
        rest = rows
        if self.preboot_enabled(app_row):
            web = [r for r in rows if r["type"] == "web" and not r["one_off"]]
            rest = [r for r in rows if r not in web]
            if web:
                self.preboot(app_row, web, None, "restart", event=event or "Restarting")
        self.dynos.apply_plans(
            [(row, plan_restart(row["name"], bool(app_row["space"]), bool(row["one_off"]))) for row in rest],
            event=event,
        )

    # -- starting a rollout ------------------------------------------------------------------------
    def on_release(self, app_row: AppRow, version: int, rows: list[DynoRow] | None = None) -> None:
        """Every release restarts the formation: with preboot, rolling, or plainly (stop, then start)."""
        if rows is None:
            rows = [r for r in self.store.dynos(app_row["name"]) if not r["one_off"]]
        if self.preboot_enabled(app_row):
            web = [r for r in rows if r["type"] == "web"]
            self.preboot(app_row, web, version, "deploy")
            rows = [r for r in rows if r["type"] != "web"]  # workers restart as without preboot
        elif app_row["space"] and rows:
            self._start_rolling(app_row, rows, version)
            return
        self.dynos.apply_plans(
            [(row, plan_restart(row["name"], bool(app_row["space"]), False)) for row in rows], release=version
        )

    def preboot(
        self, app_row: AppRow, rows: list[DynoRow], version: int | None, kind: str, event: str = "Restarting"
    ) -> None:
        """New web dynos start now; the current ones become old generations that keep serving.

        Crash-safe order (the controller may be killed anywhere in here): the rollout and its timer are
        recorded first, and each dyno's new container is due (``next_start``) before it is started, so
        a restarted controller resumes the same rollout on the same timer.
        """
        now = time.time()
        ro: Rollout = app_row["rollout"] if app_row["rollout"].get("kind") in ("deploy", "restart") else {}
        if kind == "deploy":
            assert version is not None  # a deploy rolls out its release; a restart keeps each dyno's
            ro = {
                "kind": "deploy",
                "release": version,
                "switched": False,
                "switch_at": now + self.ctx.scale(preboot.SWITCH_AFTER),
            }
        else:
            ro = {**ro, "kind": "restart"} if ro.get("kind") == "deploy" else {"kind": "restart"}
        self.store.update_app(app_row["name"], rollout=ro)
        self._replace_web(app_row, rows, version, event, now)
        if kind != "deploy":
            # Old dynos stop 4-6 min after the (latest) restart: repeated restarts keep pushing it back.
            for old in self.store.old_dynos(app_row["name"]):
                self.store.update_old_dyno(
                    old["container"], routed=1, retire_at=now + self.ctx.scale(preboot.restart_old_delay(self.ctx.rng))
                )
        self.dynos.sync_router()

    def _replace_web(self, app_row: AppRow, rows: list[DynoRow], version: int | None, event: str, now: float) -> None:
        for row in rows:
            self._keep_as_old(row)
            self.ctx.sink.heroku(app_row["name"], row["name"], event)
            self.ctx.sink.state(app_row["name"], row["name"], row["state"], "starting")
            self.store.update_dyno(
                app_row["name"],
                row["name"],
                container=None,
                port=None,
                state="starting",
                updated_at=now,
                release=version or row["release"],
                crashes=0,
                next_start=now,
            )
            fresh = self.store.dyno(app_row["name"], row["name"])
            if fresh is not None:  # it is: the lock is held
                self.dynos.start_dyno(fresh, Placement.ANY)

    def _keep_as_old(self, row: DynoRow) -> None:
        if not row["container"]:
            return
        self.store.add_old_dyno(
            {
                "container": row["container"],
                "app": row["app"],
                "name": row["name"],
                "instance": row["instance"],
                "port": row["port"],
                "release": row["release"],
                "size": row["size"],
                "command": row["command"],
                "started_at": row["updated_at"],
                "routed": int(row["state"] == "up"),
                "retire_at": None,
            }
        )

    def _start_rolling(self, app_row: AppRow, rows: list[DynoRow], version: int) -> None:
        names = sorted((r["name"] for r in rows), key=lambda n: (n.split(".")[0] != "web", n))
        self.store.update_app(
            app_row["name"], rollout={"kind": "rolling", "release": version, "pending": names, "batch": []}
        )
        rolling = self.store.app(app_row["name"])  # the row with the rollout just recorded
        if rolling is not None:
            self._roll(rolling)

    # -- timers --------------------------------------------------------------------------------------
    def tick(self, now: float) -> None:
        for app_row in self.store.apps():
            kind = app_row["rollout"].get("kind")
            if kind in ("deploy", "restart"):
                self._preboot_tick(app_row, now)
            elif kind == "rolling":
                self._roll(app_row)
            else:
                self._resume(app_row)

    def _resume(self, app_row: AppRow) -> None:
        """Dynos behind the current release with no rollout under way: the controller was killed between
        a release and its rollout (or in the middle of a plain restart of the formation). Finish it."""
        rel = self.store.current_release(app_row["name"])
        if rel is None:
            return
        behind = [r for r in self.store.dynos(app_row["name"]) if not r["one_off"] and r["release"] < rel["version"]]
        if behind:
            self.on_release(app_row, rel["version"], behind)

    def _preboot_tick(self, app_row: AppRow, now: float) -> None:
        ro = app_row["rollout"]
        olds = self.store.old_dynos(app_row["name"])
        if ro["kind"] == "deploy" and not ro.get("switched"):
            behind = [
                r
                for r in self.store.dynos(app_row["name"])
                if r["type"] == "web" and not r["one_off"] and r["release"] < ro["release"]
            ]
            if behind:  # the controller was killed before it replaced them: same rollout, same switch time
                self._replace_web(app_row, behind, ro["release"], "Restarting", now)
                self.dynos.sync_router()
        if ro["kind"] == "deploy" and not ro.get("switched") and now >= ro["switch_at"]:
            ro = {**ro, "switched": True}  # routing moves to the new dynos and away from the old at once
            self.store.update_app(app_row["name"], rollout=ro)
            self.retire_old(olds)
            olds = []
        due = [o for o in olds if o["retire_at"] is not None and o["retire_at"] <= now]
        if ro["kind"] == "deploy" and ro.get("switched"):
            due = olds  # left by a controller killed while it retired them at the switch
        if due:
            self.retire_old(due)
        if (ro["kind"] == "restart" or ro.get("switched")) and not self.store.old_dynos(app_row["name"]):
            self.store.update_app(app_row["name"], rollout={})

    def retire_old(self, olds: list[OldDynoRow]) -> None:
        """Take old generations out of the router, then shut them down (SIGTERM, grace)."""
        for o in olds:  # out of the routing set first; `ps --all` still lists them until they are gone
            self.store.update_old_dyno(o["container"], routed=0)
        self.dynos.sync_router()
        for o in olds:
            self.store.delete_old_dyno(o["container"])
            self.ctx.sink.heroku(o["app"], o["name"], "Stopping all processes with SIGTERM")
            self.dynos.retire_container(o["container"], o["app"], o["name"], port=o["port"])

    def _roll(self, app_row: AppRow) -> None:
        ro = app_row["rollout"]
        rows = {r["name"]: r for r in self.store.dynos(app_row["name"]) if not r["one_off"]}
        if any(rows[n]["state"] != "up" for n in ro["batch"] if n in rows):
            return  # the current batch is still booting
        pending = [n for n in ro["pending"] if n in rows]
        if not pending:
            self.store.update_app(app_row["name"], rollout={})
            return
        formation = {k: Process(**v) for k, v in app_row["formation"].items()}
        size = preboot.rolling_batch_size(max(1, len(desired_dyno_names(formation))))
        batch, rest = pending[:size], pending[size:]
        self.store.update_app(app_row["name"], rollout={**ro, "pending": rest, "batch": batch})
        batch_rows = [r for r in (self.store.dyno(app_row["name"], name) for name in batch) if r is not None]
        self.dynos.apply_plans([(r, plan_restart(r["name"], True, False)) for r in batch_rows], release=ro["release"])
