"""``logs``: Logplex-format lines, filtered, optionally tailed (heroku-reference §8)."""

from __future__ import annotations

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
    # A log session, as `heroku logs` does: the last `num` matching lines, then (tail) each new one.
    session = c.log_session(name, lines=num, dyno=dyno, ptype=ptype, source=source, tail=tail)
    rows = (r for r in c.log_session_rows(session["logplex_url"]) if matches(r, dyno, ptype, source))
    if json and not tail:
        return render.as_json(list(rows))
    emit = render.as_json if json else (lambda r: render.out(render.log_line(r)))
    for r in rows:
        emit(r)
