"""``labctl scenario``: a YAML file that sets up a lab, drives it, checks expectations and writes a report.

``loader`` parses and validates a file (docs/scenarios.md), ``runner`` runs it in a lab of its own,
``report`` prints the step table and writes ``result.json`` and ``report.html``.
"""

from labctl.scenario.loader import Scenario, ScenarioError, load, parse

__all__ = ["Scenario", "ScenarioError", "load", "parse"]
