"""The CLI's and scenarios' client of the controller API: one method per API call.

Every URL path of the API (``labctl/controller/api.py`` and the fault routes of ``controller/faults.py``) is
written here and nowhere else in ``labctl/`` or ``bench/``. An error answer raises the class the controller
raised: the body's ``id`` (``{"id": "not_found", "message": …}``) maps back through ``errors.error_for``, in a
plain answer and in an ndjson stream's ``error`` row alike.

No HTTP library on purpose: the API is JSON on 127.0.0.1, and importing requests took ~65 ms of the CLI's
~170 ms start, the largest piece of what a learner waits for on ``labctl ps`` or ``ps:restart`` (bench/, README
"Performance"); ``http.client`` took ~20 ms more. ``labctl.client_http`` reads the controller's answers over a
plain socket. One connection per call keeps the client thread-safe.
"""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from labctl import client_http
from labctl.errors import ControllerUnavailable, LabError, NotFound, error_for
from labctl.labdir import LabDir

HEALTH_TIMEOUT = 2.0
EXIT_MARKER = "\uffff heroku-command-exit-status: "  # the line the rendezvous stream ends with
ACCEPT = "application/vnd.heroku+json; version=3"  # the Platform API's version header (heroku-reference §11)


def _seg(name: str) -> str:
    """One path segment: an app, dyno, process type, feature, space or instance name, quoted whole."""
    return quote(name, safe="")


def _error(body: Any, status: int, fallback: str) -> LabError:
    """The error the controller raised, from an error body ``{"id": …, "message": …}`` (else by status)."""
    if isinstance(body, dict):
        return error_for(body.get("id"), status)(body.get("message", fallback))
    return error_for(None, status)(fallback)


def controller_answers(lab: str) -> bool:
    """The lab's controller answers its unauthenticated health check (``lab up`` polls this while it starts)."""
    api = LabDir(lab).api()
    if not api:
        return False
    try:
        resp = client_http.request("127.0.0.1", int(api["port"]), "GET", "/health", timeout=HEALTH_TIMEOUT)
    except OSError:
        return False
    try:
        resp.read()
        return resp.status < 400
    except OSError:
        return False
    finally:
        resp.close()


class _Status:
    value: int | None = None


def _attached_output(sock: socket.socket, talking: Any) -> tuple[Iterator[dict[str, Any]], _Status]:
    """``{"output": …}`` rows of a rendezvous stream as they come, and (once they are read) the exit status of
    its closing marker line."""
    import codecs

    marker = EXIT_MARKER.encode()
    status = _Status()

    def rows() -> Iterator[dict[str, Any]]:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        buf = b""
        while True:
            with talking("hung up mid-answer."):
                chunk = sock.recv(65536)
            buf += chunk
            at = buf.find(marker)
            if at >= 0:
                if text := decoder.decode(buf[:at]):
                    yield {"output": text}
                buf = buf[at:]
                value = buf[len(marker) :].split(b"\n", 1)[0].strip()
                status.value = int(value) if value.lstrip(b"-").isdigit() else None
                if chunk and b"\n" not in buf:
                    continue  # the marker line is not whole yet
                return
            keep = next((n for n in range(len(marker) - 1, 0, -1) if buf.endswith(marker[:n])), 0)
            out, buf = (buf[: len(buf) - keep], buf[len(buf) - keep :]) if keep else (buf, b"")
            if text := decoder.decode(out, final=not chunk):
                yield {"output": text}
            if not chunk:
                return

    return rows(), status


