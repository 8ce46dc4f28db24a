"""What every part of the dyno manager shares, passed in rather than reached for.

``Context`` carries the store (intent and history), the engine (the runtime truth), the log sink, the lab
clock, the random source and the lock every change is made under, plus ``Tracked``: the runtime's working
notes on containers it is busy with, which the store does not hold.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field

from labctl.controller.logsink import LogSink
from labctl.domain import clock
from labctl.domain.clock import TimeScale
from labctl.engine.docker import Engine
from labctl.store import Store


class LabClock:
    """The lab's time scale, one object for every timer: ``clock(seconds)`` scales a platform duration."""

    def __init__(self, factor: float):
        self._scale = TimeScale(factor)

    def __call__(self, seconds: float) -> float:
        return self._scale(seconds)

    @property
    def factor(self) -> float:
        return self._scale.factor

    def set_factor(self, factor: float) -> None:
        """Timers already set keep their deadlines; new ones use the new factor."""
        self._scale = TimeScale(factor)


@dataclass(frozen=True)
class Terminating:
    """A container signalled and not yet removed: its port stays taken on its instance until it is gone."""

    app: str
    dyno: str
    port: int | None
    instance: str | None  # the dedicated instance torn down once it is gone (None: the instance stays)


@dataclass
class Tracked:
    """Containers the runtime is working on, by container id.

    ``terminating``: signalled, not yet removed;
    ``attached``: one-offs whose client reads their output (their exit is handled by the API call);
    ``followed``: containers whose log the lab copies; ``exited``: exits the event stream reported since the
    last full sync; ``placing``: (app, dyno) → (instance, port) chosen by a start not yet recorded in the store.
    """

    terminating: dict[str, Terminating] = field(default_factory=dict)
    attached: set[str] = field(default_factory=set)
    followed: set[str] = field(default_factory=set)
    exited: set[str] = field(default_factory=set)
    placing: dict[tuple[str, str], tuple[str, int]] = field(default_factory=dict)


class Context:
    """The shared pieces; ``wake()`` asks the reconcile loop for a pass now."""

    def __init__(self, store: Store, engine: Engine, sink: LogSink, timescale: float):
        self.store = store
        self.engine = engine
        self.sink = sink
        self.scale = LabClock(timescale)
        self.cycle_period = clock.CYCLE_BASE  # seconds before the time scale (``labctl up --cycle-period``)
        self.rng = random.Random()
        self.lock = threading.RLock()
        self.tracked = Tracked()
        self.wakeup = threading.Event()

    def wake(self) -> None:
        self.wakeup.set()
