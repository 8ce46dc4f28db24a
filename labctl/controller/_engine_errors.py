"""What the controller catches when an engine call fails: ONE alias, until the engine adapter translates
every Docker SDK error into ``labctl.errors.EngineError`` (issue #15 item 5).

After that merge this module reduces to ``ENGINE_FAILURES = (EngineError,)`` (or goes, the catch sites
naming ``EngineError`` directly); nothing else in the controller names Docker's exceptions.
"""

from __future__ import annotations

from labctl.engine.docker import ENGINE_ERRORS
from labctl.errors import EngineError

ENGINE_FAILURES: tuple[type[BaseException], ...] = (EngineError, *ENGINE_ERRORS)
