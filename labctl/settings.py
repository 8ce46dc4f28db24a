"""A lab's settings (``lab.json`` in its state directory, ``labctl/labdir.py``) and their limits.

Apart from ``labdir`` so that the API client, which only reads the controller's address and token there, does
not import ``dataclasses`` (and ``inspect`` with it) on every CLI start (issue 18).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from labctl import const
from labctl.domain import clock
from labctl.errors import LabError


@dataclass
class Settings:
    lab: str
    http_port: int = const.DEFAULT_HTTP_PORT
    https_port: int = const.DEFAULT_HTTPS_PORT
    timescale: float = 1.0
    pool_size: int = const.DEFAULT_POOL_SIZE
    provision_time: float = clock.PROVISION_TIME  # before the time scale
    cycle_period: float = clock.CYCLE_BASE  # daily cycling's 24 h, before the time scale (lab choice: shorter)
    debug_headers: bool = False  # the routers add X-Labctl-Dyno/-Release/-Error to responses

    def to_json(self) -> str:
        """``lab.json``'s text."""
        return json.dumps(asdict(self), indent=2)


def check_settings(s: Settings) -> None:
    """Raise LabError (one line) for settings a lab cannot run with."""
    for port in (s.http_port, s.https_port):
        if not (0 <= port <= 65535):
            raise LabError(f"Invalid port {port}")
    if not (0.000001 <= s.timescale <= 100):
        raise LabError(f"Invalid time scale {s.timescale}: it must be between 0.000001 and 100")
    if not (1 <= s.pool_size <= 20):
        raise LabError(f"Invalid pool size {s.pool_size}: it must be between 1 and 20")
    if not (0 <= s.provision_time <= 3600):
        raise LabError(f"Invalid provision time {s.provision_time}: it must be between 0 and 3600 seconds")
    if not (10 <= s.cycle_period <= clock.CYCLE_BASE):
        raise LabError(f"Invalid cycle period {s.cycle_period:g}: it must be between 10 and 86400 seconds")
