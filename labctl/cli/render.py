"""One renderer: Heroku-CLI-style text, or JSON with ``--json`` (style.md §3)."""

from __future__ import annotations

import json
import shlex
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

USER = "labctl@localhost"  # the lab's one user, as `releases` shows it


def out(text: str = "") -> None:
    echo(text)


def err(text: str) -> None:
    echo(text, err=True)


def as_json(data: Any) -> None:
    echo(json.dumps(data, indent=2, default=str, sort_keys=True))


def echo(text: str, err: bool = False) -> None:
    """``typer.echo(text, err=err)``, without importing Typer where it would only write the line and flush.

    Typer's echo (Click's) writes a text stream's line as it is, except that it takes ANSI codes out when the
    stream is not a terminal and re-wraps a stream whose encoding is missing or ASCII; the lab's own text has no
    ANSI codes and a terminal's stream is UTF-8, so ``labctl ps`` starts without Typer (``cli/fast.py``).
    Anything else still goes through ``typer.echo``, so the output stays the same byte for byte.
    """
    stream = sys.stderr if err else sys.stdout
    if stream is None:
        return
    if "\x1b" in text or not _plain_text_stream(stream):
        import typer

        typer.echo(text, err=err)
        return
    stream.write(text + "\n")
    stream.flush()


def _plain_text_stream(stream: Any) -> bool:
    encoding = getattr(stream, "encoding", None)
    if not encoding or not hasattr(stream, "buffer"):
        return False
    import codecs

    return codecs.lookup(encoding).name != "ascii"


def action(message: str, status: str = "done") -> None:
    """The Heroku CLI's ``ux.action.start(message)`` … ``ux.action.stop(status)``: one line on stderr, stdout stays
    for results (``Scaling dynos... done, now running web at 2:Standard-1X``)."""
    progress(f"{message}... {status}")


def warn(message: str) -> None:
    """A warning on stderr with the Heroku CLI's bang (the lab prints every warning and error after ``▸``)."""
    progress(f" ▸    {message}")


def table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """``hux.table``: a header row, a rule of ``─`` as wide as the table, then the rows; columns three spaces apart,
    one space in front (as the Heroku CLI's tests show it, e.g. test/unit/commands/ps/type.unit.test.ts)."""
    widths = [max(len(str(r[c])) for r in [columns, *rows]) for c in range(len(columns))]

    def line(values: Sequence[str]) -> str:
        return (" " + "   ".join(str(v).ljust(widths[c]) for c, v in enumerate(values))).rstrip()

    rule = " " + "─" * (sum(widths) + 3 * (len(widths) - 1))
    return "\n".join([line(columns), rule, *(line(r) for r in rows)])


def progress(line: str) -> None:
    """Long work shows progress on stderr so that stdout stays clean for --json."""
    sys.stderr.write(line.rstrip("\n") + "\n")
    sys.stderr.flush()


def _parse_iso(stamp: str) -> datetime:
    """The API's timestamps, ``2026-11-23T10:00:00Z``; read with ``fromisoformat`` because ``strptime`` loads
    ``_strptime`` and compiles its regular expressions on first use, a few ms of every ``labctl ps``."""
    if len(stamp) != 20 or stamp[10] != "T" or stamp[-1] != "Z":
        raise ValueError(f"time data {stamp!r} does not match format '%Y-%m-%dT%H:%M:%SZ'")
    return datetime.fromisoformat(stamp[:-1]).replace(tzinfo=UTC)


def ago(stamp: str | None, now: float | None = None) -> str:
    """``2026/11/23 10:00:00 +0000 (~ 5s ago)``; the suffix is dropped past 25 h (heroku-reference §1.3)."""
    if not stamp:
        return ""
    when = _parse_iso(stamp)
    local = when.astimezone()
    text = local.strftime("%Y/%m/%d %H:%M:%S %z")
    secs = int((now or time.time()) - when.timestamp())
    if secs > 25 * 3600:
        return text
    if secs < 60:
        rel = f"{max(secs, 0)}s"
    elif secs < 3600:
        rel = f"{secs // 60}m"
    else:
        rel = f"{secs // 3600}h"
    return f"{text} (~ {rel} ago)"


