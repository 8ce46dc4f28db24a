"""Signals around a scenario run: a step's timeout (SIGALRM), SIGTERM as Ctrl-C, and a teardown nothing interrupts.

Signal handlers can only be set in the main thread; elsewhere each of these does nothing.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any


class StepTimeout(BaseException):
    """Raised by the alarm inside an in-process CLI call that ran past its step's timeout.

    A BaseException so that the CLI's error boundary (which catches Exception) lets it through."""


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def _alarm(seconds: float) -> Iterator[None]:
    """Raise StepTimeout after ``seconds`` (main thread only; elsewhere the call is unbounded)."""
    if not _main_thread() or seconds <= 0:
        yield
        return

    def fire(signum: int, frame: Any) -> None:
        raise StepTimeout()

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@contextlib.contextmanager
def _interrupt_on_sigterm(got: list[int]) -> Iterator[None]:
    """SIGTERM (a CI timeout, `kill`) interrupts the run like Ctrl-C, so that the lab is still torn down.

    The signal is noted in ``got``: once the report is written the caller delivers it again
    (``Runner.redeliver_sigterm``), so a process that ran the scenario still ends as SIGTERM asked."""
    if not _main_thread():
        yield
        return

    def term(signum: int, frame: Any) -> None:
        got.append(signum)
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


@contextlib.contextmanager
def _ignore_interrupts() -> Iterator[None]:
    """A second Ctrl-C must not leave half a lab behind: teardown runs to its end."""
    if not _main_thread():
        yield
        return
    old_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
    old_term = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)
