"""The Heroku router as an nginx configuration, and its access log read back as Heroku router lines.

Pure text in, text out: no Docker here (``engine/docker.py`` installs the file and reloads nginx with a SIGHUP).
The behaviour copied is heroku-reference §3: random pick among up web dynos, the router's headers (§3.3),
its timeouts (§3.2), retries on a refused/timed-out connect in the Common Runtime only (§3.1), a 503
"Application Error" page and an H-code for every error the router itself answers (§3.5), and the log
line ``at=info method=GET path="/" … protocol=http`` (§3.4).

This module is the router's public face; the work is done in:

* ``router_model.py``: the H-codes, paths and ports in the router container, the values passed around
  (``Backend``, ``AppRoute``, ``RouterSettings``, ``RouterEntry``) and the router container's command;
* ``router_nginx.py``: the whole nginx.conf (``render_nginx_conf``), and how nginx is bent into that shape;
* ``router_nginx_app.py``: one app's ``upstream`` and ``server`` block, and the checks on rendered values;
* ``router_log.py``: the access log → ``heroku[router]`` lines;
* ``router_hold.py``: the hold service beside nginx (the router's waits nginx cannot do itself).
"""

from __future__ import annotations

from labctl.engine.router_log import (
    RouterLogReader,
    error_reason,
    format_router_line,
    parse_access_line,
    parse_router_fields,
)
from labctl.engine.router_model import (
    CONF_PATH,
    DESCRIPTIONS,
    EMPTY_CODES,
    HOLD_ADDR,
    HOLD_PORT,
    HOLD_SCRIPT,
    INFO_CODES,
    LOG_KIND,
    MAX_TRIES,
    WARNING_CODES,
    AppRoute,
    Backend,
    FrontRoute,
    RouterEntry,
    RouterSettings,
    hold_script,
    router_command,
)
from labctl.engine.router_nginx import APP_ERROR_PAGE, MAINTENANCE_PAGE, NO_SUCH_APP_PAGE, render_nginx_conf

__all__ = [
    "APP_ERROR_PAGE",
    "CONF_PATH",
    "DESCRIPTIONS",
    "EMPTY_CODES",
    "HOLD_ADDR",
    "HOLD_PORT",
    "HOLD_SCRIPT",
    "INFO_CODES",
    "LOG_KIND",
    "MAINTENANCE_PAGE",
    "MAX_TRIES",
    "NO_SUCH_APP_PAGE",
    "WARNING_CODES",
    "AppRoute",
    "Backend",
    "FrontRoute",
    "RouterEntry",
    "RouterLogReader",
    "RouterSettings",
    "error_reason",
    "format_router_line",
    "hold_script",
    "parse_access_line",
    "parse_router_fields",
    "render_nginx_conf",
    "router_command",
]