def _dyno_key(d: dict[str, Any]) -> tuple[str, int]:
    kind, _, num = d["name"].partition(".")
    return kind, int(num) if num.isdigit() else 0


def ps_text(app: str, dynos: list[dict[str, Any]], now: float | None = None) -> str:
    """``heroku ps`` (CLI src/commands/ps/index.ts): one-offs first, then formation dynos grouped by type, size and
    command; each group is a styledHeader, a blank line, its dynos and a blank line (§1.3)."""
    if not dynos:
        return f"No dynos on ⬢ {app}"
    blocks = []
    one_offs = sorted((d for d in dynos if d["type"] == "run"), key=_dyno_key)
    if one_offs:
        lines = [f"=== run: one-off processes ({len(one_offs)})", ""]
        lines += [
            f"{d['name']} ({d['size']}): {d['state']} {ago(d['updated_at'], now)}: {d['command']}" for d in one_offs
        ]
        blocks.append("\n".join(lines) + "\n")
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for d in sorted((d for d in dynos if d["type"] != "run"), key=_dyno_key):
        groups.setdefault((d["type"], d["size"], d["command"]), []).append(d)
    for (ptype, size, command), members in groups.items():
        lines = [f"=== {ptype} ({size}): {command} ({len(members)})", ""]
        lines += [f"{d['name']}: {d['state']} {ago(d['updated_at'], now)}" + _old_suffix(d) for d in members]
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks)


def _old_suffix(d: dict[str, Any]) -> str:
    """``ps --all`` marks the old generation preboot keeps alive (a lab extension)."""
    if not d.get("old"):
        return ""
    return f"  [old, v{d['release']['version']}{', serving' if d.get('routed') else ''}]"


def formation_text(formation: list[dict[str, Any]]) -> str:
    """``web=3:Standard-2X worker=1:Standard-1X`` (``ps:scale`` with no args)."""
    return " ".join(f"{p['type']}={p['quantity']}:{p['size']}" for p in sorted(formation, key=lambda p: p["type"]))


RELEASE_STATUS = {
    "expired": "release expired",
    "failed": "release command failed",
    "pending": "release command executing",
}


def releases_text(app: str, releases: list[dict[str, Any]], now: float | None = None) -> str:
    """``heroku releases`` (CLI src/commands/releases/index.ts): a header naming the current release, then a table
    newest first; a release's status follows its description (src/lib/releases/status-helper.ts)."""
    if not releases:
        return f"⬢ {app} has no releases."
    current = next(
        (r["version"] for r in releases if r.get("status", "succeeded") == "succeeded"), releases[0]["version"]
    )
    rows = []
    for r in sorted(releases, key=lambda r: -r["version"]):
        status = RELEASE_STATUS.get(r.get("status") or "", "")
        stamp = ago(r["created_at"], now)
        rows.append((f"v{r['version']}", r["description"] + (f" {status}" if status else ""), USER, stamp))
    return f"=== ⬢ {app} Releases - Current: v{current}\n\n" + table(("v", "description", "user", "created_at"), rows)


def styled_object(fields: dict[str, Any], keys: Sequence[str] | None = None) -> list[str]:
    """The Heroku CLI's ``hux.styledObject``: keys (sorted, or in the order given) padded to the longest key (absent
    keys count too); absent values (None) left out."""
    width = max((len(k) for k in fields), default=0) + 2
    order = keys if keys is not None else sorted(fields)
    return [f"{k + ':':<{width}}{fields[k]}" for k in order if fields.get(k) is not None]


