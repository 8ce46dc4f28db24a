"""``python -m bench``: measure labctl against plain Docker on this machine; see bench/README.md."""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import budget, controller, deploy, dynos, raw, report, router, stats
from bench.harness import BenchError, BenchLab, alternate, labctl_argv, remove_baselines
from bench.stats import ABS_LE, ABS_LT, DELTA_LE, RATIO_GE, RATIO_LE, Figure, Target
from labctl.const import STACK_IMAGE

SCALE_N = 20
SCENARIOS = deploy.REPO / "scenarios"
GROUPS = ["deploy", "restart", "router", "scale", "preboot"]
SCENARIO_JOBS = 4  # the library's scenarios run this many at a time (each in a lab of its own)
OPT_IN = ["scenarios"]  # not in the default run: it takes longer than the rest together


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--runs", type=int, default=5, help="runs of each side of every figure, alternating (default 5)")
    p.add_argument("--preboot-runs", type=int, default=2, help="preboot deploys under load (default 2)")
    p.add_argument("--router-seconds", type=float, default=2.0, help="length of each wrk run (default 2 s)")
    p.add_argument("--idle-seconds", type=float, default=10.0, help="idle CPU/RSS sampling time (default 10 s)")
    p.add_argument(
        "--quick",
        action="store_true",
        help="each figure once, no verdicts: exit 0 when everything could be measured (CI)",
    )
    p.add_argument("--skip", action="append", default=[], metavar="GROUP", choices=GROUPS, help="leave a group out")
    p.add_argument(
        "--with",
        dest="opt_in",
        action="append",
        default=[],
        metavar="GROUP",
        choices=OPT_IN,
        help="add an opt-in group: scenarios (the whole scenario library, several minutes)",
    )
    p.add_argument(
        "--scenario-jobs",
        type=int,
        default=SCENARIO_JOBS,
        metavar="N",
        help=f"scenarios at once in the scenarios group (labctl scenario run-all --jobs N; default {SCENARIO_JOBS})",
    )
    p.add_argument("--output", type=Path, help="where the JSON goes (default: bench/results/<date>-<commit>.json)")
    p.add_argument(
        "--markdown",
        type=Path,
        metavar="JSON",
        help="print the table of that result file as Markdown (the README's table), measure nothing",
    )
    args = p.parse_args(argv)
    if not 1 <= args.runs <= 50 or not 1 <= args.preboot_runs <= 20:
        p.error("--runs must be 1-50 and --preboot-runs 1-20")
    if not 1 <= args.router_seconds <= 30 or not 2 <= args.idle_seconds <= 120:
        p.error("--router-seconds must be 1-30 and --idle-seconds 2-120")
    if not 1 <= args.scenario_jobs <= 8:
        p.error("--scenario-jobs must be 1-8")
    if args.quick:
        args.runs, args.preboot_runs, args.router_seconds, args.idle_seconds = 1, 1, 1.0, 2.0
    return args


