"""``Store.dynos()`` answers from its last read while nothing was written (issue 18: the reconcile loop asks
several times a pass), and never an answer that is out of date or shared with another caller."""

from __future__ import annotations

import pytest

from labctl.store import Store


def _row(name: str, state: str = "up") -> dict:
    return {
        "app": "demo",
        "name": name,
        "type": "web",
        "size": "Standard-1X",
        "command": "x",
        "release": 1,
        "instance": "i-a",
        "state": state,
        "updated_at": 1.0,
        "container": "c-" + name,
        "port": 5000,
        "crashes": 0,
        "next_start": None,
        "boot_deadline": None,
        "up_since": None,
        "cycle_at": None,
        "one_off": 0,
        "attach": 0,
    }


def test_dynos_follow_every_write_and_their_rows_are_the_callers_own(tmp_path):
    store = Store(tmp_path / "lab.db")
    try:
        store.add_app("demo", None)
        store.add_dyno(_row("web.1"))
        first = store.dynos()
        assert [r["name"] for r in first] == ["web.1"]
        first[0]["state"] = "changed by a caller"
        assert store.dynos()[0]["state"] == "up"  # a caller's change is not anyone else's answer
        store.update_dyno("demo", "web.1", state="crashed")
        assert store.dynos()[0]["state"] == "crashed"
        store.add_dyno(_row("web.2"))
        assert [r["name"] for r in store.dynos()] == ["web.1", "web.2"]
        store.delete_dyno("demo", "web.1")
        assert [r["name"] for r in store.dynos()] == ["web.2"]
        with pytest.raises(RuntimeError), store.tx():
            store.update_dyno("demo", "web.2", state="starting")
            assert store.dynos()[0]["state"] == "starting"  # inside the transaction: its own change
            raise RuntimeError("rolled back")
        assert store.dynos()[0]["state"] == "up"  # the rollback's state, not the one read inside
    finally:
        store.close()
