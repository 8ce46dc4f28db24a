"""Golden output: each command the lab shares with the Heroku CLI prints what the CLI prints, with ``labctl`` for
``heroku``: action lines (``Scaling dynos... done``) on stderr, results on stdout, the CLI's own words.

Every expected string below is written from the Heroku CLI's source (github.com/heroku/cli, the .ts file named
beside it; snapshot c5fbf4b), not from labctl's code. The commands run in-process against a fake API client (no
lab, no Docker). Where the lab legitimately differs from the CLI, the comment says so; throughout: no colors (the
CLI's ⬢ stays, its ANSI colors go), no dyno costs, and warnings and errors after the CLI's ``▸`` bang.
"""

from __future__ import annotations

import contextlib
import io
import time
from typing import Any

import pytest

from labctl.cli import apps as apps_cli
from labctl.cli import lab as lab_cli
from labctl.cli import main
from labctl.cli import ps as ps_cli
from labctl.cli import releases as releases_cli
from labctl.errors import Conflict, NotFound

OLD = "2026-01-01T00:00:00Z"  # more than 25 h ago: the CLI's time.ago() prints no "(~ …ago)" suffix
OLD_TS = 1767225600.0  # the same instant as a Unix time
OLD_SHOWN = "2026/01/01 00:00:00 +0000"  # strftime('%Y/%m/%d %H:%M:%S %z') in UTC


def _dyno(name: str, state: str = "up", command: str = "python3 app.py", version: int = 20) -> dict[str, Any]:
    return {
        "name": name,
        "type": name.split(".")[0],
        "state": state,
        "size": "Standard-1X",
        "command": command,
        "updated_at": OLD,
        "release": {"version": version},
    }


def _release(version: int, description: str, status: str = "succeeded") -> dict[str, Any]:
    return {"version": version, "description": description, "status": status, "created_at": OLD, "config": {}}