def release_info_text(rel: dict[str, Any], shell: bool = False) -> str:
    """``releases:info``: the release, then its config vars (heroku-reference §7; CLI releases/info.ts)."""
    change = rel["description"]
    status = {"failed": "release command failed", "pending": "release command executing"}.get(rel.get("status", ""))
    if status:
        change += f" ({status})"
    when = rel["created_at"]
    # the Platform API's eligible_for_rollback: in the lab, a release that succeeded (rollback refuses the others)
    eligible = "Yes" if rel.get("status", "succeeded") == "succeeded" else "No"
    fields = {"Add-ons": None, "Change": change, "By": USER, "Eligible for Rollback?": eligible, "When": when}
    config = rel.get("config") or {}
    version = rel["version"]
    # styledHeader is the header and a blank line (as the CLI's exact-output tests show it, e.g. config/index)
    lines = [f"=== Release v{version}", "", *styled_object(fields), "", f"=== v{version} Config vars", ""]
    if shell:
        lines += [f"{k}={shlex.quote(v)}" for k, v in config.items()]
    else:
        lines += styled_object(config)
    return "\n".join(lines)


# heroku-reference §1.3: `ps --extended` (CLI ps/index.ts printExtended), the columns that fit the lab
EXTENDED_COLUMNS = ("Process", "State", "Execution Plane", "Instance", "IP", "Port", "Release", "Command", "Size")


def ps_extended_text(dynos: list[dict[str, Any]], now: float | None = None) -> str:
    """One row per dyno, sorted by type and number, with where it runs: instance, IP and port."""
    rows: list[tuple[str, ...]] = [EXTENDED_COLUMNS]
    for d in sorted(dynos, key=_dyno_key):
        ext = d.get("extended") or {}
        command = d["command"] if len(d["command"]) <= 35 else d["command"][:34] + "…"
        rows.append(
            (
                d["name"],
                f"{d['state']} {ago(d['updated_at'], now)}".strip(),
                ext.get("execution_plane") or "",
                ext.get("instance") or "",
                ext.get("ip") or "",
                str(ext["port"]) if ext.get("port") else "",
                str(d["release"]["version"]),
                command,
                d["size"],
            )
        )
    widths = [max(len(r[c]) for r in rows) for c in range(len(EXTENDED_COLUMNS))]
    rows.insert(1, tuple("─" * w for w in widths))
    return "\n".join(" ".join(v.ljust(widths[c]) for c, v in enumerate(r)).rstrip() for r in rows)


def config_text(app: str, config: dict[str, str]) -> str:
    """``heroku config`` (CLI src/commands/config/index.ts): the header, a blank line, ``styledObject``."""
    return "\n".join([f"=== ⬢ {app} Config Vars", "", *styled_object(config)]).rstrip("\n")


def instances_text(instances: list[dict[str, Any]]) -> str:
    if not instances:
        return "No instances"
    rows = [("ID", "RUNTIME", "STATE", "BUDGET", "CPU", "MEMORY", "DYNOS", "FAULTS")]
    for i in instances:
        runtime = "common" if i["runtime"] == "common" else f"space:{i['runtime']}"
        if i.get("dedicated_to") and i["runtime"] == "common":
            runtime = "common:dedicated"
        faults = ",".join(f.get("kind", "?") for f in i["faults"]) or "-"
        budget, cpu, mem = _budget_cells(i.get("limit") or i.get("budget"), i.get("usage"))
        rows.append((i["id"], runtime, i["state"], budget, cpu, mem, ",".join(i["dynos"]) or "-", faults))
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    return "\n".join("  ".join(v.ljust(widths[c]) for c, v in enumerate(r)).rstrip() for r in rows)


def _budget_cells(limit: dict[str, Any] | None, usage: dict[str, Any] | None) -> tuple[str, str, str]:
    """``0.5 CPU/2048 MB``, then the CPU and memory in use (``-`` where nothing is read)."""
    budget = f"{limit['cpus']:g} CPU/{limit['memory_mb']} MB" if limit else "-"
    cpu = f"{usage['cpus']:.2f}" if usage and usage.get("cpus") is not None else "-"
    mem = f"{usage['memory_mb']:.0f} MB" if usage and usage.get("memory_mb") is not None else "-"
    return budget, cpu, mem


