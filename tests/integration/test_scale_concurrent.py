"""A formation's due dynos start at once, bounded (issue 18: scale 0 → N as fast as the engine allows)."""

from __future__ import annotations

from collections import Counter
from datetime import datetime

import docker
import pytest

from tests.conftest import Lab, deploy_sample, wait_until

pytestmark = pytest.mark.docker
N = 6


def _when(stamp: str) -> float:
    """Docker's RFC 3339 stamp with nanoseconds → seconds since the epoch."""
    head, _, frac = stamp.rstrip("Z").partition(".")
    return datetime.fromisoformat(head + "+00:00").timestamp() + float(f"0.{frac or 0}")


def test_scale_up_starts_the_new_dynos_overlapping_in_time(lab: Lab, app_name: str):
    app = deploy_sample(lab, app_name)
    client = docker.from_env()
    label = [f"io.labctl.lab={lab.name}", "io.labctl.kind=dyno", f"io.labctl.app={app}"]
    try:
        lab.ok("ps:scale", "web=0", "-a", app)
        wait_until(lambda: not client.containers.list(all=True, filters={"label": label}), 30, what="no dyno left")
        lab.ok("ps:scale", f"web={N}", "-a", app)
        names = [f"web.{i}" for i in range(1, N + 1)]
        dynos = lab.wait_up(app, names, timeout=90)
        containers = client.containers.list(all=True, filters={"label": label})
        assert len(containers) == N
        spans = sorted((_when(c.attrs["Created"]), _when(c.attrs["State"]["StartedAt"])) for c in containers)
        # One after another, each container is created after the previous one started; at once, some
        # container is created before another one has started.
        overlapping = any(spans[i + 1][0] < spans[i][1] for i in range(len(spans) - 1))
        assert overlapping, f"the {N} dynos started one after another: {spans}"
        # Placed as one at a time would: spread evenly over the 3 pool instances, a port each.
        assert sorted(Counter(d["instance"] for d in dynos.values()).values()) == [2, 2, 2]
        assert len({(d["instance"], d["port"]) for d in dynos.values()}) == N
        seen: set[str] = set()

        def all_answered() -> bool:
            r = lab.get(app, timeout=5)
            if r.status_code == 200:
                seen.add(r.json()["dyno"])
            return seen == set(names)

        wait_until(all_answered, 30, interval=0.02, what=f"every one of {names} answers through the router")
    finally:
        lab.ok("apps:destroy", "-a", app)
