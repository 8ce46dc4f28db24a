"""``scenario run --interactive``: a scenario's ``task`` steps become exercises for a person at a terminal.

At a task the learner sees the prompt and a ``lab>`` prompt. What they type runs as a labctl command in the
scenario's lab (``labctl`` in front is optional, ``--lab`` is added); they may as well use another terminal with
``LABCTL_LAB=<lab>``. The task's ``until`` condition is checked after each command and every second: when it
holds, the task is done. Words: ``hint``, ``check`` (grade now), ``solution`` (run it; the task counts as failed),
``skip``, ``quit``, ``help``. A hint also appears by itself every ``hint_every`` seconds; the task's ``timeout``
fails it. Everything else (expectations, waits) runs as in an unattended run.

Input is read from a file descriptor with ``select`` + ``os.read`` (never a blocking ``input()``), so that the
condition keeps being checked while nobody types.
"""

from __future__ import annotations

import os
import select
import shlex
import sys
import time
from typing import Any, TextIO

WORDS = {
    "hint": "show the next hint",
    "check": "grade the task now (waits a little for the condition)",
    "solution": "run the solution (the task then counts as failed)",
    "skip": "give up this task (failed)",
    "quit": "stop the scenario (the lab is torn down)",
    "help": "this list",
}
CHECK_EVERY = 1.0


def refuse(argv: list[str]) -> str | None:
    """Why a learner's command line cannot run here, or None."""
    from labctl.scenario.loader_context import FORBIDDEN_COMMANDS, labctl_commands

    if not argv:
        return None
    if argv[0] in FORBIDDEN_COMMANDS:  # first: `scenario` is not among the CLI's own commands
        return f"`{argv[0]}` is not available inside a scenario: {FORBIDDEN_COMMANDS[argv[0]]}"
    if argv[0] not in labctl_commands():
        return f"{argv[0]!r} is not a labctl command (try ps, ps:restart -d web.1 -a APP, logs -a APP, faults)"
    if any(a == "--lab" or a.startswith("--lab=") for a in argv):
        return "no --lab here: commands run in the scenario's lab"
    if argv[0] == "logs" and any(a in ("-t", "--tail") for a in argv):
        return "`logs --tail` never returns here; use `logs -n 50`, or tail in another terminal"
    return None


