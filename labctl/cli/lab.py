"""``up``, ``down``, ``status``, ``instances``, ``spaces*``."""

from __future__ import annotations

from typing import Annotated

import typer

from labctl.cli import render
from labctl.cli.common import DEFAULT_LAB, Json, Lab, app, client


def _status_text(s: dict) -> str:
    return "\n".join(
        [
            f"=== Lab {s['lab']}",
            f"Router:      {s['router']['url']}  (apps: {s['router']['app_url']})",
            *(
                [
                    f"HTTPS:       {s['router']['https_url']}  (apps: {s['router']['https_app_url']}; "
                    f"CA: {s['router']['ca_cert']})"
                ]
                if s["router"].get("https_url")
                else []
            ),
            *(
                f"  router {r['runtime']}: {r['container']} ({r['state']}"
                + (", the published listener" if r["runtime"] == "common" else f", at {r['address']}")
                + ")"
                for r in s.get("routers", [])
            ),
            f"Time scale:  {s['timescale']}   New instances provision for {s.get('provision_time', 0):g} s (scaled)",
            f"Placement:   {s.get('placement', 'spread')} over {s['pool_size']} shared instances (Common Runtime)",
            f"Apps:        {s['apps']}   Spaces: {s['spaces']}   Dynos: {s['dynos']}   Instances: {s['instances']}",
            f"Controller:  pid {s['controller_pid']}, up {s['uptime_s']} s",
            f"State:       {s['state_dir']}",
            *(
                (
                    f"Swarm node:  {n['name']} at {n['url']}" + (" (TLS, client certificate)" if n["tls"] else "")
                    if n.get("reached", True)
                    else f"Swarm node:  {n['url']} did not answer when the controller started (left out)"
                )
                for n in s.get("swarm_nodes", [])
            ),
        ]
    )


@app.command("up")
def up(
    lab: Lab = DEFAULT_LAB,
    http_port: Annotated[int | None, typer.Option(help="Router port on 127.0.0.1 (default 5080; 0 = any).")] = None,
    https_port: Annotated[int | None, typer.Option(help="Router TLS port on 127.0.0.1 (default 5443).")] = None,
    timescale: Annotated[float | None, typer.Option(help="Multiplies every platform duration (default 1.0).")] = None,
    pool_size: Annotated[int | None, typer.Option(help="Common Runtime shared instances (default 3).")] = None,
    provision_time: Annotated[
        float | None,
        typer.Option(help="Seconds a new runtime instance provisions before its dynos start (default 60; scaled)."),
    ] = None,
    cycle_period: Annotated[
        float | None,
        typer.Option(help="Seconds between a dyno's start and its daily cycling (default 86400; scaled)."),
    ] = None,
    placement: Annotated[
        str | None,
        typer.Option(
            help="How the Common Runtime's shared instances take new dynos: spread (least-loaded, the default) "
            "or packed (fill one instance before the next)."
        ),
    ] = None,
    base_image: Annotated[
        str | None,
        typer.Option(
            envvar="LABCTL_BASE_IMAGE",
            help="Debian trixie image to build the stack FROM (pulled if missing; default debian:trixie-slim).",
        ),
    ] = None,
    debug_headers: Annotated[
        bool | None,
        typer.Option(
            "--debug-headers/--no-debug-headers",
            help="Routers add X-Labctl-Dyno, X-Labctl-Release and X-Labctl-Error to responses (default off).",
        ),
    ] = None,
    swarm_node: Annotated[
        list[str] | None,
        typer.Option(
            "--swarm-node",
            help="A swarm node's Docker API (tcp://HOST:2376 or unix://); repeatable. The lab finds and acts "
            "on its containers there (no placement on nodes yet).",
        ),
    ] = None,
    swarm_tls_dir: Annotated[
        str | None,
        typer.Option(
            help="Directory with ca.pem, cert.pem and key.pem (DOCKER_CERT_PATH's names): the client certificate "
            "for the swarm nodes, whose certificates ca.pem verifies. Required for a tcp:// node off loopback."
        ),
    ] = None,
    json: Json = False,
) -> None:
    """Start the lab: build images if needed, start the controller and the router. Idempotent."""
    from labctl import lab as lablib

    result = lablib.up(
        lab,
        render.progress,
        http_port=http_port,
        timescale=timescale,
        pool_size=pool_size,
        provision_time=provision_time,
        cycle_period=cycle_period,
        base_image=base_image,
        https_port=https_port,
        debug_headers=debug_headers,
        placement=placement,
        swarm_nodes=swarm_node or None,
        swarm_tls_dir=swarm_tls_dir,
    )
    if json:
        return render.as_json(result)
    render.out(f"Lab {lab} is {'up' if result['changed'] else 'already up'}.")
    render.out(_status_text(result))


