"""The dyno manager's side of the routers: the routing set, the router containers and their access logs.

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
from labctl.errors import EngineError, NotFound
from labctl.records import AppRow, DynoRow, OldDynoRow, RouterRow

log = logging.getLogger("labctl.runtime")
MIN_BOOT = 2.0  # lab floor of a scaled boot timeout, in seconds (the runtime's R10 deadline, the router's hold)


class Generations(Protocol):
    """Which of an app's dynos take requests while a rollout runs (``rollout.RolloutState``)."""

    def new_routable(self, app_row: AppRow) -> bool: ...

    def routed_old(self, app_row: AppRow) -> list[OldDynoRow]: ...


class Routing:
    """Keeps the routers running and their configurations on the store's routing set.

    One router per runtime (heroku-reference §11 "Private Spaces routing": a space has its own routers): the
    common router serves the Common Runtime's apps and is the lab's only published listener; each Private
    Space has a router of its own on its network, to which the common router forwards that space's apps
    (``router_nginx._front_blocks``). Keys of the dicts below: ``None`` for the common router, else a space.
    """

    def __init__(
        self,
        ctx: Context,
        generations: Generations,
        *,
        http_port: int,
        https_port: int | None = None,
        tls: Callable[[list[str]], dict[str, str]] | None = None,
        debug_headers: bool = False,
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
        self.debug_headers = debug_headers  # X-Labctl-* response headers (labctl up --debug-headers)
        self.applied: dict[str | None, tuple] = {}  # the routing set each router has in force
        self.space_addrs: dict[str, str] = {}  # space -> its router's address on the space network
        self.generation = int(time.time() * 1000)
        # follows each router's output (heroku[router] lines): the thread and its reader
        self.logs: dict[str | None, tuple[threading.Thread, router_conf.RouterLogReader]] = {}

    @property
    def applied_routes(self) -> tuple | None:
        return self.applied.get(None)

    # -- the router containers --------------------------------------------------------------------------
    def router_container(self, runtime: str) -> str:
        """The name of the router container serving ``runtime``: ``common`` or a space's name."""
        if runtime == "common":
            return self.engine.router_name(None)
        if not self.store.space(runtime):
            raise NotFound(f"Couldn't find a router for {runtime}: no such space (common or a space's name)")
        return self.engine.router_name(runtime)

    def routers(self) -> list[RouterRow]:
        """Every router of the lab, for ``status``: runtime, container, address, state."""
        rows: list[RouterRow] = []
        for space in [None, *sorted(s["name"] for s in self.store.spaces())]:
            info = self.engine.try_info(self.engine.router_name(space))
            rows.append(
                {
                    "runtime": space or "common",
                    "container": self.engine.router_name(space),
                    "state": info.status if info else "missing",
                    "address": (f"127.0.0.1:{self.http_port}" if space is None else self.space_addrs.get(space, "")),
                }
            )
        return rows

    def start(self) -> None:
        """Bring every router up; the common one on the lab's ports (port 0: the engine chooses; kept)."""
        self._refresh_tls()
        for space in self._spaces():
            self._ensure_space(space)
        self.engine.ensure_router(
            const.STACK_IMAGE,
            self.http_port,
            self._networks(),
            self._render()[None][1],
            https_port=self.https_port if self.tls else None,
            files=self.tls,
        )
        self._keep_settled_ports()  # port 0 = let the engine choose

    def _spaces(self) -> list[str]:
        return sorted(s["name"] for s in self.store.spaces())

    def _ensure_space(self, space: str) -> None:
        """The space's router running (made when missing), its address known and its log followed."""
        net = self.engine.ensure_network(space)
        key, conf = self._render(spaces_only=True).get(space, ((), ""))
        info = self.engine.try_info(self.engine.router_name(space))
        self.engine.ensure_router(const.STACK_IMAGE, 0, [net], conf, space=space)
        if info is None:
            self.applied[space] = key  # made with this configuration
        addr = self.engine.router_ip(space)
        if addr and addr != self.space_addrs.get(space):
            self.space_addrs[space] = addr
            self.applied.pop(None, None)  # the common router forwards to the new address

    def add_space(self, space: str) -> None:
        """A new Private Space: its router, and the common router forwarding to it."""
        self.engine.connect_router(self.engine.ensure_network(space))
        self._ensure_space(space)
        self._follow(space)
        self.sync()

    def remove_space(self, space: str) -> None:
        """A destroyed space: its router goes (the common router no longer names it)."""
        self.space_addrs.pop(space, None)
        self.applied.pop(space, None)
        self.applied.pop(None, None)
        self.sync()
        self.engine.remove(self.engine.router_name(space))
        self.logs.pop(space, None)  # its stream ended with the container

    def _keep_settled_ports(self) -> None:
        ports = self.engine.settled_router_ports()
        self.http_port = ports.get("http", self.http_port)
        self.https_port = ports.get("https", self.https_port)

    def invalidate(self) -> None:
        """The next ``sync`` reloads every router even if the routing set is the same (e.g. the timescale changed)."""
        self.applied.clear()

    def follow_log(self) -> None:
        """Turn every router's access log, from now on, into the apps' ``heroku[router]`` lines."""
        for space in [None, *self._spaces()]:
            self._follow(space)

    def _follow(self, space: str | None) -> None:
        current = self.logs.get(space)
        if current is not None and current[0].is_alive():
            return
        reader = router_conf.RouterLogReader()  # per router: connection numbers are per nginx

        def on_line(ts: float, line: str) -> None:
            entry = reader.feed(line)
            if entry is not None and entry.app:
                self.store.add_log(entry.app, "heroku", "router", router_conf.format_router_line(entry), ts)

        thread = self.engine.follow_logs(self.engine.router_name(space), on_line, since=time.time())
        self.logs[space] = (thread, reader)

    def _networks(self) -> list[str]:
        nets = [self.engine.ensure_network(None)]
        nets += [self.engine.ensure_network(s["name"]) for s in self.store.spaces()]
        return nets

    def recover(self) -> None:
        """Every router running again, the common one on the ports the lab had (recreated when the engine
        gave it others)."""
        engine = self.engine
        for space in self._spaces():
            info = engine.try_info(engine.router_name(space))
            if info is not None and info.status != "running":
                engine.remove(engine.router_name(space))
            self._ensure_space(space)
        want = {"http": self.http_port, **({"https": self.https_port} if self.https_port else {})}
        info = engine.try_info(engine.router_name())
        if info is None or info.status != "running" or engine.router_ports() != want:
            nets = self._networks()
            conf = self._render()[None][1]
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
        self.applied.clear()  # reload with the sandboxes' new addresses
        self.follow_log()  # a stream that ended with the engine is followed again

    # -- the routing set -----------------------------------------------------------------------------
    def _render_routes(self, generation: int = 0, also_up: set[tuple[str, str]] | None = None) -> tuple[tuple, str]:
        """The common router's routing set and configuration."""
        return self._render(generation, also_up)[None]

    def _render(
        self, generation: int = 0, also_up: set[tuple[str, str]] | None = None, spaces_only: bool = False
    ) -> dict[str | None, tuple[tuple, str]]:
        """Each router's routing set (the key compared between syncs) and nginx.conf."""
        out: dict[str | None, tuple[tuple, str]] = {}
        for space, key in self._routing_sets(also_up).items():
            if spaces_only and space is None:
                continue
            settings = self._settings(generation, behind_front=space is not None)
            routes, front = key
            out[space] = (key, router_conf.render_nginx_conf(routes, settings, front))
        return out

    def _routing_sets(self, also_up: set[tuple[str, str]] | None = None) -> dict[str | None, tuple]:
        """Each router's routing set: ``(routes, fronts)``, the key compared between syncs (no text rendered:
        the reconcile loop asks on every pass, and a set that did not change needs no nginx.conf)."""
        store = self.store
        by_router: dict[str | None, list[router_conf.AppRoute]] = {None: []}
        by_router.update({space: [] for space in self._spaces()})
        # by (instance, app): a row's instance is None while it is placed nowhere, which no sandbox matches
        sandboxes: dict[tuple[str | None, str], str] = {(s["instance"], s["app"]): s["ip"] for s in store.sandboxes()}
        dynos = store.dynos()
        fronts = []
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
            space = app_row["space"] or None
            route = router_conf.AppRoute(
                app, backends, retry=not space, empty_code=code, maintenance=bool(app_row["maintenance"])
            )
            by_router.setdefault(space, []).append(route)
            if space and self.space_addrs.get(space):
                fronts.append(router_conf.FrontRoute(app, space, self.space_addrs[space]))
        return {space: (tuple(routes), tuple(fronts) if space is None else ()) for space, routes in by_router.items()}

    def _settings(self, generation: int, behind_front: bool) -> router_conf.RouterSettings:
        # The hold keeps its 15 s over the boot timeout when the latter is floored (MIN_BOOT).
        hold_floor = MIN_BOOT + self.ctx.scale(clock.ROUTER_BOOT_HOLD - clock.BOOT_TIMEOUT)
        tls = bool(self.tls) and not behind_front  # HTTPS ends at the common router
        return router_conf.RouterSettings(
            http_port_public=self.http_port,
            timescale=self.ctx.scale.factor,
            generation=generation,
            boot_hold_s=clock.ROUTER_BOOT_HOLD,
            boot_hold_floor_s=hold_floor,
            tls_cert=const.ROUTER_CERT if tls else None,
            tls_key=const.ROUTER_KEY if tls else None,
            https_port_public=(self.https_port or 0) if tls else 0,
            behind_front=behind_front,
            debug_headers=self.debug_headers,
        )

    def _refresh_tls(self) -> bool:
        """Issue the router certificate again when the set of apps changed; True when it did."""
        names = tuple(sorted(a["name"] for a in self.store.apps()))
        if self.tls_for is None or names == self.tls_names:
            return False
        self.tls = self.tls_for(list(names))
        self.tls_names = names
        return True

    def sync(self, also_up: set[tuple[str, str]] | None = None) -> None:
        """Reload each router whose routing set changed; returns once the new sets are in force."""
        engine = self.engine
        if self._refresh_tls() and engine.router_ports().get("https"):
            for path, text in self.tls.items():
                engine.put_file(engine.router_name(), path, text, mode=0o600 if path.endswith(".key") else 0o644)
            self.applied.pop(None, None)  # nginx reads certificates at reload
        sets = self._routing_sets(also_up)
        changed = [k for k, key in sets.items() if key != self.applied.get(k)]
        if not changed:
            return
        self.generation += 1
        confs = self._render(self.generation, also_up)
        # the common router first: every space router it names exists already (made before it is named), and a
        # space router's reload is confirmed through it (``<space>.labctl-router.internal``)
        for space in sorted(changed, key=lambda k: (k is not None, k or "")):
            key, conf = confs[space]
            if space is not None and engine.try_info(engine.router_name(space)) is None:
                continue  # its router is being made again (recover)
            try:
                engine.reload_router(conf, self.generation, self.http_port, space=space)
            except EngineError:
                info = engine.try_info(engine.router_name(space))
                if info is not None and info.status == "running":
                    raise
                log.warning("router %s is not running: bringing the routers back", engine.router_name(space))
                self.recover()  # the next pass reloads every router
                return
            self.applied[space] = key


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