class Learner:
    def __init__(self, fd: int | None = None, out: TextIO | None = None, hint_every: float = 60.0):
        self.fd = sys.stdin.fileno() if fd is None else fd
        self.out = out or sys.stdout
        self.hint_every = hint_every
        self.buffer = b""

    def say(self, text: str = "", end: str = "\n") -> None:
        self.out.write(text + end)
        self.out.flush()

    # -- one task -------------------------------------------------------------------------------------------
    def task(self, runner: Any, r: Any) -> None:
        task = r.step.task
        start = time.monotonic()
        deadline = start + task.timeout.seconds
        next_hint = start + self.hint_every
        hints = list(task.hints)
        shown: list[str] = []
        r.extra.update(graded_by=None, hints_shown=shown)
        self.say("")
        self.say(f"── Task (step {r.step.number}) " + "─" * 50)
        for line in task.prompt.splitlines():
            self.say(f"  {line}")
        self.say(f"  Type labctl commands at `lab>` (or use another terminal: export LABCTL_LAB={runner.lab}).")
        self.say(f"  Words: {', '.join(WORDS)}. Time: {task.timeout.text}.")
        self.say("lab> ", end="")
        last_check = 0.0
        for _ in range(1_000_000):  # bounded by the deadline; the count is a backstop
            now = time.monotonic()
            if now >= deadline:
                self._grade(runner, r, runner.check_now(task.until), "timeout", f"time is up ({task.timeout.text})")
                return
            if now - last_check >= CHECK_EVERY:
                last_check = now
                checks = runner.check_now(task.until)
                if checks and all(c.passed for c in checks):
                    self._grade(runner, r, checks, "learner", f"done after {now - start:.0f}s")
                    return
            if now >= next_hint and hints:
                next_hint = now + self.hint_every
                self._hint(hints, shown)
            line = self._readline(min(0.5, max(0.0, deadline - now)))
            if line is None:
                continue
            if line == "\x04":  # end of input: nobody is there any more
                r.extra["graded_by"] = "quit"
                r.status, r.message = "fail", "end of input: the learner left"
                return
            if self._handle(runner, r, line.strip(), hints, shown, start):
                return
            self.say("lab> ", end="")

    def _handle(self, runner: Any, r: Any, line: str, hints: list[str], shown: list[str], start: float) -> bool:
        """One line of the learner; True when the task is graded."""
        task = r.step.task
        word = line.lower()
        if not line:
            return False
        if word == "help":
            for w, what in WORDS.items():
                self.say(f"  {w:9} {what}")
            return False
        if word == "hint":
            self._hint(hints, shown) if hints else self.say("  (no more hints)")
            return False
        if word == "skip":
            self._grade(runner, r, runner.check_now(task.until), "skip", "skipped by the learner", force_fail=True)
            return True
        if word == "quit":
            r.extra["graded_by"] = "quit"
            r.status, r.message = "fail", "the learner quit"
            return True
        if word == "check":
            self.say(f"  Checking (up to {task.settle.text})…")
            runner.poll(r, task.until, task.settle.seconds, task.settle.text)
            self._grade(runner, r, r.checks, "learner", f"graded on request after {time.monotonic() - start:.0f}s")
            return True
        if word == "solution":
            if not task.solution_argv:
                self.say("  This task has no solution command.")
                return False
            self.say(f"  Solution: labctl {task.solution}")
            self._run(runner, list(task.solution_argv))
            runner.poll(r, task.until, task.settle.seconds, task.settle.text)
            self._grade(runner, r, r.checks, "solution", "the solution was shown", force_fail=True)
            return True
        try:
            argv = shlex.split(line)
        except ValueError as err:
            self.say(f"  cannot read that line: {err}")
            return False
        if argv and argv[0] == "labctl":
            argv = argv[1:]
        why = refuse(argv)
        if why:
            self.say(f"  {why}")
            return False
        if argv:
            self._run(runner, argv)
            checks = runner.check_now(task.until)
            if checks and all(c.passed for c in checks):
                self._grade(runner, r, checks, "learner", f"done after {time.monotonic() - start:.0f}s")
                return True
        return False

    def _run(self, runner: Any, argv: list[str]) -> None:
        from labctl.scenario.runner_signals import StepTimeout

        try:
            call = runner.run_learner_command(argv)
        except StepTimeout:
            self.say("  (the command did not finish in time and was abandoned)")
            return
        text = (call.out + call.err).rstrip("\n")
        if text:
            self.say(text)

    def _hint(self, hints: list[str], shown: list[str]) -> None:
        hint = hints.pop(0)
        shown.append(hint)
        self.say(f"\n  Hint: {hint}")
        self.say("lab> ", end="")

    def _grade(self, runner: Any, r: Any, checks: list[Any], by: str, message: str, force_fail: bool = False) -> None:
        r.checks = checks
        runner._conclude(r)
        if force_fail:
            r.status = "fail"
        r.extra["graded_by"] = by
        r.message = message
        mark = "✓ Task done" if r.status == "pass" else "✗ Task not done"
        self.say(f"\n  {mark}: {r.measured or message}")

    # -- input ----------------------------------------------------------------------------------------------
    def _readline(self, wait: float) -> str | None:
        """A complete line if one is typed within ``wait`` seconds; ``"\\x04"`` at end of input."""
        if b"\n" not in self.buffer:
            try:
                ready, _, _ = select.select([self.fd], [], [], wait)
            except (OSError, ValueError):
                return "\x04"
            if ready:
                try:
                    data = os.read(self.fd, 4096)
                except OSError:
                    data = b""
                if not data:
                    if self.buffer:
                        line, self.buffer = self.buffer, b""
                        return line.decode("utf-8", "replace")
                    return "\x04"
                self.buffer += data
        if b"\n" in self.buffer:
            line, _, self.buffer = self.buffer.partition(b"\n")
            return line.decode("utf-8", "replace").rstrip("\r")
        return None