@app.command("down")
def down(lab: Lab = DEFAULT_LAB, json: Json = False) -> None:
    """Stop the lab and remove every Docker object it created (label io.labctl.lab)."""
    from labctl import lab as lablib

    counts = lablib.down(lab)
    if json:
        return render.as_json(counts)
    render.out(
        f"Lab {lab} is down: removed {counts['containers']} containers, {counts['networks']} networks, "
        f"{counts['images']} images."
    )


@app.command("status")
def status(lab: Lab = DEFAULT_LAB, json: Json = False) -> None:
    """Show the lab's router URL, time scale and counts."""
    s = client(lab).lab_status()
    render.as_json(s) if json else render.out(_status_text(s))


@app.command("auth:token")
def auth_token(lab: Lab = DEFAULT_LAB, json: Json = False) -> None:
    """Print the lab's API token (for a Heroku API client pointed at the lab: see status --json's api.url)."""
    token = client(lab).token()
    render.as_json({"token": token}) if json else render.out(token)


@app.command("instances")
def instances(lab: Lab = DEFAULT_LAB, json: Json = False) -> None:
    """List runtime instances: id, runtime, state, budget, CPU and memory in use, dynos, faults."""
    rows = client(lab).instances()
    render.as_json(rows) if json else render.out(render.instances_text(rows))


@app.command("spaces")
def spaces(lab: Lab = DEFAULT_LAB, json: Json = False) -> None:
    """List Private Spaces."""
    rows = client(lab).spaces()
    if json:
        return render.as_json(rows)
    render.out("=== Spaces\n" + ("\n".join(s["name"] for s in rows) if rows else "No spaces"))


@app.command("spaces:create")
def spaces_create(
    name: Annotated[str, typer.Argument(help="Space name")], lab: Lab = DEFAULT_LAB, json: Json = False
) -> None:
    """Create a Private Space (its own network; its apps get dedicated instances)."""
    row = client(lab).space_create(name)
    render.as_json(row) if json else render.out(f"Creating space {name}... done")


@app.command("spaces:destroy")
def spaces_destroy(
    name: Annotated[str, typer.Argument(help="Space name")], lab: Lab = DEFAULT_LAB, json: Json = False
) -> None:
    """Destroy an empty Private Space."""
    c = client(lab)
    row = next((s for s in c.spaces() if s["name"] == name), None) if json else None
    c.space_destroy(name)
    render.as_json(row) if json else render.out(f"Destroying space {name}... done")  # --json: the space destroyed


@app.command("timescale")
def timescale(
    factor: Annotated[float | None, typer.Argument(help="New factor, e.g. 0.02")] = None,
    lab: Lab = DEFAULT_LAB,
    json: Json = False,
) -> None:
    """Show or change the lab-wide time scale (1.0 = Heroku's real durations)."""
    c = client(lab)
    s = c.set_timescale(factor) if factor is not None else c.lab_status()
    render.as_json({"timescale": s["timescale"]}) if json else render.out(f"Time scale: {s['timescale']}")


@app.command("certs")
def certs(
    lab: Lab = DEFAULT_LAB,
    install: Annotated[
        bool,
        typer.Option(
            "--install",
            help="Trust the lab's CA on this machine: the system store (needs root), Chromium's NSS database "
            "(~/.pki/nssdb) and Firefox profiles (need certutil, from libnss3-tools).",
        ),
    ] = False,
    uninstall: Annotated[
        bool, typer.Option("--uninstall", help="Remove the lab's CA from every store --install put it in.")
    ] = False,
    json: Json = False,
) -> None:
    """Print the lab's local CA certificate (the router's HTTPS is signed by it), or install or remove it."""
    from pathlib import Path

    from labctl import truststore
    from labctl.errors import InvalidInput, LabError

    if install and uninstall:
        raise InvalidInput("Choose one of --install and --uninstall")
    if uninstall:  # the lab need not be up: its name is the certificate's name in every store
        outcomes = truststore.uninstall(lab)
        if json:
            return render.as_json([o.__dict__ for o in outcomes])
        for o in outcomes:
            render.out(o.detail)
        return None
    ca = Path(client(lab).lab_status()["router"].get("ca_cert") or "")
    if not ca.is_file():
        raise LabError("This lab has no CA (HTTPS is off); see controller.log in the state directory")
    if install:
        outcomes = truststore.install(lab, ca)
        if json:
            render.as_json([o.__dict__ for o in outcomes])
        else:
            for o in outcomes:
                render.out(o.detail)
        if not any(o.ok for o in outcomes):
            raise LabError("The lab's CA was not installed anywhere (see the lines above)")
        return None
    if json:
        return render.as_json({"ca_cert": str(ca)})
    render.out(f"# {ca}  (curl --cacert {ca} https://<app>.localhost:PORT/)")
    render.out(ca.read_text().rstrip())
