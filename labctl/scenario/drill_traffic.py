"""The drill's background process: steady traffic through the router, and what the lab looked like meanwhile.

``python -m labctl.scenario.drill_traffic LAB`` is started by ``labctl drill`` and keeps running after it returns,
while the learner investigates. Every half second it appends to the lab's ``drill/`` folder: the requests that
finished (``traffic.jsonl``, the records of ``labctl.traffic``), the app's dynos (``timeline.jsonl``) and the faults
(``faults.jsonl``). It ends by itself when the drill ends (``drill.json`` says so or is gone), when the lab is
removed (its state folder is gone), or after ``MAX_S`` — so nothing is left behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

MAX_S = 1800.0
TICK_S = 0.5


def _state(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / "drill.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _append(path: Path, rows: list[dict[str, Any]]) -> None:
    if rows:
        with open(path, "a", encoding="utf-8") as f:
            f.write("".join(json.dumps(r, default=str) + "\n" for r in rows))


def run(lab: str) -> int:
    from labctl.client import Client
    from labctl.labdir import LabDir
    from labctl.traffic import run_traffic

    folder = LabDir(lab).path / "drill"
    st = _state(folder)
    if st is None:
        return 1
    drill_id, app = st["id"], st["app"]
    (folder / "worker.pid").write_text(str(os.getpid()))
    records: list[dict[str, Any]] = []
    stop = threading.Event()
    api = Client(lab, timeout=5)

    def traffic() -> None:
        with contextlib.suppress(Exception):  # the lab went away: the loop below ends too
            run_traffic(
                app,
                rps=st["rps"],
                duration=MAX_S,
                path=st["path"],
                timeout=st["timeout"],
                stop=stop,
                client=Client(lab, timeout=10),
                router_port=st["router_port"],
                records=records,
            )
        stop.set()

    thread = threading.Thread(target=traffic, name="drill-traffic", daemon=True)
    thread.start()
    flushed = 0
    deadline = time.monotonic() + MAX_S
    try:
        while not stop.wait(TICK_S) and time.monotonic() < deadline:
            cur = _state(folder)
            if cur is None or cur.get("id") != drill_id or cur.get("status") == "ended":
                break
            now = time.time()
            with contextlib.suppress(Exception):
                dynos = {d["name"]: d for d in api.dynos(app)}
                row = {
                    n: {"instance": d["instance"], "container": (d.get("container") or "")[:12] or None,
                        "state": d["state"]}
                    for n, d in sorted(dynos.items())
                }  # fmt: skip
                _append(folder / "timeline.jsonl", [{"ts": now, "app": app, "dynos": row}])
            with contextlib.suppress(Exception):
                _append(folder / "faults.jsonl", [{"ts": now, "faults": api.faults()}])
            fresh = records[flushed:]
            flushed += len(fresh)
            _append(folder / "traffic.jsonl", fresh)
    finally:
        stop.set()
        thread.join(timeout=st["timeout"] + 5)
        if folder.is_dir():
            with contextlib.suppress(OSError):
                _append(folder / "traffic.jsonl", records[flushed:])
                (folder / "worker.pid").unlink()
    return 0


if __name__ == "__main__":
    sys.exit(run(sys.argv[1]))
