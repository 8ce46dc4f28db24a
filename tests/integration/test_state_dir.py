"""Reliability (issue 7): a state directory that cannot be written (an immutable database, a full disk): a change
fails with one line, the database stays intact, the lab works again once the disk can be written."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from labctl.labdir import LabDir
from tests.conftest import Lab, cli, deploy_sample, start_lab
from tests.integration.helpers import assert_nothing_lost, assert_releases_without_gaps, docker_client, one_error_line

pytestmark = pytest.mark.docker


# -- a state directory that cannot be written -------------------------------------------------------------------
def _chattr(flag: str, paths: list[Path]) -> None:
    r = subprocess.run(["chattr", flag, *map(str, paths)], capture_output=True, text=True)
    assert r.returncode == 0, (
        f"chattr {flag} failed (needs root and a file system with the immutable flag, e.g. "
        f"ext4; the state dir is {paths[0].parent}): {r.stderr.strip()}"
    )


def _integrity(db: Path) -> str:
    con = sqlite3.connect(str(db), timeout=30)
    try:
        return con.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        con.close()


def test_read_only_state_database(fresh_lab: Lab):
    """The db and its WAL made immutable (chmod does not stop root): a change fails with one line, and
    after restoring, the database is intact and the lab works again."""
    lab = fresh_lab
    app = deploy_sample(lab, "roapp")
    d = LabDir(lab.name)
    files = [d.file("lab.db"), d.file("lab.db-wal")]  # not the -shm: SQLite maps it, a write fault would be SIGBUS
    assert all(f.exists() for f in files)
    _chattr("+i", files)
    try:
        set_var = lab.cli("config:set", "FOO=bar", "-a", app)
        create = lab.cli("apps:create", "roother")
    finally:
        _chattr("-i", files)
    for r in (set_var, create):
        assert r.code != 0, "a change was accepted while the state database could not be written"
        line = one_error_line(r.err)
        assert re.search(r"read-only|readonly|I/O|not writable|permission|disk", line, re.I), line
    assert _integrity(d.file("lab.db")) == "ok"
    assert "FOO" not in lab.json("config", "-a", app)
    assert "roother" not in {a["name"] for a in lab.json("apps")}
    lab.ok("config:set", "FOO=bar", "-a", app)
    assert lab.json("config", "-a", app)["FOO"] == "bar"
    assert_nothing_lost(lab, {app: {"web": 1}})
    assert_releases_without_gaps(lab, app)


@pytest.fixture
def tiny_state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """LABCTL_STATE_DIR on a 4 MB tmpfs, unmounted afterwards."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(mnt)], capture_output=True, text=True
    )
    assert r.returncode == 0, f"cannot mount a tmpfs here (needs root/CAP_SYS_ADMIN): {r.stderr.strip()}"
    monkeypatch.setenv("LABCTL_STATE_DIR", str(mnt))
    try:
        yield mnt
    finally:
        if subprocess.run(["umount", str(mnt)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _fill(directory: Path) -> Path:
    """Fill the file system of ``directory`` to the last block (bounded: at most 64 MB written)."""
    filler = directory / "filler"
    with open(filler, "wb", buffering=0) as f:  # unbuffered: nothing left to flush (and fail) on close
        for _ in range(64 * 16):
            try:
                f.write(b"\0" * 65536)
            except OSError:
                break
        for _ in range(64):
            try:
                f.write(b"\0" * 512)
            except OSError:
                break
    return filler


def test_disk_full_state_dir(tiny_state_dir: Path):
    name = f"t{uuid.uuid4().hex[:8]}"
    try:
        lab = start_lab(name)
        lab.ok("apps:create", "fullapp")
        filler = _fill(tiny_state_dir / name)
        try:
            rs = [lab.cli("config:set", f"BIG={'x' * 200_000}", "-a", "fullapp"), lab.cli("apps:create", "fullother")]
        finally:
            filler.unlink()
        for res in rs:
            assert res.code != 0, "a change was accepted on a full disk"
            line = one_error_line(res.err)
            assert re.search(r"full|space|disk|I/O", line, re.I), line
        assert _integrity(LabDir(name).file("lab.db")) == "ok"
        assert "BIG" not in lab.json("config", "-a", "fullapp")
        assert "fullother" not in {a["name"] for a in lab.json("apps")}
        lab.ok("config:set", "SMALL=1", "-a", "fullapp")
        assert lab.json("config", "-a", "fullapp") == {"SMALL": "1"}
    finally:
        down = cli("down", lab=name)
        assert down.code == 0, down.err
        assert not docker_client().containers.list(
            all=True, ignore_removed=True, filters={"label": f"io.labctl.lab={name}"}
        )
