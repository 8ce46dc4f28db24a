"""The engine's truth against the store's intent: what runs is compared with what the store says should.

Labels on containers are the runtime truth (style.md §5). Three moments compare the two: adoption after a
controller (re)start, the periodic full sync of the reconcile loop, and recovery after the Docker engine
itself went away and came back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

from labctl import const
from labctl.controller.context import Context
from labctl.engine.docker import ContainerInfo
from labctl.records import DynoRow

log = logging.getLogger("labctl.runtime")
FULL_SYNC_EVERY = 5.0


class DynoWatch(Protocol):
    """What syncing needs of the dyno lifecycle (``Dynos``)."""

    def follow(self, app: str, dyno: str, cid: str, since: float | None = None) -> None: ...

    def on_exit(self, row: DynoRow) -> None: ...

    def retire_container(
        self,
        cid: str,
        app: str,
        dyno: str,
        retire_instance: str | None = None,
        quiet: bool = False,
        port: int | None = None,
    ) -> None: ...


class EngineSync:
    """Brings the store and the runtime's bookkeeping in line with the containers the engine has."""

    def __init__(
        self, ctx: Context, dynos: DynoWatch, *, sweep_instances: Callable[[], None], recover_router: Callable[[], None]
    ):
        self.ctx = ctx
        self.store = ctx.store
        self.engine = ctx.engine
        self.tracked = ctx.tracked
        self.dynos = dynos
        self.sweep_instances = sweep_instances  # dedicated instances no dyno uses any more go
        self.recover_router = recover_router  # the router back on the lab's ports, its log followed
        self.lost = False  # the engine stopped answering; the first good tick after it recovers the lab
        self.last_full_sync = 0.0

    def due(self, now: float) -> bool:
        """A full sync every FULL_SYNC_EVERY seconds, and at once when the engine reported an exit. (A rarer
        periodic sync while the event stream is followed was tried: a Private Space crash then went unnoticed
        until it, so the exit events alone do not carry every exit here.)"""
        return now - self.last_full_sync >= FULL_SYNC_EVERY or bool(self.tracked.exited)

    def on_events_reconnected(self) -> None:
        """The event stream broke and opened again: what happened meanwhile is found by a full sync now."""
        self.last_full_sync = 0.0
        self.ctx.wake()

    def adopt(self) -> None:
        """After a (re)start: follow logs of running dynos; forget sandboxes whose container vanished."""
        live = {c.id: c for c in self.engine.containers()}
        for sb in self.store.sandboxes():
            if sb["container"] not in live:
                self.store.delete_sandbox(sb["instance"], sb["app"])
        for row in self.store.dynos():
            c = live.get(row["container"] or "")
            if c and c.status == "running":
                self.dynos.follow(row["app"], row["name"], c.id, since=time.time())
        self.last_full_sync = 0.0

    def full_sync(self) -> None:
        """Compare labels with the store: exits become crashes, unknown containers are removed."""
        self.last_full_sync = time.time()
        self.tracked.exited.clear()
        live = {c.id: c for c in self.engine.containers()}
        known = self._sync_dynos(live) | self._sync_old_dynos(live)
        self.sweep_instances()
        sandboxes = {sb["container"] for sb in self.store.sandboxes()}
        tracked = self.tracked
        for c in live.values():
            kind = c.labels.get(const.LABEL_KIND)
            if (
                kind == const.KIND_DYNO
                and c.id not in known
                and c.id not in tracked.terminating
                and c.id not in tracked.attached
            ):
                self.dynos.retire_container(
                    c.id, c.labels.get(const.LABEL_APP, "?"), c.labels.get(const.LABEL_DYNO, "?"), quiet=True
                )
            elif kind == const.KIND_SANDBOX and c.id not in sandboxes:
                self.engine.remove(c.id)

    def _sync_dynos(self, live: dict[str, ContainerInfo]) -> set[str]:
        """A dyno whose container exited or vanished: its exit is handled (unless a client is attached)."""
        known = set()
        for row in self.store.dynos():
            cid = row["container"]
            if not cid:
                continue
            known.add(cid)
            c = live.get(cid)
            if (c is None or c.status in ("exited", "dead")) and cid not in self.tracked.attached:
                self.dynos.on_exit(row)
        return known

    def _sync_old_dynos(self, live: dict[str, ContainerInfo]) -> set[str]:
        """An old generation that exited is forgotten."""
        known = set()
        for old in self.store.old_dynos():
            known.add(old["container"])
            c = live.get(old["container"])
            if c is None or c.status in ("exited", "dead"):
                self.store.delete_old_dyno(old["container"])
                self.engine.remove(old["container"])
        return known

    # -- engine loss ------------------------------------------------------------------------------------
    def on_lost(self) -> None:
        if not self.lost:
            log.warning("the Docker engine does not answer: the lab recovers when it is back")
        self.lost = True  # the loop retries every second (no wakeup: that would spin)

    def recover(self) -> None:
        """The engine answers again after an outage (dockerd restarted): bring back what it stopped.

        Without live-restore an engine restart stops every container and only the router (restart policy)
        starts again, on new ports when they were chosen by the engine. Like a host reboot, this is not
        a crash of the dynos: each restarts on its instance (``Restarting``, no crash count); a sandbox
        that is not running is replaced (the instance's faults apply to the new one); the router is
        brought back on the lab's ports, reloaded with the new addresses, and its log followed again.
        """
        log.warning("the Docker engine answers again: recovering the lab")
        live = {c.id: c for c in self.engine.containers()}
        for sb in self.store.sandboxes():
            c = live.get(sb["container"])
            if c is None or c.status != "running":
                self.engine.remove(sb["container"])
                self.store.delete_sandbox(sb["instance"], sb["app"])
        self.engine.remove_many(self._restart_stopped(live))
        self.recover_router()
        self.lost = False
        self.last_full_sync = 0.0

    def _restart_stopped(self, live: dict[str, ContainerInfo]) -> list[str]:
        """Dynos the engine stopped restart on their instance; returns their old containers."""
        sink, store = self.ctx.sink, self.store
        now = time.time()
        stopped = []
        for row in store.dynos():
            cid = row["container"]
            c = live.get(cid) if cid else None
            if not cid and row["state"] == "crashed" and not row["one_off"] and (row["next_start"] or 0) > now:
                # e.g. its exit was seen while the engine went down: it restarts now (its crash count stays)
                store.update_dyno(row["app"], row["name"], next_start=now)
            if not cid or row["one_off"] or (c is not None and c.status == "running"):
                continue  # one-offs that stopped complete as usual (full_sync)
            stopped.append(cid)
            self.tracked.followed.discard(cid)
            sink.heroku(row["app"], row["name"], "Restarting")
            sink.state(row["app"], row["name"], row["state"], "starting")
            store.update_dyno(
                row["app"],
                row["name"],
                container=None,
                port=None,
                state="starting",
                updated_at=now,
                next_start=now,
                boot_deadline=None,
                up_since=None,
            )
        return stopped
