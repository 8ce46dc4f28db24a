"""The engine's truth against the store's intent: what runs is compared with what the store says should.

Labels on containers are the runtime truth (style.md §5). Three moments compare the two: adoption after a
controller (re)start, the periodic full sync of the reconcile loop, and recovery after the Docker engine
itself went away and came back.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from labctl import const

if TYPE_CHECKING:
    from labctl.controller.runtime import Runtime

log = logging.getLogger("labctl.runtime")


class EngineSync:
    """Brings the store and the runtime's bookkeeping in line with the containers the engine has."""

    def __init__(self, rt: Runtime):
        self.rt = rt
        self.lost = False  # the engine stopped answering; the first good tick after it recovers the lab

    def adopt(self) -> None:
        """After a (re)start: follow logs of running dynos; forget sandboxes whose container vanished."""
        rt = self.rt
        live = {c.id: c for c in rt.engine.containers()}
        for sb in rt.store.sandboxes():
            if sb["container"] not in live:
                rt.store.delete_sandbox(sb["instance"], sb["app"])
        for row in rt.store.dynos():
            c = live.get(row["container"] or "")
            if c and c.status == "running":
                rt._follow(row["app"], row["name"], c.id, since=time.time())
        rt.last_full_sync = 0.0

    def full_sync(self) -> None:
        """Compare labels with the store: exits become crashes, unknown containers are removed."""
        rt = self.rt
        rt.last_full_sync = time.time()
        rt.exited.clear()
        live = {c.id: c for c in rt.engine.containers()}
        known = set()
        for row in rt.store.dynos():
            cid = row["container"]
            if not cid:
                continue
            known.add(cid)
            c = live.get(cid)
            if c is None or c.status in ("exited", "dead"):
                if cid not in rt.attached:
                    rt._on_exit(row)
        for old in rt.store.old_dynos():
            known.add(old["container"])
            c = live.get(old["container"])
            if c is None or c.status in ("exited", "dead"):
                rt.store.delete_old_dyno(old["container"])
                rt.engine.remove(old["container"])
        rt.instances.sweep_dedicated()
        sandboxes = {sb["container"] for sb in rt.store.sandboxes()}
        for c in live.values():
            kind = c.labels.get(const.LABEL_KIND)
            if kind == const.KIND_DYNO and c.id not in known and c.id not in rt.terminating \
                    and c.id not in rt.attached:
                rt.retire_container(c.id, c.labels.get(const.LABEL_APP, "?"), c.labels.get(const.LABEL_DYNO, "?"),
                                    quiet=True)
            elif kind == const.KIND_SANDBOX and c.id not in sandboxes and not self._sandbox_busy(c.id):
                rt.engine.remove(c.id)

    def _sandbox_busy(self, cid: str) -> bool:
        return any(t.get("sandbox") == cid for t in self.rt.terminating.values())

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
        rt = self.rt
        log.warning("the Docker engine answers again: recovering the lab")
        live = {c.id: c for c in rt.engine.containers()}
        for sb in rt.store.sandboxes():
            c = live.get(sb["container"])
            if c is None or c.status != "running":
                rt.engine.remove(sb["container"])
                rt.store.delete_sandbox(sb["instance"], sb["app"])
        now = time.time()
        stopped = []
        for row in rt.store.dynos():
            cid = row["container"]
            c = live.get(cid) if cid else None
            if not cid and row["state"] == "crashed" and not row["one_off"] and (row["next_start"] or 0) > now:
                # e.g. its exit was seen while the engine went down: it restarts now (its crash count stays)
                rt.store.update_dyno(row["app"], row["name"], next_start=now)
            if not cid or row["one_off"] or (c is not None and c.status == "running"):
                continue  # one-offs that stopped complete as usual (full_sync)
            stopped.append(cid)
            rt.followed.discard(cid)
            rt.sink.heroku(row["app"], row["name"], "Restarting")
            rt.sink.state(row["app"], row["name"], row["state"], "starting")
            rt.store.update_dyno(row["app"], row["name"], container=None, port=None, state="starting",
                                 updated_at=now, next_start=now, boot_deadline=None, up_since=None)
        rt.engine.remove_many(stopped)
        rt.routing.recover()
        self.lost = False
        rt.last_full_sync = 0.0