def log_line(row: dict[str, Any]) -> str:
    """``2026-11-23T10:00:00.000000+00:00 app[web.1]: …`` (heroku-reference §8)."""
    stamp = datetime.fromtimestamp(row["ts"], tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")
    return f"{stamp} {row['source']}[{row['dyno']}]: {row['msg']}"


def drains_text(drains: list[dict[str, Any]]) -> str:
    """``heroku drains`` (drains/index.ts): ``styledHeader('Drains')`` (the header, a blank line), then
    ``URL (token)`` per drain; nothing when there is none."""
    if not drains:
        return ""
    return "\n".join(["=== Drains", "", *(f"{d['url']} ({d['token']})" for d in drains)])


def types_text(formation: list[dict[str, Any]]) -> str:
    """``ps:type`` with no arguments (CLI src/commands/ps/type.ts displayFormation): the process types, then the dyno
    totals per size. The lab has no prices, so the CLI's ``cost/hour`` and ``max cost/month`` columns are left out."""
    procs = sorted(formation, key=lambda p: p["type"])
    totals: dict[str, int] = {}
    for p in procs:
        totals[p["size"]] = totals.get(p["size"], 0) + p["quantity"]
    return "\n".join(
        [
            "=== Process Types",
            "",
            table(("type", "size", "qty"), [(p["type"], p["size"], str(p["quantity"])) for p in procs]),
            "",
            "=== Dyno Totals",
            "",
            table(("type", "total"), [(size, str(n)) for size, n in totals.items()]),
        ]
    )


# -- faults, doctor, traffic (issue 4) ---------------------------------------------------------------------
def _table(rows: Sequence[tuple[str, ...]], right: frozenset[int] = frozenset()) -> str:
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    return "\n".join(
        "  ".join(v.rjust(widths[c]) if c in right else v.ljust(widths[c]) for c, v in enumerate(r)).rstrip()
        for r in rows
    )


def fault_expiry(fault: dict[str, Any], now: float | None = None) -> str:
    if not fault.get("expires_at"):
        return "-"
    left = fault["expires_at"] - (now if now is not None else time.time())
    return f"in {max(left, 0):.0f}s"


_PATHS = {  # (end, direction) -> the packets it acts on
    ("instance", "in"): "in: router→instance",
    ("instance", "out"): "out: instance→router",
    ("router", "out"): "out: router→instance",
    ("router", "in"): "in: instance→router",
}


def fault_path(f: dict[str, Any]) -> str:
    """The direction column of ``labctl faults``: which packets a directional fault acts on."""
    d = f.get("direction")
    if not d:
        return "-"
    return "both ways" if d == "both" else _PATHS.get((f.get("end") or "instance", d), d)


def faults_text(rows: list[dict[str, Any]], now: float | None = None) -> str:
    """``labctl faults``: one row per fault, with where it sits (an instance, or a router and its target),
    its direction and the dynos it hits."""
    if not rows:
        return "No faults"
    table = [("END", "AT", "RUNTIME", "FAULT", "DIRECTION", "ID", "REVERTS", "DYNOS")]
    for f in rows:
        runtime = "common" if f["runtime"] == "common" else f"space:{f['runtime']}"
        if f.get("end") == "router":
            end, at = "router", f"{f['router']} → {f.get('instance') or 'every instance'}"
        else:
            end, at = "instance", f["instance"]
        table.append(
            (
                end,
                at,
                runtime,
                f.get("description") or f.get("kind", "?"),
                fault_path(f),
                f.get("id", "-"),
                fault_expiry(f, now),
                ",".join(f.get("dynos") or []) or "-",
            )
        )
    return _table(table)


def doctor_text(report: dict[str, Any]) -> str:
    marks = {"ok": "ok  ", "warn": "WARN", "error": "FAIL", "info": "--  "}
    lines = [f"=== labctl doctor (lab {report['lab']})"]
    for c in report["checks"]:
        lines.append(f"{marks.get(c['status'], c['status'])}  {c['name']:<11} {c['detail']}")
    lines.append("")
    lines.append("=== Fault kinds on this engine")
    for kind, s in report["faults"].items():
        how = f"[{s['mechanism']}] " if s.get("mechanism") and s["supported"] else ""
        lines.append(f"{'ok  ' if s['supported'] else 'no  '}  {kind:<12} {how}{s['reason']}")
    return "\n".join(lines)


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}"


