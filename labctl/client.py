"""The CLI's and scenarios' client of the controller API.

Standard library ``http.client`` on purpose: the API is JSON on 127.0.0.1, and importing requests took
~65 ms of the CLI's ~170 ms start, the largest piece of what a learner waits for on ``labctl ps`` or
``ps:restart`` (bench/, README "Performance"). One connection per call keeps the client thread-safe.
"""

from __future__ import annotations

import contextlib
import http.client
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

from labctl.errors import ControllerUnavailable, InvalidInput, LabError, NotFound
from labctl.labdir import LabDir

_STATUS_ERRORS = {404: NotFound, 422: InvalidInput}


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
        self.headers = {"Authorization": f"Bearer {self.dir.token()}"}

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None,
                 params: dict[str, Any] | None = None) -> http.client.HTTPResponse:
        """Send one call; an answer of 400 or more raises the matching LabError (its ``message``)."""
        params = {k: v for k, v in (params or {}).items() if v is not None}  # as requests did: None = absent
        if params:
            path += "?" + urlencode(params)
        headers = dict(self.headers)
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        try:
            with self._talking("does not answer. Run `labctl up` to start it again."):
                conn.request(method, path, body=data, headers=headers)
                resp = conn.getresponse()
        except ControllerUnavailable:
            conn.close()
            raise
        if resp.status >= 400:
            text = self._read(resp).decode(errors="replace")
            try:
                message = json.loads(text).get("message", text)
            except (ValueError, AttributeError):
                message = text.strip() or f"HTTP {resp.status}"
            raise _STATUS_ERRORS.get(resp.status, LabError)(message)
        return resp

    @contextlib.contextmanager
    def _talking(self, broken: str) -> Iterator[None]:
        """Socket trouble in the block becomes one ControllerUnavailable: a timeout, or ``broken``."""
        try:
            yield
        except TimeoutError:
            raise ControllerUnavailable(f"The controller of lab {self.lab!r} did not answer in time.") from None
        except (OSError, http.client.HTTPException):
            raise ControllerUnavailable(f"The controller of lab {self.lab!r} {broken}") from None

    def _read(self, resp: http.client.HTTPResponse) -> bytes:
        try:
            with self._talking("hung up mid-answer."):
                return resp.read()
        finally:
            resp.close()

    def _json(self, method: str, path: str, body: dict[str, Any] | None = None, **params: Any) -> Any:
        return json.loads(self._read(self._request(method, path, body, params)) or b"null")

    def get(self, path: str, **params: Any) -> Any:
        return self._json("GET", path, None, **params)

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return self._json("POST", path, body or {})

    def patch(self, path: str, body: dict[str, Any]) -> Any:
        return self._json("PATCH", path, body)

    def delete(self, path: str) -> Any:
        return self._json("DELETE", path)

    def stream(self, method: str, path: str, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Rows of an ndjson answer; an ``error`` row raises."""
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
                    raise LabError(row["error"].get("message", "failed"))
                yield row
        finally:
            resp.close()