class FakeClient:
    """The API client's methods the commands call, answering from a small fixed app ``myapp``; ``calls`` records
    what was asked."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.formation_rows = [
            {"type": "web", "quantity": 1, "size": "Standard-1X", "command": "python3 app.py"},
            {"type": "worker", "quantity": 1, "size": "Standard-1X", "command": "python3 worker.py"},
        ]
        self.release_rows = [_release(v, f"Deploy {v}") for v in range(20, 0, -1)]
        self.config_vars = {"LANG": "en_US.UTF-8", "RACK_ENV": "production"}
        self.dyno_rows = [_dyno("web.1"), _dyno("worker.1", command="python3 worker.py")]
        self.feature_rows = [
            {
                "name": "preboot",
                "description": "Provide seamless web dyno deploys",
                "enabled": True,
                "state": "general",
            },
            {
                "name": "log-runtime-metrics",
                "description": "Emit dyno resource usage information into app logs",
                "enabled": False,
                "state": "general",
            },
        ]
        self.app_row = {
            "name": "myapp",
            "space": None,
            "maintenance": False,
            "stack": {"id": "5a7c6b1e-0000-4000-8000-000000000024", "name": "heroku-24"},
            "features": {"preboot": True},
            "created_at": OLD,
            "release": 20,
            "web_url": None,
            "formation": self.formation_rows,
            "region": {"id": "5a7c6b1e-0000-4000-8000-00000000000a", "name": "lab"},
        }

    def _app(self, app: str) -> None:
        if app != "myapp":
            raise NotFound("Couldn't find that app.")  # the Platform API's not_found message

    def formation(self, app: str) -> list[dict[str, Any]]:
        self._app(app)
        return self.formation_rows

    def scale(self, app: str, args: list[str]) -> list[dict[str, Any]]:
        self._app(app)
        self.calls.append(("scale", args))
        new = [dict(p) for p in self.formation_rows]
        new[0].update(quantity=3, size="Standard-2X")
        return new  # the Platform API's batch update answers the whole formation

    def resize(self, app: str, sizes: dict[str, str]) -> None:
        self._app(app)
        self.calls.append(("resize", sizes))

    def _named(self, dyno: str | None, ptype: str | None) -> list[str]:
        return [d["name"] for d in self.dyno_rows if d["name"] == dyno or d["type"] == ptype or not (dyno or ptype)]

    def restart(self, app: str, *, dyno: str | None = None, ptype: str | None = None) -> list[str]:
        self._app(app)
        self.calls.append(("restart", (dyno, ptype)))
        return self._named(dyno, ptype)

    def stop(self, app: str, *, dyno: str | None = None, ptype: str | None = None) -> list[str]:
        self._app(app)
        self.calls.append(("stop", (dyno, ptype)))
        return self._named(dyno, ptype)

    def dynos(self, app: str, include_old: bool = False, extended: bool = False) -> list[dict[str, Any]]:
        self._app(app)
        return self.dyno_rows

    def releases(self, app: str) -> list[dict[str, Any]]:
        self._app(app)
        return self.release_rows

    def rollback(self, app: str, release: int | None = None) -> dict[str, Any]:
        self._app(app)
        target = release if release is not None else 19
        return _release(21, f"Rollback to v{target}")

    def config(self, app: str) -> dict[str, str]:
        self._app(app)
        return self.config_vars

    def config_set(self, app: str, changes: dict[str, str | None]) -> dict[str, Any]:
        self._app(app)
        self.calls.append(("config_set", changes))
        return {"config": self.config_vars, "release": _release(21, "Set config vars")}

    def apps(self) -> list[dict[str, Any]]:
        space = {"id": "5a7c6b1e-0000-4000-8000-0000000000aa", "name": "tokyo", "shared": False}
        return [self.app_row, {**self.app_row, "name": "vault", "space": space}]

    def app_create(self, name: str, space: str | None = None) -> dict[str, Any]:
        return {**self.app_row, "name": name, "space": space, "release": None}

    def app_info(self, app: str) -> dict[str, Any]:
        self._app(app)
        return self.app_row

    def app_destroy(self, app: str) -> None:
        self._app(app)
        self.calls.append(("app_destroy", app))

    def set_maintenance(self, app: str, on: bool) -> dict[str, Any]:
        self._app(app)
        self.calls.append(("maintenance", on))
        return self.app_row

    def features(self, app: str) -> list[dict[str, Any]]:
        self._app(app)
        return self.feature_rows

    def feature(self, app: str, feature: str) -> dict[str, Any]:
        self._app(app)
        for f in self.feature_rows:
            if f["name"] == feature:
                return f
        raise NotFound("Couldn't find that feature.")

    def set_feature(self, app: str, feature: str, enabled: bool) -> dict[str, Any]:
        f = self.feature(app, feature)
        if f["enabled"] == enabled:  # the lab's controller refuses as the CLI does (features/enable.ts)
            raise Conflict(f"{feature} is already {'enabled' if enabled else 'disabled'}.")
        return {**f, "enabled": enabled}

    def run(self, app: str, command: str, size: str | None = None) -> Any:
        self._app(app)
        yield {"dyno": {**_dyno("run.4821", command=command), "type": "run"}}
        yield {"output": "42\n"}
        yield {"result": {"status": 3}}

    def run_detached(self, app: str, command: str, size: str | None = None) -> dict[str, Any]:
        self._app(app)
        return {**_dyno("run.4822", state="starting", command=command), "type": "run"}

    def lab_status(self) -> dict[str, Any]:
        return {"timescale": 0.0001}

    def spaces(self) -> list[dict[str, Any]]:
        return [{"name": "tokyo", "created_at": OLD}]

    def space_destroy(self, name: str) -> None:
        self.calls.append(("space_destroy", name))


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> FakeClient:
    fake = FakeClient()
    for module in (apps_cli, lab_cli, ps_cli, releases_cli):
        monkeypatch.setattr(module, "client", lambda lab: fake)
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield fake
    monkeypatch.undo()
    time.tzset()


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([*argv])
    return code, out.getvalue(), err.getvalue()


# -- ps ----------------------------------------------------------------------------------------------------
def test_ps(api: FakeClient):
    # ps/index.ts (its test 'shows dyno list'): per group a styledHeader, a blank line, the dynos, a blank line;
    # one-offs first
    api.dyno_rows = [*api.dyno_rows, {**_dyno("run.7", command="bash"), "type": "run"}]
    assert run("ps", "-a", "myapp") == (
        0,
        "=== run: one-off processes (1)\n"
        "\n"
        f"run.7 (Standard-1X): up {OLD_SHOWN}: bash\n"
        "\n"
        "=== web (Standard-1X): python3 app.py (1)\n"
        "\n"
        f"web.1: up {OLD_SHOWN}\n"
        "\n"
        "=== worker (Standard-1X): python3 worker.py (1)\n"
        "\n"
        f"worker.1: up {OLD_SHOWN}\n"
        "\n",
        "",
    )
    # ps/index.ts: an unknown type is an error `No ${t} dynos on ${app}`; no dynos: `No dynos on ${app}`
    assert run("ps", "clock", "-a", "myapp") == (1, "", " ▸    No clock dynos on ⬢ myapp\n")
    api.dyno_rows = []
    assert run("ps", "-a", "myapp") == (0, "No dynos on ⬢ myapp\n", "")


def test_ps_scale_names_the_types_it_changed(api: FakeClient):
    # ps/scale.ts: ux.action.start('Scaling dynos'), ux.action.stop(`done, now running ${output.join(', ')}`) where
    # output lists only the formation entries an argument changed: worker is not named, and no "." at the end
    assert run("ps:scale", "web=3:Standard-2X", "-a", "myapp") == (
        0,
        "",
        "Scaling dynos... done, now running web at 3:Standard-2X\n",
    )
    # ps/scale.ts, no arguments: the formation on stdout, sorted, in a form ps:scale takes back
    assert run("ps:scale", "-a", "myapp") == (0, "web=1:Standard-1X worker=1:Standard-1X\n", "")


@pytest.mark.parametrize(
    ("argv", "stderr"),
    [
        # ps/restart.ts: msg += ' all dynos' / ` all ${type} dynos` / ` dyno ${dyno}`, then ` on ${app}`
        (("ps:restart",), "Restarting all dynos on ⬢ myapp... done\n"),
        (("ps:restart", "-p", "web"), "Restarting all web dynos on ⬢ myapp... done\n"),
        (("restart", "--dyno-name", "web.1"), "Restarting dyno web.1 on ⬢ myapp... done\n"),
        # ps/stop.ts: the same words with Stopping
        (("ps:stop", "-p", "worker"), "Stopping all worker dynos on ⬢ myapp... done\n"),
        (("ps:kill", "-d", "web.1"), "Stopping dyno web.1 on ⬢ myapp... done\n"),
    ],
)
def test_ps_restart_and_stop_say_what_they_act_on_on_stderr(api: FakeClient, argv: tuple[str, ...], stderr: str):
    assert run(*argv, "-a", "myapp") == (0, "", stderr)


def test_a_positional_dyno_is_deprecated(api: FakeClient):
    # ps/restart.ts and ps/stop.ts: ux.warn(`DYNO is a deprecated argument. Use --dyno-name or --process-type
    # instead.`) before the action line
    warning = " ▸    DYNO is a deprecated argument. Use --dyno-name or --process-type instead.\n"
    assert run("ps:restart", "web.1", "-a", "myapp") == (0, "", warning + "Restarting dyno web.1 on ⬢ myapp... done\n")
    # the lab reads a bare type as the API behind the older CLI did (all dynos of the type); the CLI's words name
    # whatever was given as `dyno`
    assert run("stop", "web", "-a", "myapp") == (0, "", warning + "Stopping dyno web on ⬢ myapp... done\n")
    assert api.calls == [("restart", ("web.1", None)), ("stop", (None, "web"))]


def test_ps_type_prints_the_process_types_and_dyno_totals(api: FakeClient):
    # ps/type.ts: ux.action.start(`Scaling dynos on ${app}`) ... ux.action.stop(); then displayFormation:
    # styledHeader('Process Types'), a table type/size/qty, a blank line, styledHeader('Dyno Totals'), type/total.
    # The lab has no prices: the CLI's cost/hour and max cost/month columns are left out.
    code, out, err = run("ps:type", "standard-2x", "-a", "myapp")
    assert (code, err) == (0, "Scaling dynos on ⬢ myapp... done\n")
    assert out == (
        "=== Process Types\n"
        "\n"
        " type     size          qty\n"
        " ──────────────────────────\n"
        " web      Standard-1X   1\n"
        " worker   Standard-1X   1\n"
        "\n"
        "=== Dyno Totals\n"
        "\n"
        " type          total\n"
        " ───────────────────\n"
        " Standard-1X   2\n"
    )
    assert api.calls == [("resize", {"*": "standard-2x"})]


def test_ps_wait(api: FakeClient):
    # ps/wait.ts: nothing to wait for prints nothing
    assert run("ps:wait", "-a", "myapp") == (0, "", "")
    # ps/wait.ts: the flag's parse(): ux.error('wait-interval must be at least 10')
    assert run("ps:wait", "-w", "1", "-a", "myapp") == (1, "", " ▸    wait-interval must be at least 10\n")
    # ps/wait.ts: 'with-run' is exclusive: ['type'] (the words are the lab's: oclif's parser writes its own)
    assert run("ps:wait", "-R", "-t", "web", "-a", "myapp")[:2] == (1, "")
    # ps/wait.ts: this.warn(`App ${app} has no releases`)
    api.release_rows = []
    assert run("ps:wait", "-a", "myapp") == (0, "", " ▸    App ⬢ myapp has no releases\n")


def test_ps_wait_reports_progress_then_done(api: FakeClient):
    # ps/wait.ts: ux.action.start(`Waiting for every dyno to be running v${latest}`), status `${n} / ${total}`,
    # then ux.action.stop(`${n} / ${total}, done`); the lab writes each new status as a line
    states = iter([["starting", "up"], ["up", "up"]])
    api.dynos = lambda app, **kw: [  # type: ignore[method-assign]
        _dyno(f"web.{i + 1}", state=s, version=20) for i, s in enumerate(next(states))
    ]
    assert run("ps:wait", "-a", "myapp") == (
        0,
        "",
        "Waiting for every dyno to be running v20... 1 / 2\nWaiting for every dyno to be running v20... 2 / 2, done\n",
    )


def test_run_prints_the_dyno_on_stderr_and_the_output_on_stdout(api: FakeClient):
    # lib/run/dyno.ts: ux.action.start(`Running ${command} on ${app}`), ux.action.stop(this._status('up')) with
    # _status = `${status}, ${dyno.name}` (its `size > 0` test never holds for a size name, so no size)
    assert run("run", "-a", "myapp", "echo", "42") == (3, "42\n", "Running echo 42 on ⬢ myapp... up, run.4821\n")


def test_run_detached(api: FakeClient):
    # run/detached.ts: the action stops with _status('done'); then
    # ux.stdout(`Run ${'heroku logs --app APP --dyno DYNO'} to view the output.\n`)
    assert run("run:detached", "-a", "myapp", "python3 job.py") == (
        0,
        "Run labctl logs --app myapp --dyno run.4822 to view the output.\n\n",
        "Running python3 job.py on ⬢ myapp... done, run.4822\n",
    )


# -- releases ----------------------------------------------------------------------------------------------
def test_releases_shows_the_last_15(api: FakeClient):
    # releases/index.ts: Range max=${num || 15}; styledHeader(`${app} Releases - Current: v${version}`), then a
    # table v / description / user / created_at, newest first; created_at through lib/time.ts ago()
    code, out, err = run("releases", "-a", "myapp")
    lines = out.splitlines()
    assert (code, err) == (0, "")
    assert lines[:4] == [
        "=== ⬢ myapp Releases - Current: v20",
        "",
        " v     description   user               created_at",
        " " + "─" * 64,
    ]
    assert lines[4] == f" v20   Deploy 20     labctl@localhost   {OLD_SHOWN}"
    assert len(lines) == 4 + 15 and lines[-1].startswith(" v6 ")
    assert len(run("releases", "-n", "3", "-a", "myapp")[1].splitlines()) == 4 + 3


def test_releases_status_and_empty(api: FakeClient):
    # lib/releases/status-helper.ts: a failed release's description is followed by 'release command failed'
    api.release_rows = [_release(2, "Deploy 2", status="failed"), _release(1, "Deploy 1")]
    out = run("releases", "-a", "myapp")[1].splitlines()
    assert out[0] == "=== ⬢ myapp Releases - Current: v1"
    assert out[4] == f" v2   Deploy 2 release command failed   labctl@localhost   {OLD_SHOWN}"
    # releases/index.ts: ux.stdout(`${app} has no releases.`)
    api.release_rows = []
    assert run("releases", "-a", "myapp") == (0, "⬢ myapp has no releases.\n", "")


def test_rollback_warns_twice_and_says_how_to_undo(api: FakeClient):
    # releases/rollback.ts: ux.action.start(`Rolling back ${app} to v${release.version}`),
    # ux.action.stop(`done, v${latest.version}`), then two ux.warn()s
    expected = (
        "Rolling back ⬢ myapp to v19... done, v21\n"
        " ▸    Rollback affects code and config vars; it doesn't add or remove addons.\n"
        " ▸    To undo, run: labctl rollback v20\n"
    )
    assert run("rollback", "-a", "myapp") == (0, "", expected)
    assert run("releases:rollback", "v19", "-a", "myapp") == (0, "", expected)


# -- config ------------------------------------------------------------------------------------------------
def test_config(api: FakeClient):
    # config/index.ts (its test: '=== ⬢ myapp Config Vars\n\nLANG:     en_US.UTF-8\nRACK_ENV: production\n')
    shown = "=== ⬢ myapp Config Vars\n\nLANG:     en_US.UTF-8\nRACK_ENV: production\n"
    assert run("config", "-a", "myapp") == (0, shown, "")
    # config/index.ts --shell: `${k}=${quote(v)}`
    assert run("config", "-s", "-a", "myapp") == (0, "LANG=en_US.UTF-8\nRACK_ENV=production\n", "")
    api.config_vars = {}
    assert run("config", "-a", "myapp") == (0, "=== ⬢ myapp Config Vars\n", "")


def test_config_get(api: FakeClient):
    # config/get.ts: each value on a line ('' when unset); --shell KEY=value; --json {key, value} (null when unset),
    # a list for several keys
    assert run("config:get", "LANG", "NOPE", "-a", "myapp") == (0, "en_US.UTF-8\n\n", "")
    assert run("config:get", "LANG", "-s", "-a", "myapp") == (0, "LANG=en_US.UTF-8\n", "")
    assert run("config:get", "NOPE", "--json", "-a", "myapp") == (0, '{\n  "key": "NOPE",\n  "value": null\n}\n', "")


def test_config_set_and_unset(api: FakeClient):
    # config/set.ts: ux.action.start(`Setting ${keys} and restarting ${app}`), ux.action.stop(`done, v${version}`),
    # then hux.styledObject of the vars set (its test: stdout 'RACK_ENV: production\n')
    assert run("config:set", "RACK_ENV=production", "FOO=a b", "-a", "myapp") == (
        0,
        "RACK_ENV: production\nFOO:      a b\n",
        "Setting RACK_ENV, FOO and restarting ⬢ myapp... done, v21\n",
    )
    # config/set.ts: ux.error(`${v} is invalid. Must be in the format FOO=bar.`)
    invalid = " ▸    WRONG is invalid. Must be in the format FOO=bar.\n"
    assert run("config:set", "WRONG", "-a", "myapp") == (1, "", invalid)
    # config/unset.ts: `Unsetting ${vars} and restarting ${app}`, stop('done, v' + version)
    assert run("config:unset", "RACK_ENV", "LANG", "-a", "myapp") == (
        0,
        "",
        "Unsetting RACK_ENV, LANG and restarting ⬢ myapp... done, v21\n",
    )


# -- apps, maintenance, features -----------------------------------------------------------------------------
def test_apps(api: FakeClient):
    # apps/index.ts: styledHeader(`${user.email} Apps`), one name a line; the lab marks a space's app where the
    # CLI marks a region other than us
    assert run("apps") == (0, "=== labctl@localhost Apps\n\nmyapp\nvault (space: tokyo)\n", "")
    api.apps = lambda: []  # type: ignore[method-assign]
    assert run("apps") == (0, "You have no apps.\n", "")


def test_apps_create_and_destroy(api: FakeClient):
    # apps/create.ts: `Creating ${name}` + ` in space ${space}`; the lab has no git remote, so no URL line
    assert run("apps:create", "shop") == (0, "", "Creating ⬢ shop... done\n")
    assert run("apps:create", "vault", "--space", "tokyo") == (0, "", "Creating ⬢ vault in space tokyo... done\n")
    # apps/destroy.ts: ux.action.start(`Destroying ${app} (including all add-ons)`); the app as a hidden argument
    # or -a; lib/confirm-command.ts: a --confirm that differs is refused before anything is destroyed
    assert run("apps:destroy", "myapp", "--confirm", "other") == (
        1,
        "",
        " ▸    Confirmation other did not match myapp. Aborted.\n",
    )
    assert api.calls == []
    assert run("apps:destroy", "-a", "myapp", "--confirm", "myapp") == (
        0,
        "",
        "Destroying ⬢ myapp (including all add-ons)... done\n",
    )
    assert run("apps:destroy", "-a", "nope") == (1, "", " ▸    Couldn't find that app.\n")


def test_apps_info(api: FakeClient):
    # apps/info.ts print(): styledHeader(app.name) and a styledObject (keys sorted, padded to the longest); the lab
    # has no add-ons, collaborators, git URL or sizes, and shows its features, maintenance and release
    assert run("apps:info", "-a", "myapp") == (
        0,
        "=== ⬢ myapp\n"
        "\n"
        "Dynos:       web: 1, worker: 1\n"
        "Features:    preboot\n"
        "Maintenance: off\n"
        "Owner:       labctl@localhost\n"
        "Region:      lab\n"
        "Release:     v20\n"
        "Stack:       heroku-24\n",
        "",
    )


def test_maintenance(api: FakeClient):
    # maintenance/index.ts: ux.stdout(app.maintenance ? 'on' : 'off'); on.ts / off.ts: action lines
    assert run("maintenance", "-a", "myapp") == (0, "off\n", "")
    assert run("maintenance:on", "-a", "myapp") == (0, "", "Enabling maintenance mode for ⬢ myapp... done\n")
    assert run("maintenance:off", "-a", "myapp") == (0, "", "Disabling maintenance mode for ⬢ myapp... done\n")


def test_features(api: FakeClient):
    # features/index.ts: styledHeader(`App Features ${app}`), sorted by name, `[+]`/`[ ]`, the name padded to the
    # longest, two spaces, the description
    assert run("features", "-a", "myapp") == (
        0,
        "=== App Features ⬢ myapp\n"
        "\n"
        "[ ] log-runtime-metrics  Emit dyno resource usage information into app logs\n"
        "[+] preboot              Provide seamless web dyno deploys\n",
        "",
    )
    # features/info.ts: styledHeader(name), styledObject({Description, Docs, Enabled})
    assert run("features:info", "preboot", "-a", "myapp") == (
        0,
        "=== preboot\n\nDescription: Provide seamless web dyno deploys\nEnabled:     true\n",
        "",
    )
    # features/enable.ts and disable.ts: `Enabling ${feature} for ${app}`; an enabled one: `${f} is already enabled.`
    assert run("features:enable", "log-runtime-metrics", "-a", "myapp") == (
        0,
        "",
        "Enabling log-runtime-metrics for ⬢ myapp... done\n",
    )
    assert run("features:enable", "preboot", "-a", "myapp") == (1, "", " ▸    preboot is already enabled.\n")
    assert run("features:disable", "preboot", "-a", "myapp") == (0, "", "Disabling preboot for ⬢ myapp... done\n")


def test_not_found_is_the_api_s_message(api: FakeClient):
    # the CLI prints the Platform API's not_found message as it comes: no app name added
    assert run("ps", "-a", "nope") == (1, "", " ▸    Couldn't find that app.\n")
    assert run("features:info", "nope", "-a", "myapp") == (1, "", " ▸    Couldn't find that feature.\n")


def test_json_output_is_the_object_printed(api: FakeClient):
    """--json: stdout is only JSON, and each object type has one shape: the app, the feature, the dyno."""
    import json

    def as_json(*argv: str) -> Any:
        code, out, err = run(*argv, "--json")
        assert (code, err) == (0, ""), argv
        return json.loads(out)

    app = as_json("apps:info", "-a", "myapp")
    assert set(as_json("apps:create", "myapp")) == set(app)
    assert as_json("maintenance", "-a", "myapp") == app
    assert as_json("maintenance:on", "-a", "myapp") == app
    assert as_json("apps:destroy", "-a", "myapp", "--confirm", "myapp") == app
    feature = as_json("features:enable", "log-runtime-metrics", "-a", "myapp")
    assert set(feature) == set(as_json("features:info", "preboot", "-a", "myapp")) == set(api.feature_rows[0])
    assert as_json("config:get", "LANG", "RACK_ENV", "-a", "myapp") == [
        {"key": "LANG", "value": "en_US.UTF-8"},
        {"key": "RACK_ENV", "value": "production"},
    ]
    dynos = as_json("ps", "-a", "myapp")
    assert as_json("ps:wait", "-a", "myapp") == dynos
    assert as_json("ps:restart", "-a", "myapp") == dynos
    assert as_json("ps:stop", "-p", "worker", "-a", "myapp") == [d for d in dynos if d["type"] == "worker"]
    formation = as_json("ps:scale", "-a", "myapp")
    assert [set(p) for p in as_json("ps:scale", "web=3", "-a", "myapp")] == [set(p) for p in formation]
    assert as_json("ps:type", "-a", "myapp") == formation
    assert as_json("config:set", "LANG=C", "-a", "myapp") == as_json("config", "-a", "myapp")
    assert as_json("config:unset", "LANG", "-a", "myapp") == as_json("config", "-a", "myapp")
    assert as_json("spaces:destroy", "tokyo") == api.spaces()[0]
    code, out, err = run("run", "-a", "myapp", "--json", "echo", "42")
    assert code == 3 and err.startswith("Running echo 42 on ⬢ myapp... up, run.4821")
    ran = json.loads(out)
    assert (ran["dyno"]["name"], ran["output"], ran["status"]) == ("run.4821", "42\n", 3)
    assert set(ran["dyno"]) == set(as_json("ps", "-a", "myapp")[0])


def test_the_golden_instant_is_one_instant():
    """OLD and OLD_TS name the same moment, more than 25 h ago (so no "(~ …ago)" suffix in the CLI's ago())."""
    from datetime import UTC, datetime

    assert datetime.fromtimestamp(OLD_TS, UTC).strftime("%Y-%m-%dT%H:%M:%SZ") == OLD
    assert time.time() - OLD_TS > 25 * 3600


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("answer", "destroyed"), [("myapp", True), ("other", False)])
def test_apps_destroy_asks_on_a_terminal(
    api: FakeClient, monkeypatch: pytest.MonkeyPatch, answer: str, destroyed: bool
):
    # lib/confirm-command.ts: ux.warn(message), a blank line, then hux.prompt(`To proceed, type ${app} or re-run this
    # command with --confirm ${app}`); another answer: `Confirmation did not match ${app}. Aborted.`
    import sys

    err = _Tty()
    monkeypatch.setattr(sys, "stdin", _Tty(answer + "\n"))
    with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.redirect_stderr(err):
        code = main(["apps:destroy", "-a", "myapp"])
    asked = (
        " ▸    This will delete ⬢ myapp including all add-ons.\n"
        "\n"
        "To proceed, type myapp or re-run this command with --confirm myapp: "
    )
    if destroyed:
        assert (code, out.getvalue(), err.getvalue()) == (
            0,
            "",
            asked + "Destroying ⬢ myapp (including all add-ons)... done\n",
        )
        assert api.calls == [("app_destroy", "myapp")]
    else:
        assert (code, err.getvalue()) == (1, asked + " ▸    Confirmation did not match myapp. Aborted.\n")
        assert api.calls == []
