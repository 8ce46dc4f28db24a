"""A lab's settings (``lab.json`` in its state directory, ``labctl/labdir.py``) and their limits.

Apart from ``labdir`` so that the API client, which only reads the controller's address and token there, does
not import ``dataclasses`` (and ``inspect`` with it) on every CLI start (issue 18).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from urllib.parse import urlsplit

from labctl import const
from labctl.domain import clock
from labctl.domain.placement import POLICIES, SPREAD
from labctl.errors import LabError


@dataclass
class Settings:
    lab: str
    http_port: int = const.DEFAULT_HTTP_PORT
    https_port: int = const.DEFAULT_HTTPS_PORT
    timescale: float = 1.0
    pool_size: int = const.DEFAULT_POOL_SIZE
    provision_time: float = clock.PROVISION_TIME  # before the time scale
    cycle_period: float = clock.CYCLE_BASE  # daily cycling's 24 h, before the time scale (lab choice: shorter)
    debug_headers: bool = False  # the routers add X-Labctl-Dyno/-Release/-Error to responses
    placement: str = SPREAD  # how the Common Runtime's pool takes new dynos (spread | packed)
    # The Docker API URLs (DOCKER_HOST-style) of the swarm nodes the lab knows, besides the home engine of
    # DOCKER_HOST (docs/swarm.md; `labctl up --swarm-node`). Empty, the default: one engine, as before. Nothing
    # places containers on nodes yet: the Engine adapter only finds and acts on containers that live there.
    swarm_nodes: list[str] = field(default_factory=list)
    # The lab's own copy of the client certificate for the nodes (ca.pem, cert.pem, key.pem; `labctl up
    # --swarm-tls-dir`), in its state directory; empty: no TLS (only for loopback or unix:// nodes).
    swarm_tls_dir: str = ""

    def to_json(self) -> str:
        """``lab.json``'s text."""
        return json.dumps(asdict(self), indent=2)


def check_settings(s: Settings) -> None:
    """Raise LabError (one line) for settings a lab cannot run with."""
    for port in (s.http_port, s.https_port):
        if not (0 <= port <= 65535):
            raise LabError(f"Invalid port {port}")
    if not (0.000001 <= s.timescale <= 100):
        raise LabError(f"Invalid time scale {s.timescale}: it must be between 0.000001 and 100")
    if not (1 <= s.pool_size <= 20):
        raise LabError(f"Invalid pool size {s.pool_size}: it must be between 1 and 20")
    if not (0 <= s.provision_time <= 3600):
        raise LabError(f"Invalid provision time {s.provision_time}: it must be between 0 and 3600 seconds")
    if not (10 <= s.cycle_period <= clock.CYCLE_BASE):
        raise LabError(f"Invalid cycle period {s.cycle_period:g}: it must be between 10 and 86400 seconds")
    if s.placement not in POLICIES:
        raise LabError(f"Invalid placement {s.placement!r}: it must be one of {', '.join(POLICIES)}")
    check_node_urls(s.swarm_nodes)


# ssh:// is not taken: docker-py needs paramiko (not a dependency) or a per-call ssh client for it
NODE_URL_SCHEMES = ("tcp", "unix", "http", "https")


def check_node_urls(urls: object) -> None:
    """Swarm node URLs as Docker takes them in DOCKER_HOST: tcp://HOST:PORT or unix:///PATH (not ssh://)."""
    if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
        raise LabError("Invalid swarm_nodes: a list of Docker API URLs such as tcp://10.0.0.2:2376")
    for url in urls:
        try:
            parts = urlsplit(url)
            where = parts.path if parts.scheme == "unix" else parts.hostname
        except ValueError:  # e.g. tcp://[::1 (an unclosed IPv6 bracket)
            where = None
            parts = urlsplit("")
        if parts.scheme not in NODE_URL_SCHEMES or not where:
            raise LabError(f"Invalid swarm node URL {url!r}: use tcp://HOST:PORT or unix:///PATH")
    if len(set(urls)) != len(urls):
        raise LabError("A swarm node URL is named twice in swarm_nodes")
