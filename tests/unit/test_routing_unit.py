"""controller/routing.py over a real store and a fake engine: which router serves a runtime, what each router's
configuration holds (a space's apps in its own router, forwarded by the common one)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from labctl.controller.context import Context
from labctl.controller.routing import Routing
from labctl.engine.docker import Engine
from labctl.errors import NotFound
from labctl.store import Store


class FakeEngine:
    prefix = "labctl-t"

    def router_name(self, space: str | None = None) -> str:
        return Engine.router_name(self, space)  # type: ignore[arg-type]

    def try_info(self, cid: str | None) -> None:
        return None


class NoRollout:
    def new_routable(self, app_row: Any) -> bool:
        return True

    def routed_old(self, app_row: Any) -> list:
        return []


@pytest.fixture
def routing(tmp_path: Path) -> Routing:
    store = Store(tmp_path / "lab.db")
    store.add_space("sp1")
    ctx = Context(store, FakeEngine(), None, 0.05)  # type: ignore[arg-type]
    return Routing(ctx, NoRollout(), http_port=5080)


def test_the_router_of_a_runtime(routing: Routing):
    assert routing.router_container("common") == "labctl-t-router"
    assert routing.router_container("sp1") == "labctl-t-router-space-sp1"
    with pytest.raises(NotFound) as err:
        routing.router_container("nosuch")
    assert "\n" not in str(err.value) and "nosuch" in str(err.value)


def test_a_space_app_is_routed_by_its_space_router_and_forwarded_by_the_common_one(routing: Routing):
    routing.store.add_app("cr1", None)
    routing.store.add_app("ps1", "sp1")
    routing.space_addrs["sp1"] = "172.30.0.9"
    confs = routing._render()
    common, space = confs[None][1], confs["sp1"][1]
    assert "server_name cr1.localhost;" in common and "server_name cr1.localhost;" not in space
    assert "server_name ps1.localhost;" in common and "proxy_pass http://labctl_space_sp1;" in common
    assert "server 172.30.0.9:80 max_fails=0;" in common and "server_name sp1.labctl-router.internal;" in common
    assert "server_name ps1.localhost;" in space and "proxy_pass http://labctl_space_sp1;" not in space
    assert "default $http_x_forwarded_for;" in space  # behind the front: the client was appended there
    assert "listen 443" not in space  # TLS ends at the common router
    assert [r["runtime"] for r in routing.routers()] == ["common", "sp1"]
