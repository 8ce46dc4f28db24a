"""``traffic``: steady requests through the router, shown live per dyno and per instance (lab-spec §9)."""

from __future__ import annotations

import json as jsonlib
import shutil
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from labctl.cli import render
from labctl.cli.common import DEFAULT_LAB, AppOpt, Lab, app, client, require_app

if TYPE_CHECKING:
    from labctl import traffic as trafficlib


class _LiveView:
    """Redraws the live table in place on a terminal; elsewhere prints one line a second on stderr."""

    def __init__(self, app_name: str, tty: bool):
        self.app = app_name
        self.tty = tty
        self.drawn = 0

    def __call__(self, live: trafficlib.Live) -> None:
        from labctl import traffic as trafficlib

        if self.tty:
            width = shutil.get_terminal_size((120, 40)).columns - 1  # no wrapping, so the redraw stays in place
            text = "\n".join(
                line[:width] for line in render.traffic_live_text(self.app, live, trafficlib.WINDOW_S).splitlines()
            )
            up = f"\x1b[{self.drawn}F\x1b[J" if self.drawn else ""
            sys.stdout.write(up + text + "\n")
            sys.stdout.flush()
            self.drawn = text.count("\n") + 1
        else:
            t = live.window["total"]
            render.progress(
                f"{live.elapsed:5.1f}s  sent {live.sent}  last {trafficlib.WINDOW_S:g}s: "
                f"{t['count']} reqs, {t['errors']} errors, p50 {t['p50']} ms, p95 {t['p95']} ms"
            )

    def clear(self) -> None:
        if self.tty and self.drawn:
            sys.stdout.write(f"\x1b[{self.drawn}F\x1b[J")
            sys.stdout.flush()
            self.drawn = 0


@app.command("traffic")
def traffic(
    app_name: AppOpt = None,
    rps: Annotated[float, typer.Option("--rps", help="Requests per second (steady; at most 200).")] = 10.0,
    duration: Annotated[str, typer.Option("--duration", "-t", help="How long, e.g. 30s, 2m (at most 1h).")] = "30s",
    path: Annotated[str, typer.Option("--path", help="Request path, e.g. /cpu?ms=50")] = "/",
    timeout: Annotated[
        float | None,
        typer.Option(
            "--timeout",
            help="Client timeout in seconds (default: the router's boot hold, 75 s x time scale, + 5 s; min 2 s).",
        ),
    ] = None,
    json_file: Annotated[
        str | None,
        typer.Option(
            "--json", help="Write every request and the summary as JSON to FILE ('-' = stdout, no live view)."
        ),
    ] = None,
    lab: Lab = DEFAULT_LAB,
) -> None:
    """Send requests through the router at a steady rate; show per dyno and instance: errors, p50/p95/p99."""
    name = require_app(app_name)
    from labctl import traffic as trafficlib  # lazy, as below: requests stays out of every CLI start
    from labctl.engine.faults import parse_duration  # lazy: keeps the Docker SDK out of every CLI start

    seconds = parse_duration(duration)
    trafficlib.check_params(rps, seconds, timeout)
    api = client(lab)
    api.app_info(name)  # an unknown app: one line, before anything is sent
    to_stdout = json_file == "-"
    view = _LiveView(name, tty=sys.stdout.isatty() and not to_stdout)
    render.progress(
        f"Sending {rps:g} requests/s to ⬢ {name} for {seconds:g} s (at most {max(1, round(rps * seconds))} requests)…"
    )
    result = trafficlib.run_traffic(
        name, rps=rps, duration=seconds, path=path, timeout=timeout, on_tick=view, client=api
    )
    view.clear()
    if to_stdout:
        sys.stdout.write(jsonlib.dumps(result.to_json(), indent=1, default=str) + "\n")
        return
    if json_file:
        try:
            result.write_json(json_file)
        except OSError as err:
            from labctl.errors import LabError

            raise LabError(f"Cannot write {json_file}: {err.strerror}") from None
    render.out(render.traffic_summary_text(result))
    if json_file:
        render.progress(f"Wrote {len(result.records)} requests to {json_file}")
