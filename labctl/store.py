"""SQLite store: the lab's intent and history (style.md §5). Labels on Docker objects are the runtime truth.

One connection shared by the controller's threads behind a lock; every write is one transaction, so a
crash (even ``kill -9``) leaves the database at the last committed state, never half-written.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from labctl.records import AppRow, DrainRow, DynoRow, InstanceRow, LogRow, OldDynoRow, ReleaseRow, SandboxRow, SpaceRow

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS spaces (name TEXT PRIMARY KEY, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS apps (
  name TEXT PRIMARY KEY, space TEXT, maintenance INTEGER NOT NULL DEFAULT 0,
  features TEXT NOT NULL DEFAULT '{}', config TEXT NOT NULL DEFAULT '{}',
  formation TEXT NOT NULL DEFAULT '{}', created_at REAL NOT NULL, rollout TEXT NOT NULL DEFAULT '{}');
CREATE TABLE IF NOT EXISTS releases (
  app TEXT NOT NULL, version INTEGER NOT NULL, image TEXT, procfile TEXT NOT NULL DEFAULT '{}',
  config TEXT NOT NULL DEFAULT '{}', description TEXT NOT NULL, status TEXT NOT NULL,
  created_at REAL NOT NULL, PRIMARY KEY (app, version));
CREATE TABLE IF NOT EXISTS instances (
  id TEXT PRIMARY KEY, runtime TEXT NOT NULL, state TEXT NOT NULL, created_at REAL NOT NULL,
  faults TEXT NOT NULL DEFAULT '[]', ready_at REAL);
CREATE TABLE IF NOT EXISTS sandboxes (
  instance TEXT NOT NULL, app TEXT NOT NULL, container TEXT NOT NULL, ip TEXT NOT NULL,
  PRIMARY KEY (instance, app));
CREATE TABLE IF NOT EXISTS dynos (
  app TEXT NOT NULL, name TEXT NOT NULL, type TEXT NOT NULL, size TEXT NOT NULL, command TEXT NOT NULL,
  release INTEGER NOT NULL, instance TEXT, state TEXT NOT NULL, updated_at REAL NOT NULL,
  container TEXT, port INTEGER, crashes INTEGER NOT NULL DEFAULT 0, next_start REAL,
  boot_deadline REAL, up_since REAL, cycle_at REAL, one_off INTEGER NOT NULL DEFAULT 0,
  attach INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (app, name));
CREATE TABLE IF NOT EXISTS old_dynos (
  container TEXT PRIMARY KEY, app TEXT NOT NULL, name TEXT NOT NULL, instance TEXT, port INTEGER,
  release INTEGER NOT NULL, size TEXT NOT NULL, command TEXT NOT NULL, started_at REAL NOT NULL,
  routed INTEGER NOT NULL DEFAULT 1, retire_at REAL);
CREATE TABLE IF NOT EXISTS logs (
  id INTEGER PRIMARY KEY AUTOINCREMENT, app TEXT NOT NULL, ts REAL NOT NULL,
  source TEXT NOT NULL, dyno TEXT NOT NULL, msg TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS logs_app ON logs (app, id);
CREATE TABLE IF NOT EXISTS drains (
  id TEXT PRIMARY KEY, app TEXT NOT NULL, url TEXT NOT NULL, token TEXT NOT NULL,
  created_at REAL NOT NULL, updated_at REAL NOT NULL, cursor INTEGER NOT NULL DEFAULT 0);
"""

# (table, column, declaration) added after a table's first version; ``Store`` adds them to an older database.
ADDED_COLUMNS = [
    ("instances", "ready_at", "REAL"),
    ("instances", "size", "TEXT"),  # the dyno size a dedicated instance is for (issue 16); NULL: a pool instance
    # Platform API identities and times (issue 19): a UUID ``id`` per space, app, release and dyno, kept for the
    # object's life; ``updated_at`` where Heroku's objects carry one.
    ("spaces", "id", "TEXT"),
    ("spaces", "updated_at", "REAL"),
    ("apps", "id", "TEXT"),
    ("apps", "updated_at", "REAL"),
    ("releases", "id", "TEXT"),
    ("releases", "updated_at", "REAL"),
    ("dynos", "id", "TEXT"),
    ("dynos", "created_at", "REAL"),
]
ID_TABLES = ("spaces", "apps", "releases", "dynos")  # rows of an older database get an id when it opens
JSON_COLUMNS = {"features", "config", "formation", "procfile", "faults", "rollout"}
LOG_KEEP = 1500  # Logplex keeps the last 1500 lines (heroku-reference §8)