class Bench:
    def __init__(self, args: argparse.Namespace, lab: BenchLab, workdir: Path):
        self.args = args
        self.lab = lab
        self.workdir = workdir
        self.figures: list[Figure] = []
        self.info: dict[str, Any] = {}
        self.machine: dict[str, Any] = {}
        self.commit: tuple[str, bool] = ("unknown", False)
        self.failures: list[str] = []

    def add(self, fig: Figure) -> Figure:
        self.figures.append(fig)
        return fig

    def guarded(self, group: str, fn: Any) -> None:
        """Run one group; a failure is recorded (and printed) and the bench goes on with the next group."""
        if group in self.args.skip:
            log(f"{group}: skipped (--skip)")
            return
        started = time.perf_counter()
        log(f"{group}: measuring…")
        try:
            fn()
        except BenchError as err:
            self.failures.append(f"{group}: {err}")
            log(f"{group}: FAILED: {err}")
        except Exception as err:  # noqa: BLE001 - one group's surprise must not cost the others their figures
            self.failures.append(f"{group}: {type(err).__name__}: {err}")
            log(f"{group}: FAILED: {type(err).__name__}: {err}")
        log(f"{group}: {time.perf_counter() - started:.0f} s")

    # -- groups ------------------------------------------------------------------------------------
    def deploys(self) -> None:
        """First deploys of new apps (absolute); then, on the last one, second deploys alternating with a
        warm-cache ``docker build`` of the same Dockerfile and context."""
        runs = self.args.runs
        firsts = []
        app = ""
        for i in range(runs):
            if app:
                self.lab.cli("apps:destroy", "-a", app)
            app = f"bndep{i}"
            self.lab.cli("apps:create", app)
            firsts.append(deploy.timed_deploy(self.lab, app, deploy.SAMPLE_APP))
            log(f"  first deploy {firsts[-1]:.2f} s")
        ctx = raw.build_context(self.workdir, deploy.SAMPLE_APP, self.lab.name, "bnraw")
        tag = f"bnch-{self.lab.name}-raw:build"
        raw.docker_build(ctx, tag, self.lab.name)  # warms the cache, not timed
        seconds, builds = alternate(
            runs,
            lambda: deploy.timed_deploy(self.lab, app, deploy.SAMPLE_APP),
            lambda: raw.docker_build(ctx, tag, self.lab.name),
        )
        self.lab.cli("apps:destroy", "-a", app)
        self.add(
            Figure(
                "deploy_first",
                "deploy, first: images/sample-app",
                "s",
                firsts,
                target=Target(ABS_LE, 8.0, "≤ 8 s"),
                note="wall time of `labctl deploy` on a new app",
            )
        )
        self.add(
            Figure(
                "deploy_second",
                "deploy, second (unchanged): images/sample-app",
                "s",
                seconds,
                builds,
                "warm-cache docker build",
                Target(ABS_LE, 2.0, "≤ 2 s"),
                note="same source again vs `docker build` of the slug's own Dockerfile and context, cache warm",
            )
        )

    def space_app(self) -> str:
        """The Private Space app (web=1) the restart, replacement and router figures use; made once."""
        app = "bnps"
        if self.info.get("space_app"):
            return app
        self.info["space_app"] = app
        self.lab.cli("spaces:create", "bnspace")
        self.lab.cli("apps:create", app, "--space", "bnspace")
        self.lab.cli("deploy", str(deploy.SAMPLE_APP), "-a", app, timeout=600)
        self.lab.settle(app, ["web.1"], one_sandbox_each=True)
        return app

    def restarts(self, app: str) -> None:
        """Restart, stop (a new instance) and the API restart, each alternating with its raw twin."""
        twin = raw.RawDocker(
            self.lab.docker, self.lab.name, self.lab.slug_image(app), STACK_IMAGE, self.lab.dyno_limits(app)
        )
        pair = [twin.new_pair()]

        def raw_restart() -> float:
            took, pair[0] = twin.restart(pair[0])
            return took

        def raw_replace() -> float:
            took, pair[0] = twin.replace(pair[0])
            return took

        runs = self.args.runs
        restarted, raw_restarted = alternate(runs, lambda: dynos.restart_once(self.lab, app), raw_restart)
        self.add(
            Figure(
                "restart",
                "PS ps:restart web.1 → first 200 from the new container",
                "s",
                restarted,
                raw_restarted,
                "raw: new container in the sandbox, old stopped",
                Target(RATIO_LE, 1.1, "≤ 1.1× raw"),
            )
        )
        stopped, raw_replaced = alternate(runs, lambda: dynos.stop_once(self.lab, app), raw_replace)
        self.add(
            Figure(
                "stop",
                "PS ps:stop web.1 (new instance, provisioning 0 s) → first 200",
                "s",
                stopped,
                raw_replaced,
                "raw: new sandbox + dyno, old pair removed",
                Target(RATIO_LE, 1.3, "≤ 1.3× raw"),
            )
        )
        api, raw_again = alternate(runs, lambda: dynos.restart_once(self.lab, app, via="api"), raw_restart)
        self.add(
            Figure(
                "restart_api",
                "  same restart issued via the API (no CLI start)",
                "s",
                api,
                raw_again,
                "raw restart",
                note="information: how much of the restart figure is the CLI's own start-up",
            )
        )
        twin.remove([pair[0].dyno, pair[0].sandbox])
        self.budget_accounting()

    def budget_accounting(self) -> None:
        """What the instances' budgets cost the controller (docs/instances.md): per dyno start, per reading."""
        measured = budget.accounting_us(self.lab.name, self.args.runs)
        if measured is None:
            why = "budgets not enforced here (no writable cgroup v1 hierarchy)"
            self.add(Figure("budget_start", "budget accounting per dyno start", "µs", skipped=why))
            return
        starts, reads = measured
        self.add(
            Figure(
                "budget_start",
                "budget accounting per dyno start (parent cgroup set)",
                "µs",
                starts,
                target=Target(ABS_LE, 1000.0, "≤ 1 ms"),
                note="median of 200 calls per run of what Instances.cgroup_parent does before each dyno start",
            )
        )
        self.add(
            Figure(
                "budget_read",
                "  budget reading per instance (labctl instances)",
                "µs",
                reads,
                note="median of 200 reads of an instance's cpuacct.usage and memory.usage_in_bytes",
            )
        )

    def router_overhead(self, app: str) -> None:
        if router.wrk_path() is None:
            for key, title in (("router_p50", "router p50 latency"), ("router_rps", "router max throughput")):
                self.add(Figure(key, title, "ms", failed=router.INSTALL_HINT))
            log(f"router: FAILED: {router.INSTALL_HINT} (or --skip router)")
            return
        self.lab.settle(app, ["web.1"], one_sandbox_each=True)
        direct = f"http://{self.lab.direct_address(app)}/"
        res = router.measure(
            self.lab.router_url(), f"{app}.localhost", direct, self.args.runs, self.args.router_seconds
        )
        self.info["router"] = {
            "direct_url": direct,
            "connections_latency": 1,
            "connections_throughput": router.THROUGHPUT_CONNECTIONS,
            "errors": {k: [r.errors for r in v] for k, v in res.items()},
        }
        lat_err = router.errors_text(res["router_lat"], res["direct_lat"])
        thr_err = router.errors_text(res["router_thr"], res["direct_thr"])
        self.add(
            Figure(
                "router_p50",
                "router p50 latency (1 connection, keep-alive)",
                "ms",
                [r.p50_ms for r in res["router_lat"]],
                [r.p50_ms for r in res["direct_lat"]],
                "direct to dyno",
                Target(DELTA_LE, 0.5, "≤ direct + 0.5 ms"),
                failed=lat_err,
            )
        )
        self.add(
            Figure(
                "router_p99",
                "router p99 latency (1 connection, keep-alive)",
                "ms",
                [r.p99_ms for r in res["router_lat"]],
                [r.p99_ms for r in res["direct_lat"]],
                "direct to dyno",
                failed=lat_err,
            )
        )
        self.add(
            Figure(
                "router_rps",
                f"router max throughput ({router.THROUGHPUT_CONNECTIONS} connections, keep-alive)",
                "req/s",
                [r.rps for r in res["router_thr"]],
                [r.rps for r in res["direct_thr"]],
                "direct to dyno",
                Target(RATIO_GE, 0.9, "≥ 90 % of direct"),
                failed=thr_err,
            )
        )

    def scale(self) -> None:
        """Scale 0 → 20 alternating with 20 raw containers started at once; then idle and ``labctl ps``."""
        app = "bncr"
        self.lab.cli("apps:create", app)
        self.lab.cli("deploy", str(deploy.SAMPLE_APP), "-a", app, timeout=600)
        self.lab.cli("ps:scale", "web=1", "-a", app)
        self.lab.settle(app, ["web.1"])
        twin = raw.RawDocker(
            self.lab.docker, self.lab.name, self.lab.slug_image(app), STACK_IMAGE, self.lab.dyno_limits(app)
        )
        sandbox, _ = twin.sandbox()  # exists before the clock starts, as the pool instances' sandboxes do

        done = [0]

        def labctl_scale() -> float:
            took = dynos.scale_once(self.lab, app, SCALE_N)
            done[0] += 1
            if done[0] < self.args.runs:
                dynos.scale_to_zero(self.lab, app)  # the twin runs with no labctl dynos up either
            return took  # the last run's 20 dynos stay up for the idle figures

        dynos.scale_to_zero(self.lab, app)
        raw_scaled, scaled = alternate(self.args.runs, lambda: twin.scale(sandbox, SCALE_N), labctl_scale)
        twin.remove([sandbox])
        self.add(
            Figure(
                "scale20",
                f"CR ps:scale web=0 → {SCALE_N}, all serving via router",
                "s",
                scaled,
                raw_scaled,
                f"raw: {SCALE_N} containers at once (docker-py, warm)",
                Target(RATIO_LE, 1.0, "≤ 1.0× raw"),
            )
        )
        self.lab.settle(app, [f"web.{i}" for i in range(1, SCALE_N + 1)], timeout=120)
        time.sleep(2.0)  # let the last starts' log followers and router reloads go quiet
        self.idle(app)
        self.cli_latency(app)
        dynos.scale_to_zero(self.lab, app)

    def idle(self, app: str) -> None:
        pid = int(self.lab.cli_json("status")["controller_pid"])
        cpu, rss, whole = controller.idle(pid, self.args.idle_seconds, self.args.runs)
        self.info["idle"] = {
            "controller_pid": pid,
            "dynos": len(self.lab.dynos(app)),
            "window_s": self.args.idle_seconds / self.args.runs,
            "cpu_whole_span_stat": whole,
        }
        log(f"  idle: CPU over the whole {self.args.idle_seconds:g} s from /proc/{pid}/stat: {whole:.2f} %")
        self.add(
            Figure(
                "idle_cpu",
                f"controller idle CPU, {SCALE_N} dynos up",
                "%",
                cpu,
                target=Target(ABS_LT, 0.5, "< 0.5 % of a core"),
                note=f"{self.args.runs} windows over {self.args.idle_seconds:g} s from the threads' "
                f"/proc/<pid>/task/*/schedstat; whole span from /proc/<pid>/stat: {whole:.2f} %",
            )
        )
        self.add(
            Figure(
                "idle_rss",
                f"controller RSS, {SCALE_N} dynos up",
                "MB",
                rss,
                target=Target(ABS_LT, 60.0, "< 60 MB"),
                note="VmRSS from /proc/<pid>/status",
            )
        )

    def cli_latency(self, app: str) -> None:
        runs = 3 if self.args.quick else max(10, self.args.runs)
        lat = controller.cli_latency(self.lab, app, runs)
        docker_ps = controller.docker_ps_latency(self.lab, app, runs)
        self.add(
            Figure(
                "cli_ps",
                f"`labctl ps -a APP` wall time ({SCALE_N} dynos)",
                "s",
                lat,
                docker_ps,
                "docker ps (for reference)",
                Target(ABS_LE, 0.15, "≤ 0.15 s"),
            )
        )

    def preboot(self) -> None:
        # Preboot exists (`features:enable preboot`): the group always measures. It used to skip itself when a
        # look-up of the command failed, and a CLI that builds only the command it runs made that look-up fail
        # silently (the figure SKIPPED, exit 0): a figure that cannot be measured now fails the run instead.
        app = "bnpre"
        self.lab.cli("apps:create", app)
        self.lab.cli("deploy", str(deploy.SAMPLE_APP), "-a", app, timeout=600)
        self.lab.cli("ps:scale", "web=2", "-a", app)
        self.lab.settle(app, ["web.1", "web.2"])
        self.lab.cli("features:enable", "preboot", "-a", app)
        deploy.check_preboot_app(self.lab, app)
        expected = 180.0 * float(self.lab.cli_json("status")["timescale"])
        runs = []
        for _ in range(self.args.preboot_runs):
            deploy.wait_preboot_done(self.lab, app, 2)
            run = deploy.preboot_deploy(self.lab, app, deploy.SAMPLE_APP, rps=50.0)
            log(
                f"  preboot: {run.failed}/{run.requests} failed, switch {run.switch_after_release_s:.1f} s after "
                f"the release, {run.mixed_after_switch} old answers after it"
            )
            runs.append(run)
        self.info["preboot"] = [vars(r) for r in runs]
        self.add(
            Figure(
                "preboot_failed",
                "preboot deploy under 50 rps: failed requests",
                "requests",
                [float(r.failed) for r in runs],
                target=Target(ABS_LE, 0, "0 (seamless)"),
                note="5xx or no answer, from 1 s before the deploy to 3 s after the switch",
            )
        )
        self.add(
            Figure(
                "preboot_switch",
                "preboot deploy: switch after release",
                "s",
                [r.switch_after_release_s for r in runs],
                [expected] * len(runs),
                "spec: 3 min × time scale",
                note="first answer by the new release − `labctl deploy` returned",
            )
        )
        self.add(
            Figure(
                "preboot_mixed",
                "preboot: old-release answers after the switch",
                "requests",
                [float(r.mixed_after_switch) for r in runs],
                target=Target(ABS_LE, 0, "0 (switch at once)"),
            )
        )

    def scenarios(self) -> None:
        """The whole scenario library, unattended, as a user runs it: ``labctl scenario run-all --jobs N`` (each
        scenario brings a lab of its own up and down; N at a time)."""
        jobs = self.args.scenario_jobs
        files = sorted(SCENARIOS.glob("*.yaml"))
        reports = self.workdir / "reports"
        t0 = time.perf_counter()
        r = subprocess.run(
            [*labctl_argv(), "scenario", "run-all", str(SCENARIOS), "--jobs", str(jobs), "--report", str(reports)],
            capture_output=True,
            text=True,
            timeout=3600,
            stdin=subprocess.DEVNULL,
        )
        took = time.perf_counter() - t0
        for line in r.stdout.splitlines():
            log(f"  {line}")
        try:
            rows = json.loads((reports / "index.json").read_text())["scenarios"]
        except (OSError, ValueError, KeyError):
            rows = []
        failed = [Path(row["file"]).name for row in rows if row["status"] != "pass"]
        why = None
        if failed:
            why = f"{len(failed)} of {len(files)} failed: {', '.join(failed)}"
        elif r.returncode != 0 or len(rows) != len(files):
            why = f"scenario run-all exited {r.returncode}: {(r.stderr.strip().splitlines() or [''])[-1]}"
        self.add(
            Figure(
                "scenarios",
                f"scenario library unattended ({len(files)} files, {jobs} at a time)",
                "s",
                [took],
                target=Target(ABS_LE, 360.0, "≤ 6 min"),
                failed=why,
            )
        )

    # -- the whole run -----------------------------------------------------------------------------
    def run(self) -> None:
        self.guarded("deploy", self.deploys)
        self.guarded("restart", lambda: self.restarts(self.space_app()))
        self.guarded("router", lambda: self.router_overhead(self.space_app()))
        self.guarded("scale", self.scale)
        self.guarded("preboot", self.preboot)
        if "scenarios" in self.args.opt_in and not self.args.quick:
            self.guarded("scenarios", self.scenarios)
        else:
            why = "not in --quick" if self.args.quick else "opt-in: python -m bench --with scenarios"
            self.add(Figure("scenarios", "scenario library unattended", "s", skipped=f"not measured ({why})"))
        for f in self.figures:
            f.judged = not self.args.quick


