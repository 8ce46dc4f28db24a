"""``labctl scenario``: a YAML file that sets up a lab, drives it, checks expectations and writes a report.

``loader`` parses and validates a file (docs/scenarios.md), ``runner`` runs it in a lab of its own,
``report`` prints the step table and writes ``result.json`` and ``report.html``; ``command`` is the
``labctl scenario`` command group (registered by ``labctl.main``).

The names below are loaded on first use: the CLI imports ``labctl.scenario.command`` at every start, and the
loader (with YAML) would add ~40 ms to ``labctl ps``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from labctl.scenario.loader import Scenario, ScenarioError, load, parse

__all__ = ["Scenario", "ScenarioError", "load", "parse"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from labctl.scenario import loader

        return getattr(loader, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