def _errors_detail(s: dict[str, Any]) -> str:
    return " ".join(f"{k}×{n}" for k, n in s["error_kinds"].items()) or "-"


def traffic_tables(summary: dict[str, Any]) -> str:
    """Per dyno and per instance: count, errors (by status and H-code), p50/p95/p99 ms, release served."""
    by_dyno = _traffic_table(("DYNO", "INSTANCE"), summary["by_dyno"], "instances")
    by_instance = _traffic_table(("INSTANCE", "DYNOS"), summary["by_instance"], "dynos")
    out = [by_dyno or "(no requests)"]
    if by_instance:
        out += ["", by_instance]
    return "\n".join(out)


def _traffic_table(heads: tuple[str, str], groups: dict[str, dict[str, Any]], where: str) -> str:
    """One table of the traffic summary ("" when it has no rows): a group's key, where it ran, its figures."""
    rows = [(*heads, "REQS", "ERRORS", "ERR%", "P50ms", "P95ms", "P99ms", "RELEASE", "ERROR DETAIL")]
    for key, s in groups.items():
        rows.append(
            (
                key,
                ",".join(s[where]),
                str(s["count"]),
                str(s["errors"]),
                f"{100 * s['error_rate']:.1f}",
                _ms(s["p50"]),
                _ms(s["p95"]),
                _ms(s["p99"]),
                ",".join(s["releases"]) or "-",
                _errors_detail(s),
            )
        )
    return _table(rows, frozenset({2, 3, 4, 5, 6, 7})) if len(rows) > 1 else ""


def _total_line(t: dict[str, Any]) -> str:
    return (
        f"{t['count']} requests, {t['errors']} errors ({100 * t['error_rate']:.1f}%), "
        f"p50 {_ms(t['p50'])} ms, p95 {_ms(t['p95'])} ms, p99 {_ms(t['p99'])} ms"
    )


def _moves_text(moves: list[dict[str, Any]]) -> list[str]:
    return [f"  {m['t']:.1f}s  {m['dyno']} moved {m['from']} → {m['to']}" for m in moves]


def traffic_live_text(app: str, live: Any, window_s: float) -> str:
    """The live view, redrawn every second: the last few seconds per dyno and instance."""
    head = (
        f"⬢ {app}  {live.elapsed:.0f}/{live.duration:g} s  sent {live.sent}  answered {live.done}  "
        f"in flight {live.in_flight}"
    )
    lines = [head, f"Last {window_s:g} s: {_total_line(live.window['total'])}", "", traffic_tables(live.window)]
    if live.moves:
        lines += ["", "Instance changes:"] + _moves_text(live.moves[-5:])
    return "\n".join(lines)


def traffic_summary_text(result: Any) -> str:
    t = result.summary["total"]
    stopped = " (stopped early)" if result.interrupted else ""
    lines = [
        f"=== Traffic to ⬢ {result.app}: {result.rps:g} rps for {result.duration:g} s{stopped}",
        f"Total: {_total_line(t)}",
        "",
        traffic_tables(result.summary),
    ]
    if result.moves:
        lines += ["", "Instance changes:"] + _moves_text(result.moves)
    return "\n".join(lines)
