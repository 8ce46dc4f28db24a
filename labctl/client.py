"""The CLI's and scenarios' client of the controller API (requests)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import requests

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
        self.base = f"http://127.0.0.1:{api['port']}"
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {self.dir.token()}"

    def _request(self, method: str, path: str, stream: bool = False, **kw: Any) -> requests.Response:
        try:
            resp = self.session.request(method, self.base + path, timeout=self.timeout, stream=stream, **kw)
        except requests.exceptions.ConnectionError:
            raise ControllerUnavailable(
                f"The controller of lab {self.lab!r} does not answer. Run `labctl up` to start it again."
            ) from None
        except requests.exceptions.Timeout:
            raise ControllerUnavailable(f"The controller of lab {self.lab!r} did not answer in time.") from None
        if resp.status_code >= 400:
            try:
                message = resp.json().get("message", resp.text)
            except ValueError:
                message = resp.text.strip() or f"HTTP {resp.status_code}"
            raise _STATUS_ERRORS.get(resp.status_code, LabError)(message)
        return resp

    def get(self, path: str, **params: Any) -> Any:
        return self._request("GET", path, params=params).json()

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return self._request("POST", path, json=body or {}).json()

    def patch(self, path: str, body: dict[str, Any]) -> Any:
        return self._request("PATCH", path, json=body).json()

    def delete(self, path: str) -> Any:
        return self._request("DELETE", path).json()

    def stream(self, method: str, path: str, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Rows of an ndjson answer; an ``error`` row raises."""
        resp = self._request(method, path, stream=True, json=body)
        if not resp.headers.get("Content-Type", "").startswith("application/x-ndjson"):
            yield {"result": resp.json()}
            return
        for raw in resp.iter_lines():
            if not raw:
                continue
            row = json.loads(raw)
            if "error" in row:
                raise LabError(row["error"].get("message", "failed"))
            yield row
