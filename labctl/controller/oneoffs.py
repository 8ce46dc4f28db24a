"""One-off dynos (heroku-reference §1.6): ``run.NNNN`` from ``labctl run``, ``release.NNNN`` for a release
phase. A one-off runs once on a release and is never restarted; an attached one-off streams its output to
its client, and its exit is handled when the client is done with it (``finish_attached``).
"""

from __future__ import annotations

from collections.abc import Callable

from labctl.controller.logsink import LogSink
from labctl.controller.runtime import Runtime
from labctl.domain import clock, names
from labctl.domain.formation import Process
from labctl.domain.sizes import check_size_for_runtime, default_size, get_size
from labctl.errors import Conflict, InvalidInput
from labctl.records import AppRow, DynoRow


class OneOffs:
    """Starts one-offs and ends attached ones."""

    def __init__(self, runtime: Runtime, sink: LogSink, app_row: Callable[[str], AppRow]):
        self.rt = runtime
        self.store = runtime.store
        self.sink = sink
        self.app_row = app_row  # app name -> its row; raises NotFound

    def new_name(self, app: str, prefix: str) -> str:
        """``PREFIX.NNNN``, a name no dyno of the app has."""
        return names.one_off_name(prefix, {r["name"] for r in self.store.dynos(app)})

    def start(
        self, app_row: AppRow, dyno: str, command: str, release: int, attach: bool, size: str | None = None
    ) -> DynoRow:
        """Record the one-off and start it now (under the runtime's lock); returns the row as recorded."""
        proc = Process(dyno.split(".")[0], 1, size or default_size(app_row["space"]), command)
        row = self.rt.dynos.new_dyno_row(app_row["name"], dyno, proc, release, one_off=True, attach=attach)
        row["next_start"] = None  # started here, not by the loop
        self.rt.dynos.start_dyno(row)
        return row

    def run(self, app: str, command: str, attach: bool, size: str | None = None) -> DynoRow:
        """A one-off dyno ``run.NNNN`` on the current release (heroku-reference §1.6)."""
        if not command.strip():
            raise InvalidInput("Usage: labctl run COMMAND -a APP")
        with self.rt.lock:
            app_row = self.app_row(app)
            rel = self.store.current_release(app)
            if rel is None:
                raise Conflict(f"⬢ {app} has no release yet: deploy it first")
            if size:  # checked before anything is recorded: a bad size changes nothing
                chosen = get_size(size)
                check_size_for_runtime(chosen, app_row["space"])
                size = chosen.name
            if "\x00" in command:
                raise InvalidInput("The command has a NUL byte")
            dyno = self.new_name(app, "run")
            row = self.start(app_row, dyno, command, rel["version"], attach, size)
            return self.store.dyno(app, dyno) or row

    def hang_up(self, app: str, dyno: str, container: str) -> None:
        """The attached client went away: SIGHUP, then R16 and a stop if the process keeps running."""
        self.sink.heroku(app, dyno, "Client connection closed. Sending SIGHUP to all processes")
        engine = self.rt.engine
        engine.signal(container, "SIGHUP")
        if engine.wait_for_exit(container, max(1.0, self.rt.scale(clock.SHUTDOWN_GRACE))):
            return
        self.sink.heroku(
            app,
            dyno,
            "Error R16 (Detached) -> An attached process is not responding to SIGHUP "
            "after its external connection was closed.",
        )
        engine.terminate(container, self.rt.scale(clock.SHUTDOWN_GRACE))

    def finish_attached(self, app: str, dyno: str, container: str) -> None:
        with self.rt.lock:
            self.rt.dynos.finish_attached(app, dyno, container)
