"""Writes Logplex-style lines into the store (heroku-reference §8)."""

from __future__ import annotations

from labctl.store import Store


class LogSink:
    def __init__(self, store: Store):
        self.store = store

    def heroku(self, app: str, dyno: str, msg: str) -> None:
        """A dyno manager line: ``heroku[web.1]: State changed from starting to up``."""
        self.store.add_log(app, "heroku", dyno, msg)

    def app(self, app: str, dyno: str, msg: str, ts: float | None = None) -> None:
        """The dyno's own output: ``app[web.1]: …``."""
        self.store.add_log(app, "app", dyno, msg, ts)

    def api(self, app: str, msg: str) -> None:
        """A Platform API line: ``app[api]: Release v5 created by user …``."""
        self.store.add_log(app, "app", "api", msg)

    def state(self, app: str, dyno: str, old: str, new: str) -> None:
        if old != new:
            self.heroku(app, dyno, f"State changed from {old} to {new}")