class Client:
    def __init__(self, lab: str, timeout: float = 120.0):
        self.dir = LabDir(lab)
        self.lab = lab
        self.timeout = timeout
        api = self.dir.api()
        if not self.dir.exists() or api is None:
            raise ControllerUnavailable(f"Lab {lab!r} is not up. Run: labctl up")
        self.port = int(api["port"])
        self.base = f"http://127.0.0.1:{self.port}"
        self.url = self.base
        self.headers = {"Authorization": f"Bearer {self.dir.token()}", "Accept": ACCEPT}

    def _request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        extra: dict[str, str] | None = None,
    ) -> client_http.Response:
        """Send one call; an answer of 400 or more raises the matching LabError (its ``message``)."""
        params = {k: v for k, v in (params or {}).items() if v is not None}  # as requests did: None = absent
        if params:
            path += "?" + urlencode(params)
        headers = {**self.headers, **(extra or {})}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        with self._talking("does not answer. Run `labctl up` to start it again."):
            resp = client_http.request("127.0.0.1", self.port, method, path, headers, data, self.timeout)
        if resp.status >= 400:
            text = self._read(resp).decode(errors="replace")
            try:
                body = json.loads(text)
            except ValueError:
                body = None
            raise _error(body, resp.status, text.strip() or f"HTTP {resp.status}")
        return resp

    @contextlib.contextmanager
    def _talking(self, broken: str) -> Iterator[None]:
        """Socket trouble in the block becomes one ControllerUnavailable: a timeout, or ``broken``."""
        try:
            yield
        except TimeoutError:
            raise ControllerUnavailable(f"The controller of lab {self.lab!r} did not answer in time.") from None
        except OSError:
            raise ControllerUnavailable(f"The controller of lab {self.lab!r} {broken}") from None

    def _read(self, resp: client_http.Response) -> bytes:
        try:
            with self._talking("hung up mid-answer."):
                return resp.read()
        finally:
            resp.close()

    def _ranged(self, path: str, range_: str) -> Any:
        """A list in the order and size a ``Range`` header asks for (``version ..; order=desc``)."""
        return json.loads(self._read(self._request("GET", path, None, None, {"Range": range_})) or b"null")

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None, **params: Any) -> Any:
        return json.loads(self._read(self._request(method, path, body, params)) or b"null")

    # -- raw calls: for tests that probe the API itself; labctl and bench use the named methods below --------
    def get(self, path: str, **params: Any) -> Any:
        return self._call("GET", path, None, **params)

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return self._call("POST", path, body or {})

    def patch(self, path: str, body: dict[str, Any]) -> Any:
        return self._call("PATCH", path, body)

    def delete(self, path: str, **params: Any) -> Any:
        return self._call("DELETE", path, None, **params)

    def stream(self, method: str, path: str, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Rows of an ndjson answer; an ``error`` row raises the controller's error class."""
        resp = self._request(method, path, body)
        if not (resp.getheader("Content-Type") or "").startswith("application/x-ndjson"):
            yield {"result": json.loads(self._read(resp) or b"null")}
            return
        try:
            while True:
                with self._talking("hung up mid-answer."):
                    raw = resp.readline()
                if not raw:
                    return
                if not raw.strip():
                    continue
                row = json.loads(raw)
                if "error" in row:
                    raise _error(row["error"], 0, "failed")
                yield row
        finally:
            resp.close()

    # -- the lab ---------------------------------------------------------------------------------------------
    def token(self) -> str:
        """The API token (``auth:token``): what a Heroku API client sends as ``Bearer`` or Basic password."""
        return self.dir.token()

    def lab_status(self) -> dict[str, Any]:
        """Router URLs and port, time scale, counts, controller pid and uptime."""
        return self.get("/lab")

    def set_timescale(self, factor: float) -> dict[str, Any]:
        """Change the lab-wide time scale; answers the lab's status."""
        return self.patch("/lab", {"timescale": factor})

    def instances(self) -> list[dict[str, Any]]:
        return self.get("/instances")

    def dashboard_link(self) -> dict[str, Any]:
        """A one-time login link to the live dashboard: ``{"url", "expires_at", "expires_in"}``."""
        return self.post("/lab/dashboard-links")

    def traffic_generators(self) -> list[dict[str, Any]]:
        """The traffic generators running in the controller (the dashboard starts them)."""
        return self.get("/traffic")

    # -- spaces ----------------------------------------------------------------------------------------------
    def spaces(self) -> list[dict[str, Any]]:
        return self.get("/spaces")

    def space_create(self, name: str) -> dict[str, Any]:
        return self.post("/spaces", {"name": name})

    def space_destroy(self, name: str) -> Any:
        return self.delete(f"/spaces/{_seg(name)}")

    # -- apps ------------------------------------------------------------------------------------------------
    def apps(self) -> list[dict[str, Any]]:
        return self.get("/apps")

    def app_create(self, name: str, space: str | None = None) -> dict[str, Any]:
        return self.post("/apps", {"name": name, "space": space})

    def app_info(self, app: str) -> dict[str, Any]:
        """The app's space, stack, release, formation, features and maintenance (NotFound if none)."""
        return self.get(f"/apps/{_seg(app)}")

    def app_destroy(self, app: str) -> Any:
        return self.delete(f"/apps/{_seg(app)}")

    def app_rename(self, app: str, new_name: str) -> dict[str, Any]:
        return self.patch(f"/apps/{_seg(app)}", {"name": new_name})

    def set_maintenance(self, app: str, on: bool) -> dict[str, Any]:
        return self.patch(f"/apps/{_seg(app)}", {"maintenance": on})

    def features(self, app: str) -> list[dict[str, Any]]:
        return self.get(f"/apps/{_seg(app)}/features")

    def feature(self, app: str, feature: str) -> dict[str, Any]:
        return self.get(f"/apps/{_seg(app)}/features/{_seg(feature)}")

    def set_feature(self, app: str, feature: str, enabled: bool) -> dict[str, Any]:
        return self.patch(f"/apps/{_seg(app)}/features/{_seg(feature)}", {"enabled": enabled})

    # -- builds, releases, config ----------------------------------------------------------------------------
    def build(self, app: str, source_dir: str) -> Iterator[dict[str, Any]]:
        """Build a slug from ``source_dir`` and release it, as the Platform API builds: ``POST …/builds`` with the
        directory's file URL, then its ``output_stream_url``: ``{"line": …}`` rows, then ``{"result": release}``
        (a failed build raises the error the controller reported)."""
        path = f"/apps/{_seg(app)}/builds"
        build = self.post(path, {"source_blob": {"url": Path(source_dir).resolve().as_uri()}})
        yield from ({"line": line} for line in self._follow(build["output_stream_url"]))
        done = self.get(f"{path}/{_seg(build['id'])}")
        if done["status"] != "succeeded" or not done["release"]:
            raise _error(done.get("error"), 0, "The build failed.")
        yield {"result": self.release(app, done["release"]["id"])}

    def _follow(self, url: str) -> Iterator[str]:
        """The lines of a text stream (a build's output), until the controller closes it."""
        u = urlsplit(url)
        with self._talking("hung up mid-answer."):
            host, port = u.hostname or "127.0.0.1", u.port or self.port
            resp = client_http.request(host, port, "GET", u.path, {"Accept": "text/plain"}, None, self.timeout)
        try:
            if resp.status >= 400:
                raise _error(None, resp.status, self._read(resp).decode(errors="replace"))
            while True:
                with self._talking("hung up mid-answer."):
                    raw = resp.readline()
                if not raw:
                    return
                yield raw.decode(errors="replace").rstrip("\n")
        finally:
            resp.close()

    def releases(self, app: str) -> list[dict[str, Any]]:
        """Newest first (the last 1000), as the Heroku CLI asks for them."""
        return self._ranged(f"/apps/{_seg(app)}/releases", "version ..; order=desc, max=1000")

    def release(self, app: str, version: str | int | None = None) -> dict[str, Any]:
        """One release by version (``3``); None: the newest, as the Heroku CLI finds it (the list's first)."""
        if version is None:
            rows = self.releases(app)
            if not rows:
                raise NotFound(f"App ⬢ {app} has no releases")
            return rows[0]
        return self.get(f"/apps/{_seg(app)}/releases/{_seg(str(version))}")

    def rollback(self, app: str, release: int | None = None) -> dict[str, Any]:
        """A new release with the code and config of version ``release`` (default: the previous one). Heroku
        names the release by its id: the version's id is looked up first."""
        rid = None if release is None else self.release(app, release)["id"]
        return self.post(f"/apps/{_seg(app)}/releases", {"release": rid})

    def config(self, app: str) -> dict[str, str]:
        return self.get(f"/apps/{_seg(app)}/config-vars")

    def config_set(self, app: str, changes: dict[str, str | None]) -> dict[str, Any]:
        """Set config vars (a value of None unsets it): a new release that restarts the dynos. Answers
        ``{"config": …, "release": <the release it made, or None before the first deploy>}`` (the API answers
        the config; the release is the newest one, if it is new)."""
        path = f"/apps/{_seg(app)}/releases"
        before = self._ranged(path, "version ..; order=desc, max=1")
        config = self.patch(f"/apps/{_seg(app)}/config-vars", changes)
        after = self._ranged(path, "version ..; order=desc, max=1")
        new = after[0] if after and (not before or after[0]["version"] != before[0]["version"]) else None
        return {"config": config, "release": new}

    # -- formation and dynos ---------------------------------------------------------------------------------
    def formation(self, app: str) -> list[dict[str, Any]]:
        return self.get(f"/apps/{_seg(app)}/formation")

    def formation_update(self, app: str, updates: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The Platform API's batch update: ``[{"type", "quantity"?, "size"?}]``; answers the whole formation."""
        return self.patch(f"/apps/{_seg(app)}/formation", {"updates": updates})

    def scale(self, app: str, args: list[str]) -> list[dict[str, Any]]:
        """``ps:scale`` arguments as typed: ``web=2``, ``worker+1``, ``web=1:performance-m``; sent as the Heroku
        CLI sends them (a relative change as the string ``"+1"``)."""
        from labctl.domain.formation import parse_scale_args  # here: the sizes table is not needed to start

        updates = [
            {"type": u.type, "quantity": str(u.amount) if u.op == "=" else f"{u.op}{u.amount}", "size": u.size}
            for u in parse_scale_args(args)
        ]
        return self.formation_update(app, [{k: v for k, v in u.items() if v is not None} for u in updates])

    def resize(self, app: str, sizes: dict[str, str]) -> list[dict[str, Any]]:
        """New sizes by process type (``"*"``: every type of the formation)."""
        if "*" in sizes:
            every = sizes["*"]
            sizes = {**{f["type"]: every for f in self.formation(app)}, **{k: v for k, v in sizes.items() if k != "*"}}
        return self.formation_update(app, [{"type": t, "size": s} for t, s in sizes.items()])

    def dynos(self, app: str, include_old: bool = False, extended: bool = False) -> list[dict[str, Any]]:
        """The app's dynos; ``include_old`` adds the old ones preboot keeps serving (``ps --all``), ``extended``
        each dyno's ``extended`` object: where it runs (``ps --extended``)."""
        return self.get(
            f"/apps/{_seg(app)}/dynos", all="1" if include_old else None, extended="true" if extended else None
        )

    def restart(self, app: str, *, dyno: str | None = None, ptype: str | None = None) -> Any:
        """Restart one dyno, every dyno of a process type, or (neither given) every dyno of the app."""
        if dyno:
            return self.delete(f"/apps/{_seg(app)}/dynos/{_seg(dyno)}")
        if ptype:
            return self.delete(f"/apps/{_seg(app)}/formations/{_seg(ptype)}")
        return self.delete(f"/apps/{_seg(app)}/dynos")

    def stop(self, app: str, *, dyno: str | None = None, ptype: str | None = None) -> Any:
        """Stop one dyno or every dyno of a process type (exactly one of the two)."""
        if dyno:
            return self.post(f"/apps/{_seg(app)}/dynos/{_seg(dyno)}/actions/stop")
        if ptype:
            return self.post(f"/apps/{_seg(app)}/formations/{_seg(ptype)}/actions/stop")
        raise ValueError("stop needs a dyno or a process type")

    def dyno(self, app: str, dyno: str) -> dict[str, Any]:
        return self.get(f"/apps/{_seg(app)}/dynos/{_seg(dyno)}")

    def account(self) -> dict[str, Any]:
        return self.get("/account")

    def run(self, app: str, command: str, size: str | None = None) -> Iterator[dict[str, Any]]:
        """An attached one-off, as the Platform API attaches it: ``POST …/dynos`` with ``attach``, then its
        ``attach_url`` (``rendezvous://host:port/secret``). Rows: ``{"dyno": …}``, ``{"output": …}``…, then
        ``{"result": {"status": …, "dyno": …}}`` (status None when the dyno ended without one)."""
        view = self.post(f"/apps/{_seg(app)}/dynos", {"command": command, "attach": True, "size": size})
        yield {"dyno": view}
        u = urlsplit(view["attach_url"])
        with self._talking("hung up mid-answer."):
            sock = socket.create_connection((u.hostname or "127.0.0.1", u.port or 0), timeout=self.timeout)
        try:
            with self._talking("hung up mid-answer."):
                sock.sendall(u.path.lstrip("/").encode() + b"\r\n")
                hello = b""
                while not hello.endswith(b"\n"):  # "rendezvous\r\n", byte by byte: the output follows it
                    byte = sock.recv(1)
                    if not byte:
                        break
                    hello += byte
            sock.settimeout(None)  # a one-off may stay silent for as long as it likes
            rows, status = _attached_output(sock, self._talking)
            yield from rows
        finally:
            sock.close()
        yield {"result": {"status": status.value, "dyno": view["name"]}}

    def run_detached(self, app: str, command: str, size: str | None = None) -> dict[str, Any]:
        return self.post(f"/apps/{_seg(app)}/dynos", {"command": command, "attach": False, "size": size})

    def log_lines(
        self,
        app: str,
        *,
        n: int = 100,
        after: int | None = None,
        dyno: str | None = None,
        ptype: str | None = None,
        source: str | None = None,
    ) -> list[dict[str, Any]]:
        """The app's last ``n`` log rows (after row id ``after``), filtered by dyno, process type or source."""
        return self.get(f"/apps/{_seg(app)}/log-lines", n=n, after=after, dyno=dyno, ptype=ptype, source=source)

    # -- log sessions and log drains (Platform API "Log Session", "Log Drain") -------------------------------
    def log_session(
        self,
        app: str,
        *,
        lines: int = 100,
        dyno: str | None = None,
        ptype: str | None = None,
        source: str | None = None,
        tail: bool = False,
    ) -> dict[str, Any]:
        """A log session: ``{"id", "logplex_url", …}``; ``logplex_url`` streams the last ``lines`` matching lines
        (and, with ``tail``, every new one). ``ptype`` is sent as ``type`` (the field Heroku's Fir sessions take)."""
        body = {"lines": lines, "dyno": dyno, "source": source, "tail": tail, "type": ptype}
        return self.post(f"/apps/{_seg(app)}/log-sessions", {k: v for k, v in body.items() if v is not None})

    def log_session_rows(self, logplex_url: str) -> Iterator[dict[str, Any]]:
        """The rows a log session's URL streams (its id in the URL is its credential), as they come."""
        url = urlsplit(logplex_url)
        if url.hostname != "127.0.0.1" or not url.port:
            raise ControllerUnavailable(f"The log session's URL is not on this machine: {logplex_url}")
        with self._talking("hung up mid-answer."):  # no timeout: a tail may be quiet for long
            resp = client_http.request(
                "127.0.0.1", url.port, "GET", f"{url.path}?{url.query}", {"Accept": "application/x-ndjson"}
            )
        try:
            if resp.status >= 400:
                raise NotFound("The log session has expired. Try again.")
            while True:
                with self._talking("hung up mid-answer."):
                    raw = resp.readline()
                if not raw:
                    return
                if raw.strip():
                    yield json.loads(raw)
        finally:
            resp.close()

    def log_drains(self, app: str) -> list[dict[str, Any]]:
        return self.get(f"/apps/{_seg(app)}/log-drains")

    def log_drain_add(self, app: str, url: str) -> dict[str, Any]:
        return self.post(f"/apps/{_seg(app)}/log-drains", {"url": url})

    def log_drain_remove(self, app: str, drain: str) -> dict[str, Any]:
        """Remove a drain named by its URL, token or id."""
        return self.delete(f"/apps/{_seg(app)}/log-drains/{_seg(drain)}")

    # -- instance faults -------------------------------------------------------------------------------------
    def faults(self, app: str | None = None) -> list[dict[str, Any]]:
        """Every fault, or those on the instances hosting ``app``'s dynos."""
        return self.get("/faults", app=app)

    def fault_support(self) -> dict[str, dict[str, Any]]:
        """Which fault kinds this engine's kernel supports, and why not."""
        return self.get("/faults/support")

    def faults_add(
        self,
        fault: dict[str, Any],
        *,
        instance: str | None = None,
        app: str | None = None,
        dyno: str | None = None,
        router: str | None = None,
    ) -> dict[str, Any]:
        """Inject ``fault`` (``{"kind": "cpu", "cpus": 0.05, "for": "30s"}``…) into an instance: by id, or the
        one hosting ``app``'s ``dyno``; or at the router end (``router``: ``common`` or a space's name, with
        ``"to_instance"`` in ``fault`` for the path to one instance only)."""
        return self.post(self._faults_path(instance, app, dyno, router), fault)

    def faults_clear(
        self,
        *,
        instance: str | None = None,
        app: str | None = None,
        dyno: str | None = None,
        kind: str | None = None,
        router: str | None = None,
    ) -> list[dict[str, Any]]:
        """Remove the faults (of ``kind`` only, if given) of an instance or a router, or of every instance and
        router when no target is given; answers the faults removed."""
        if instance is None and dyno is None and router is None:
            return self.delete("/faults", kind=kind)
        return self.delete(self._faults_path(instance, app, dyno, router), kind=kind)

    @staticmethod
    def _faults_path(instance: str | None, app: str | None, dyno: str | None, router: str | None = None) -> str:
        if router is not None:
            return f"/routers/{_seg(router)}/faults"
        if instance is not None:
            return f"/instances/{_seg(instance)}/faults"
        if app is None or dyno is None:
            raise ValueError("faults need an instance, or an app and a dyno")
        return f"/apps/{_seg(app)}/dynos/{_seg(dyno)}/faults"