def _decode(row: sqlite3.Row | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return {k: (json.loads(row[k]) if k in JSON_COLUMNS and row[k] is not None else row[k]) for k in row.keys()}


def _encode(value: Any) -> Any:
    return json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else value


class Store:
    """Thin access to the lab database; each method returns the record of its table (``labctl.records``)."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.RLock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30)
        self._db.row_factory = sqlite3.Row
        # ``dynos()`` as last read, and this connection's change count then (the controller is the database's
        # only writer): the reconcile loop asks several times a pass, mostly with nothing changed (issue 18).
        self._dynos_read: tuple[int, list[Any]] | None = None
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        self._add_missing_columns()

    def _add_missing_columns(self) -> None:
        """A database made by an older labctl gains the columns added since (each NULL in old rows)."""
        for table, column, decl in ADDED_COLUMNS:
            cols = {r[1] for r in self._db.execute(f"PRAGMA table_info({table})").fetchall()}
            if column not in cols:
                self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")
        with self.tx():
            for table in ID_TABLES:
                for (rowid,) in self._db.execute(f"SELECT rowid FROM {table} WHERE id IS NULL").fetchall():
                    self._db.execute(f"UPDATE {table} SET id = ? WHERE rowid = ?", (str(uuid.uuid4()), rowid))

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def tx(self) -> Iterator[Store]:
        """One atomic transaction; nested calls join the outer one."""
        with self._lock:
            if self._db.in_transaction:
                yield self
                return
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self
            except BaseException:
                self._db.execute("ROLLBACK")
                self._dynos_read = None  # a rollback does not count as a change
                raise
            self._db.execute("COMMIT")

    # Rows leave SQLite untyped (``Any``): each public method below names the record its table holds.
    def _all(self, sql: str, args: tuple = ()) -> list[Any]:
        with self._lock:
            return [_decode(r) for r in self._db.execute(sql, args).fetchall()]

    def _one(self, sql: str, args: tuple = ()) -> Any:
        with self._lock:
            return _decode(self._db.execute(sql, args).fetchone())

    def _exec(self, sql: str, args: tuple = ()) -> None:
        with self.tx():
            self._db.execute(sql, tuple(_encode(a) for a in args))

    def _insert(self, table: str, row: Mapping[str, object]) -> None:
        cols = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        self._exec(f"INSERT OR REPLACE INTO {table} ({cols}) VALUES ({marks})", tuple(row.values()))

    def _update(self, table: str, keys: dict[str, Any], changes: dict[str, Any]) -> None:
        sets = ", ".join(f"{k} = ?" for k in changes)
        where = " AND ".join(f"{k} = ?" for k in keys)
        self._exec(f"UPDATE {table} SET {sets} WHERE {where}", (*changes.values(), *keys.values()))

    # meta
    def get_meta(self, key: str, default: str | None = None) -> str | None:
        row = self._one("SELECT value FROM meta WHERE key = ?", (key,))
        return row["value"] if row else default

    def set_meta(self, key: str, value: str) -> None:
        self._insert("meta", {"key": key, "value": value})

    # spaces
    def spaces(self) -> list[SpaceRow]:
        return self._all("SELECT * FROM spaces ORDER BY name")

    def space(self, name: str) -> SpaceRow | None:
        return self._one("SELECT * FROM spaces WHERE name = ?", (name,))

    def space_by_id(self, sid: str) -> SpaceRow | None:
        return self._one("SELECT * FROM spaces WHERE id = ?", (sid,))

    def add_space(self, name: str) -> None:
        now = time.time()
        self._insert("spaces", {"name": name, "created_at": now, "updated_at": now, "id": str(uuid.uuid4())})

    def delete_space(self, name: str) -> None:
        self._exec("DELETE FROM spaces WHERE name = ?", (name,))

    # apps
    def apps(self) -> list[AppRow]:
        return self._all("SELECT * FROM apps ORDER BY name")

    def app(self, app: str) -> AppRow | None:
        return self._one("SELECT * FROM apps WHERE name = ?", (app,))

    def app_by_id(self, aid: str) -> AppRow | None:
        return self._one("SELECT * FROM apps WHERE id = ?", (aid,))

    def add_app(self, app: str, space: str | None) -> None:
        now = time.time()
        self._insert(
            "apps", {"name": app, "space": space, "created_at": now, "updated_at": now, "id": str(uuid.uuid4())}
        )

    def update_app(self, app: str, **changes: Any) -> None:
        self._update("apps", {"name": app}, {**changes, "updated_at": time.time()})

    def rename_app(self, app: str, new: str) -> None:
        """Every row naming the app follows it to its new name, in one transaction."""
        with self.tx():
            self._db.execute("UPDATE apps SET name = ?, updated_at = ? WHERE name = ?", (new, time.time(), app))
            for table in ("releases", "dynos", "logs", "old_dynos", "sandboxes"):
                self._db.execute(f"UPDATE {table} SET app = ? WHERE app = ?", (new, app))

    def delete_app(self, app: str) -> None:
        with self.tx():
            for table in ("apps", "releases", "dynos", "logs", "old_dynos", "drains"):
                col = "name" if table == "apps" else "app"
                self._db.execute(f"DELETE FROM {table} WHERE {col} = ?", (app,))

    # releases
    def releases(self, app: str) -> list[ReleaseRow]:
        return self._all("SELECT * FROM releases WHERE app = ? ORDER BY version DESC", (app,))

    def release(self, app: str, version: int) -> ReleaseRow | None:
        return self._one("SELECT * FROM releases WHERE app = ? AND version = ?", (app, version))

    def release_by_id(self, app: str, rid: str) -> ReleaseRow | None:
        return self._one("SELECT * FROM releases WHERE app = ? AND id = ?", (app, rid))

    def current_release(self, app: str) -> ReleaseRow | None:
        return self._one(
            "SELECT * FROM releases WHERE app = ? AND status = 'succeeded' ORDER BY version DESC LIMIT 1", (app,)
        )

    def next_version(self, app: str) -> int:
        row = self._one("SELECT MAX(version) AS v FROM releases WHERE app = ?", (app,))
        return int(row["v"] or 0) + 1 if row else 1

    def add_release(
        self,
        app: str,
        version: int,
        image: str | None,
        procfile: dict[str, str],
        config: dict[str, str],
        description: str,
        status: str,
    ) -> None:
        """Record (or record again, with a new ``created_at``) release ``version`` of the app; its id stays."""
        old = self.release(app, version)
        now = time.time()
        row: ReleaseRow = {
            "id": old["id"] if old and old.get("id") else str(uuid.uuid4()),
            "updated_at": now,
            "app": app,
            "version": version,
            "image": image,
            "procfile": procfile,
            "config": config,
            "description": description,
            "status": status,
            "created_at": now,
        }
        self._insert("releases", row)

    def set_release_status(self, app: str, version: int, status: str) -> None:
        self._update("releases", {"app": app, "version": version}, {"status": status, "updated_at": time.time()})

    def delete_release(self, app: str, version: int) -> None:
        self._exec("DELETE FROM releases WHERE app = ? AND version = ?", (app, version))

    # instances and their sandboxes
    def instances(self) -> list[InstanceRow]:
        return self._all("SELECT * FROM instances ORDER BY created_at, id")

    def instance(self, iid: str) -> InstanceRow | None:
        return self._one("SELECT * FROM instances WHERE id = ?", (iid,))

    def add_instance(self, iid: str, runtime: str, ready_at: float | None = None, size: str | None = None) -> None:
        """A new instance; ``ready_at`` in the future: it is provisioning until then; ``size``: the dyno size it
        is dedicated to (None: a Common Runtime pool instance)."""
        row = {
            "id": iid,
            "runtime": runtime,
            "state": "running",
            "created_at": time.time(),
            "ready_at": ready_at,
            "size": size,
        }
        self._insert("instances", row)

    def update_instance(self, iid: str, **changes: Any) -> None:
        self._update("instances", {"id": iid}, changes)

    def delete_instance(self, iid: str) -> None:
        with self.tx():
            self._db.execute("DELETE FROM instances WHERE id = ?", (iid,))
            self._db.execute("DELETE FROM sandboxes WHERE instance = ?", (iid,))

    def sandboxes(self, instance: str | None = None) -> list[SandboxRow]:
        if instance:
            return self._all("SELECT * FROM sandboxes WHERE instance = ?", (instance,))
        return self._all("SELECT * FROM sandboxes")

    def sandbox(self, instance: str, app: str) -> SandboxRow | None:
        return self._one("SELECT * FROM sandboxes WHERE instance = ? AND app = ?", (instance, app))

    def add_sandbox(self, instance: str, app: str, container: str, ip: str) -> None:
        self._insert("sandboxes", {"instance": instance, "app": app, "container": container, "ip": ip})

    def delete_sandbox(self, instance: str, app: str) -> None:
        self._exec("DELETE FROM sandboxes WHERE instance = ? AND app = ?", (instance, app))

    # dynos
    def dynos(self, app: str | None = None) -> list[DynoRow]:
        if app:
            return self._all("SELECT * FROM dynos WHERE app = ? ORDER BY name", (app,))
        with self._lock:
            changes, read = self._db.total_changes, self._dynos_read
            if read is None or read[0] != changes or self._db.in_transaction:
                read = (changes, self._all("SELECT * FROM dynos ORDER BY app, name"))
                self._dynos_read = None if self._db.in_transaction else read
            return [r.copy() for r in read[1]]  # copies: a caller may change its rows

    def dyno(self, app: str, dyno: str) -> DynoRow | None:
        return self._one("SELECT * FROM dynos WHERE app = ? AND name = ?", (app, dyno))

    def dyno_by_id(self, app: str, did: str) -> DynoRow | None:
        return self._one("SELECT * FROM dynos WHERE app = ? AND id = ?", (app, did))

    def add_dyno(self, row: DynoRow) -> None:
        """A dyno row (a new dyno: a new ``id`` unless the row carries one)."""
        self._insert("dynos", {"id": str(uuid.uuid4()), "created_at": time.time(), **row})

    def update_dyno(self, app: str, dyno: str, **changes: Any) -> None:
        self._update("dynos", {"app": app, "name": dyno}, changes)

    def delete_dyno(self, app: str, dyno: str) -> None:
        self._exec("DELETE FROM dynos WHERE app = ? AND name = ?", (app, dyno))

    # old dynos: the previous generation kept alive by preboot (lab-spec §7), hidden from `ps` (`ps --all` lists them)
    def old_dynos(self, app: str | None = None) -> list[OldDynoRow]:
        if app:
            return self._all("SELECT * FROM old_dynos WHERE app = ? ORDER BY name, started_at", (app,))
        return self._all("SELECT * FROM old_dynos ORDER BY app, name, started_at")

    def add_old_dyno(self, row: OldDynoRow) -> None:
        self._insert("old_dynos", row)

    def update_old_dyno(self, container: str, **changes: Any) -> None:
        self._update("old_dynos", {"container": container}, changes)

    def delete_old_dyno(self, container: str) -> None:
        self._exec("DELETE FROM old_dynos WHERE container = ?", (container,))

    # logs
    def add_log(self, app: str, source: str, dyno: str, msg: str, ts: float | None = None) -> None:
        self._exec(
            "INSERT INTO logs (app, ts, source, dyno, msg) VALUES (?, ?, ?, ?, ?)",
            (app, ts if ts is not None else time.time(), source, dyno, msg),
        )

    def logs(
        self,
        app: str,
        after: int = 0,
        limit: int = 100,
        dyno: str | None = None,
        ptype: str | None = None,
        source: str | None = None,
    ) -> list[LogRow]:
        """The last ``limit`` lines after id ``after``; ``dyno`` matches a name (web.1) or a type (web)."""
        where, args = ["app = ?", "id > ?"], [app, after]
        if source:
            where.append("source = ?")
            args.append(source)
        if dyno:
            where.append("(dyno = ? OR dyno LIKE ?)")
            args += [dyno, f"{dyno}.%"]
        if ptype:
            where.append("dyno LIKE ?")
            args.append(f"{ptype}.%")
        rows = self._all(f"SELECT * FROM logs WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?", (*args, limit))
        return list(reversed(rows))

    def logs_after(self, app: str, after: int, limit: int) -> list[LogRow]:
        """The first ``limit`` lines after id ``after``, oldest first (a log drain's reader)."""
        return self._all("SELECT * FROM logs WHERE app = ? AND id > ? ORDER BY id LIMIT ?", (app, after, limit))

    def lab_logs_after(self, after: int, limit: int, source: str, dyno: str) -> list[LogRow]:
        """Every app's lines of one source and dyno after id ``after``, oldest first (the dashboard's reader)."""
        return self._all(
            "SELECT * FROM logs WHERE id > ? AND source = ? AND dyno = ? ORDER BY id LIMIT ?",
            (after, source, dyno, limit),
        )

    def last_log_id(self) -> int:
        row = self._one("SELECT MAX(id) AS id FROM logs")
        return int(row["id"] or 0) if row else 0

    # log drains
    def add_drain(self, row: DrainRow) -> None:
        self._insert("drains", row)

    def drains(self, app: str | None = None) -> list[DrainRow]:
        if app is None:
            return self._all("SELECT * FROM drains ORDER BY created_at, id")
        return self._all("SELECT * FROM drains WHERE app = ? ORDER BY created_at, id", (app,))

    def delete_drain(self, drain_id: str) -> None:
        self._exec("DELETE FROM drains WHERE id = ?", (drain_id,))

    def set_drain_cursor(self, drain_id: str, cursor: int) -> None:
        """The id of the last log line the drain has been given (a restarted controller resumes after it)."""
        self._exec("UPDATE drains SET cursor = ? WHERE id = ?", (cursor, drain_id))

    def prune_logs(self) -> None:
        self._exec(
            "DELETE FROM logs WHERE id IN (SELECT id FROM (SELECT id, ROW_NUMBER() OVER "
            "(PARTITION BY app ORDER BY id DESC) AS rn FROM logs) WHERE rn > ?)",
            (LOG_KEEP,),
        )
