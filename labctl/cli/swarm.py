"""``swarm:local up``, ``swarm:local down``, ``swarm:local status``: a Docker Swarm of Docker-in-Docker nodes on
this machine (``labctl/swarm_local.py``)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from labctl.cli import render
from labctl.cli.common import DEFAULT_LAB, Json, Lab, app

swarm_app = typer.Typer(
    help="A Docker Swarm of Docker-in-Docker nodes on this machine (for tests and demos).",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(swarm_app, name="swarm:local")


def status_text(s: dict[str, Any]) -> str:
    if not s["nodes"]:
        return f"Lab {s['lab']} has no local swarm."
    rows = [
        (
            n["name"],
            n["docker_host"] or "-",
            (n["role"] or "-") + (" (leader)" if n["leader"] else ""),
            n["status"] or n["container"],
            n["swarm"],
            f"{n['rss_mb']:g}" if n["rss_mb"] is not None else "-",
            ", ".join(n["images"]) or "-",
        )
        for n in s["nodes"]
    ]
    head = ("NAME", "DOCKER_HOST", "ROLE", "STATE", "SWARM", "RSS_MB", "IMAGES")
    return "\n".join(
        [
            f"=== Local swarm of lab {s['lab']}: {len(rows)} node(s), overlay network {s['overlay']}",
            render.table(head, rows),
            *(
                [f"A lab on these nodes (TLS client certificate in {s['tls_dir']}):", f"  {s['labctl_up']}"]
                if s.get("labctl_up")
                else []
            ),
        ]
    )


@swarm_app.command("up")
def up(
    nodes: Annotated[
        int | None, typer.Option("--nodes", help="How many nodes (1-9; default 3, or as many as are up).")
    ] = None,
    lab: Lab = DEFAULT_LAB,
    json: Json = False,
) -> None:
    """Start the nodes, form the swarm (the first node manages it), load the stack image into each. Idempotent."""
    from labctl import swarm_local

    result = swarm_local.up(lab, render.progress, nodes)
    if json:
        return render.as_json(result)
    render.out(f"Local swarm of lab {lab} is {'up' if result['changed'] else 'already up'}.")
    render.out(status_text(result))


@swarm_app.command("down")
def down(lab: Lab = DEFAULT_LAB, json: Json = False) -> None:
    """Remove every node container, volume and network of the lab's local swarm."""
    from labctl import swarm_local

    counts = swarm_local.down(lab)
    if json:
        return render.as_json(counts)
    render.out(
        f"Local swarm of lab {lab} is down: removed {counts['nodes']} nodes, {counts['volumes']} volumes, "
        f"{counts['networks']} networks."
    )


@swarm_app.command("status")
def status(lab: Lab = DEFAULT_LAB, json: Json = False) -> None:
    """Show each node: its Docker API, swarm role and state, memory, images."""
    from labctl import swarm_local

    s = swarm_local.status(lab)
    render.as_json(s) if json else render.out(status_text(s))
