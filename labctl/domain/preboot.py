"""Preboot and rolling deploys as rules (lab-spec §7, heroku-reference §4).

- Preboot: Common Runtime only, standard/performance sizes only; web dynos only.
- Deploy (a new release): new web dynos start at once and ``ps`` shows only them; the old keep serving,
  hidden; about 3 min after the release (boot timeout + 2 min) routing switches to the new dynos and
  away from the old at once, then the old are shut down.
- Restart (manual, cycling): new dynos take requests as soon as they bind; old and new both serve; the
  old stop about 4-6 min after the restart. Another restart meanwhile pushes that back again, so a
  stuck old dyno is only killed once restarts stop (or ``ps:stop`` clears it at once).
- Private Spaces use rolling deploys instead: at most 25 % (rounded up) of the formation at a time.
"""

from __future__ import annotations

import math
import random

from labctl.domain import clock, runtime_metrics
from labctl.errors import Conflict, InvalidInput

FEATURE = "preboot"
DESCRIPTION = "Provide seamless web dyno deploys"
SWITCH_AFTER = clock.BOOT_TIMEOUT + 120.0  # seconds after the release
RESTART_OLD_MIN, RESTART_OLD_MAX = 4 * 60.0, 6 * 60.0
FORMATION_LOCKED = "Cannot change formation for a preboot app until preboot is complete"
# Every feature the lab knows, with its description; log-runtime-metrics is a Heroku Labs (beta) feature.
KNOWN_FEATURES = {FEATURE: DESCRIPTION, runtime_metrics.FEATURE: runtime_metrics.DESCRIPTION}
FEATURE_STATES = {FEATURE: "general", runtime_metrics.FEATURE: "beta"}


def check_can_enable(space: str | None, size_tiers: set[str], enabled: bool) -> None:
    """Heroku's refusals (heroku-reference §4.1, §1.8)."""
    if enabled:
        raise Conflict("preboot is already enabled.")
    if space:
        raise InvalidInput(
            "Preboot is not available for apps in a Private Space: they use rolling deploys, "
            "which replace at most 25% of the dynos at a time."
        )
    if size_tiers & {"eco", "basic"}:
        raise InvalidInput("Preboot is only available to apps using standard or performance dynos, not eco or basic.")


def restart_old_delay(rng: random.Random | None = None) -> float:
    """Unscaled seconds the old dynos live after a preboot restart (about 4-6 minutes)."""
    return (rng or random.Random()).uniform(RESTART_OLD_MIN, RESTART_OLD_MAX)


def rolling_batch_size(total: int) -> int:
    """Rolling deploys replace at most 25 % of the formation at a time, rounded up (at least one)."""
    return max(1, math.ceil(total * 0.25))
