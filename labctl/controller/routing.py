"""The dyno manager's side of the router: the routing set, the router container and its access log.

The routing set (up web dynos, old generations still serving, and the H-code an app answers when it has
no routable dyno) is rendered from the store into nginx.conf by ``engine/router.py``; ``sync`` reloads the
router when that set changed (the engine writes the new file and sends nginx a SIGHUP through the
container's init, then waits for the new generation to answer). The router container is brought up when the
runtime starts and brought back after an engine outage, on the lab's ports (``http_port``/``https_port``,
owned here); its access log becomes the apps' ``heroku[router]`` lines.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from labctl import const
from labctl.controller.context import Context
from labctl.domain import clock
from labctl.engine import router as router_conf
from labctl.errors import EngineError
from labctl.records import AppRow, DynoRow, OldDynoRow

log = logging.getLogger("labctl.runtime")
MIN_BOOT = 2.0  # lab floor of a scaled boot timeout, in seconds (the runtime's R10 deadline, the router's hold)


class Generations(Protocol):
    """Which of an app's dynos take requests while a rollout runs (``rollout.RolloutState``)."""

    def new_routable(self, app_row: AppRow) -> bool: ...

    def routed_old(self, app_row: AppRow) -> list[OldDynoRow]: ...


class Routing:
    """Keeps the router container on the lab's ports and its configuration on the store's routing set."""

    def __init__(
        self,
        ctx: Context,
        generations: Generations,
        *,
        http_port: int,
        https_port: int | None = None,
        tls: Callable[[list[str]], dict[str, str]] | None = None,
    ):
        self.ctx = ctx
        self.store = ctx.store
        self.engine = ctx.engine
        self.generations = generations
        self.http_port = http_port  # 0 until the engine chose one (``start``)
        self.https_port = https_port
        self.tls_for = tls  # app names -> {path in the router: PEM text} (certificate and key)
        self.tls: dict[str, str] = {}
        self.tls_names: tuple[str, ...] | None = None
        self.applied_routes: tuple | None = None
        self.generation = int(time.time() * 1000)
        self.router_log: threading.Thread | None = None  # follows the router's access log (heroku[router] lines)

    # -- the router container ---------------------------------------------------------------------------
    def start(self) -> None:
        """Bring the router up on the lab's ports (port 0: the engine chooses; the chosen port is kept)."""
        self._refresh_tls()
        self.engine.ensure_router(
            const.STACK_IMAGE,
            self.http_port,
            self._networks(),
            self._render_routes()[1],
            https_port=self.https_port if self.tls else None,
            files=self.tls,
        )
        self._keep_settled_ports()  # port 0 = let the engine choose

    def _keep_settled_ports(self) -> None:
        ports = self.engine.settled_router_ports()
        self.http_port = ports.get("http", self.http_port)
        self.https_port = ports.get("https", self.https_port)
        # A reload's SIGHUP before the container's shell ignores it ends the router (exit 129, seen under
        # load right after `labctl up`): the first reload waits until nginx answers.
        self.engine.await_router(self.http_port)

    def invalidate(self) -> None:
        """The next ``sync`` reloads the router even if the routing set is the same (e.g. the timescale changed)."""
        self.applied_routes = None

    def follow_log(self) -> None:
        """Turn the router's access log, from now on, into the apps' ``heroku[router]`` lines."""
        self.router_log = self.engine.follow_logs(self.engine.router_name(), self._on_router_line, since=time.time())

    def _networks(self) -> list[str]:
        nets = [self.engine.ensure_network(None)]
        nets += [self.engine.ensure_network(s["name"]) for s in self.store.spaces()]
        return nets

    def _on_router_line(self, ts: float, line: str) -> None:
        entry = router_conf.parse_access_line(line)
        if entry is not None and entry.app:
            self.store.add_log(entry.app, "heroku", "router", router_conf.format_router_line(entry), ts)

    def recover(self) -> None:
        """The router running on the ports the lab had (recreated when the engine gave it others)."""
        engine = self.engine
        want = {"http": self.http_port, **({"https": self.https_port} if self.https_port else {})}
        info = engine.try_info(engine.router_name())
        if info is None or info.status != "running" or engine.router_ports() != want:
            nets = self._networks()
            _, conf = self._render_routes()
            for http, https in ((self.http_port, self.https_port), (0, 0 if self.https_port else None)):
                engine.remove(engine.router_name())
                try:
                    engine.ensure_router(
                        const.STACK_IMAGE, http, nets, conf, https_port=https if self.tls else None, files=self.tls
                    )
                    break
                except EngineError as err:  # the port was taken meanwhile: any port
                    log.warning("router not on its ports again: %s", err)
            self._keep_settled_ports()
        self.applied_routes = None  # reload with the sandboxes' new addresses
        if self.router_log is None or not self.router_log.is_alive():  # its stream ended with the engine
            self.follow_log()

    # -- the routing set -----------------------------------------------------------------------------
    def _render_routes(self, generation: int = 0, also_up: set[tuple[str, str]] | None = None) -> tuple[tuple, str]:
        store = self.store
        routes = []
        # by (instance, app): a row's instance is None while it is placed nowhere, which no sandbox matches
        sandboxes: dict[tuple[str | None, str], str] = {(s["instance"], s["app"]): s["ip"] for s in store.sandboxes()}
        dynos = store.dynos()
        for app_row in store.apps():
            app = app_row["name"]
            rel = store.current_release(app)
            web = [r for r in dynos if r["app"] == app and r["type"] == "web" and not r["one_off"]]
            new_ok = self.generations.new_routable(app_row)
            routed: list[DynoRow | OldDynoRow] = [
                r
                for r in web
                if new_ok
                and r["container"]
                and (r["instance"], r["app"]) in sandboxes
                and (r["state"] == "up" or (r["app"], r["name"]) in (also_up or ()))
            ]
            routed += [o for o in self.generations.routed_old(app_row) if (o["instance"], o["app"]) in sandboxes]
            backends = tuple(
                router_conf.Backend(r["name"], f"{sandboxes[(r['instance'], r['app'])]}:{r['port']}", r["release"])
                for r in routed
            )
            code = _empty_code(app_row, rel is not None, web)
            routes.append(
                router_conf.AppRoute(
                    app, backends, retry=not app_row["space"], empty_code=code, maintenance=bool(app_row["maintenance"])
                )
            )
        # The hold keeps its 15 s over the boot timeout when the latter is floored (MIN_BOOT).
        hold_floor = MIN_BOOT + self.ctx.scale(clock.ROUTER_BOOT_HOLD - clock.BOOT_TIMEOUT)
        tls = bool(self.tls)  # HTTPS when the lab has a certificate for the router
        settings = router_conf.RouterSettings(
            http_port_public=self.http_port,
            timescale=self.ctx.scale.factor,
            generation=generation,
            boot_hold_s=clock.ROUTER_BOOT_HOLD,
            boot_hold_floor_s=hold_floor,
            tls_cert=const.ROUTER_CERT if tls else None,
            tls_key=const.ROUTER_KEY if tls else None,
            https_port_public=(self.https_port or 0) if tls else 0,
        )
        return tuple(routes), router_conf.render_nginx_conf(routes, settings)

    def _refresh_tls(self) -> bool:
        """Issue the router certificate again when the set of apps changed; True when it did."""
        names = tuple(sorted(a["name"] for a in self.store.apps()))
        if self.tls_for is None or names == self.tls_names:
            return False
        self.tls = self.tls_for(list(names))
        self.tls_names = names
        return True

    def sync(self, also_up: set[tuple[str, str]] | None = None) -> None:
        """Reload the router when the routing set changed; returns once the new set is in force."""
        engine = self.engine
        key, _ = self._render_routes(also_up=also_up)
        if self._refresh_tls() and engine.router_ports().get("https"):
            for path, text in self.tls.items():
                engine.put_file(engine.router_name(), path, text, mode=0o600 if path.endswith(".key") else 0o644)
            self.applied_routes = None  # nginx reads certificates at reload
        if key != self.applied_routes:
            self.generation += 1
            _, conf = self._render_routes(self.generation, also_up)
            engine.reload_router(conf, self.generation, self.http_port)
            self.applied_routes = key


def _empty_code(app_row: AppRow, released: bool, web: list[DynoRow]) -> str:
    """The H-code an app answers with when no dyno is routable."""
    if not released:
        return "H81"
    if not web:
        return "H14"
    if any(
        r["state"] == "starting"
        or (r["state"] == "crashed" and clock.crash_delay(r["crashes"], bool(app_row["space"])) == 0)
        for r in web
    ):
        # H20 = the router holds requests until a web dyno is up, up to 75 s (heroku-reference §2.2,
        # engine/router_hold.py). A crash restarted at once (the Common Runtime's first, any in a
        # Private Space) keeps the hold going: "crashed to starting", no cool-off.
        return "H20"
    if any(r["state"] == "crashed" for r in web):
        return "H10"  # in a cool-off: nothing is starting, the router answers at once
    return "H20"
