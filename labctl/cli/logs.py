"""``logs``: Logplex-format lines, filtered, optionally tailed (heroku-reference §8)."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from labctl.cli import render
from labctl.cli.common import DEFAULT_LAB, AppOpt, Json, Lab, app, client, require_app
from labctl.errors import InvalidInput


def matches(row: dict[str, Any], dyno: str | None, ptype: str | None, source: str | None) -> bool:
    if source and row["source"] != source:
        return False
    if dyno and row["dyno"] != dyno and row["dyno"].split(".")[0] != dyno:
        return False
    return not (ptype and row["dyno"].split(".")[0] != ptype)


@app.command("logs")
def logs(
    app_name: AppOpt = None,
    num: Annotated[int, typer.Option("-n", "--num", help="Lines to show (max 1500)")] = 100,
    tail: Annotated[bool, typer.Option("-t", "--tail", help="Keep streaming new lines")] = False,
    dyno: Annotated[str | None, typer.Option("-d", "--dyno-name", "--dyno", help="e.g. web.1 or router")] = None,
    ptype: Annotated[str | None, typer.Option("-p", "--process-type", "--ps", help="e.g. web")] = None,
    source: Annotated[str | None, typer.Option("-s", "--source", help="app or heroku")] = None,
    lab: Lab = DEFAULT_LAB,
    json: Json = False,
) -> None:
    """Show the app's logs: app output, dyno manager, router and API lines."""
    name = require_app(app_name)
    if not 1 <= num <= 1500:
        raise InvalidInput("--num must be between 1 and 1500")
    if source not in (None, "app", "heroku"):
        raise InvalidInput("--source must be app or heroku")
    c = client(lab)
    dyno, ptype, source = dyno or None, ptype or None, source or None  # an empty filter is no filter
    rows = c.log_lines(name, n=num, dyno=dyno, ptype=ptype, source=source)
    shown = [r for r in rows if matches(r, dyno, ptype, source)][-num:]
    emit = render.as_json if json else (lambda r: render.out(render.log_line(r)))
    if json and not tail:
        return render.as_json(shown)
    for r in shown:
        emit(r)
    last = rows[-1]["id"] if rows else 0
    while tail:
        time.sleep(0.5)
        for r in c.log_lines(name, after=last, n=1500, dyno=dyno, ptype=ptype, source=source):
            last = r["id"]
            if matches(r, dyno, ptype, source):
                emit(r)