def results(bench: Bench, started: float, lab: str, code: int, problems: list[str]) -> dict[str, Any]:
    head, dirty = bench.commit
    return {
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "commit": head,
        "commit_dirty": dirty,
        "quick": bench.args.quick,
        "interrupted": code == 130,
        "exit_code": code,
        "duration_s": round(time.time() - started, 1),
        "lab": lab,
        "machine": bench.machine,
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(bench.args).items()},
        "figures": [f.to_json() for f in bench.figures],
        "info": bench.info,
        "failures": bench.failures,
        "problems": problems,
    }


def _terminate(*_: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.markdown:
        return report.print_markdown(args.markdown)
    if shutil.which("docker") is None:
        print("bench: the docker command is needed (the raw twins use it)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _terminate)
    started = time.time()
    workdir = Path(tempfile.mkdtemp(prefix="bn-bench-"))
    name = f"bnch-{secrets.token_hex(3)}"
    lab = BenchLab(name, workdir / "state")
    bench = Bench(args, lab, workdir)
    bench.machine = report.machine(router.wrk_path())
    bench.commit = report.commit()  # at the start: what was measured
    log(f"load average at the start: {bench.machine['loadavg_start']}")
    code = 0
    try:
        log(f"lab {name} up (state in {lab.state_dir})")
        lab.up(lambda line: log(f"  {line}"))
        bench.run()
    except KeyboardInterrupt:
        log("interrupted: taking the lab down")
        code = 130
    except Exception as err:  # noqa: BLE001 - report in one line, then still take the lab down below
        bench.failures.append(f"bench: {type(err).__name__}: {err}")
        log(f"FAILED: {type(err).__name__}: {err}")
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not stop the teardown half-way
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        _teardown(lab, workdir)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    problems = stats.problems(bench.figures, bench.failures)
    code = code or (1 if problems else 0)
    print()
    print(stats.render_text(bench.figures))
    for line in problems:
        print(f"NOT OK  {line}")
    out = args.output or report.RESULTS / report.result_name(started, bench.commit[0], args.quick)
    report.write(out, results(bench, started, name, code, problems))
    verdict = "no verdicts (--quick)" if args.quick else ("every target met" if not problems else "NOT OK")
    print(f"\nResults: {out}  (lab {name}, {time.time() - started:.0f} s; {verdict}; exit {code})")
    return code


def _teardown(lab: BenchLab, workdir: Path) -> None:
    try:
        remove_baselines(lab.name)
        counts = lab.down()
        log(f"lab {lab.name} down: {counts}")
    except Exception as err:  # noqa: BLE001 - tell the user exactly what to run by hand
        log(f"teardown failed ({err}); run: LABCTL_STATE_DIR={lab.state_dir} labctl down --lab {lab.name}")
        return
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
