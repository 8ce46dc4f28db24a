"""The drill log: while a drill runs in a lab, every labctl command typed for that lab is appended to it.

``labctl drill`` (``labctl/scenario/drill.py``) grades the learner from these lines: which commands, when, with
which exit status. Nothing is written when no drill is on (no ``drill/active`` file in the lab's state folder).
"""

from __future__ import annotations

import json
import os
import time

from labctl import const

ACTIVE = "drill/active"
COMMANDS = "drill/commands.jsonl"


def lab_of(argv: list[str]) -> str:
    """The lab a command line acts on: ``--lab NAME`` / ``--lab=NAME``, else ``$LABCTL_LAB``, else the default."""
    for i, a in enumerate(argv):
        if a == "--":
            break
        if a == "--lab" and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--lab="):
            return a.partition("=")[2]
    return os.environ.get("LABCTL_LAB", const.DEFAULT_LAB)


def record(argv: list[str], code: int, started: float) -> None:
    """Append ``argv`` to the lab's drill log if a drill is on there; never fails the command."""
    try:
        from labctl.labdir import LabDir

        d = LabDir(lab_of(argv))
        if not d.file(ACTIVE).exists():
            return
        line = {"ts": round(started, 3), "argv": [a for a in argv], "code": code, "pid": os.getpid()}
        if os.environ.get("LABCTL_DRILL_SOLVE"):
            line["by"] = "solve"
        with open(d.file(COMMANDS), "a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")
    except Exception:  # noqa: BLE001 - the log is a by-product: a command never fails because of it
        return


def now() -> float:
    return time.time()
