"""``python -m bench``: measure labctl against plain Docker on this machine; see bench/README.md."""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from bench import controller, deploy, dynos, router, stats
from bench.harness import Baseline, BenchError, BenchLab, remove_baselines
from bench.stats import ABS_LE, ABS_LT, DELTA_LE, RATIO_GE, RATIO_LE, Figure, Target

RESULTS = Path(__file__).resolve().parent / "results"
SCALE_N = 20
PREBOOT_PLACEHOLDER = "preboot deploy under 50 rps"


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--runs", type=int, default=5, help="runs per figure; each figure is their median (default 5)")
    p.add_argument(
        "--deploy-runs",
        type=int,
        default=2,
        help="runs of each deploy figure (a first deploy with pip takes ~30-50 s here; default 2)",
    )
    p.add_argument("--preboot-runs", type=int, default=2, help="preboot deploys under load (default 2)")
    p.add_argument("--router-seconds", type=float, default=2.0, help="length of each wrk run (default 2 s)")
    p.add_argument("--idle-seconds", type=float, default=10.0, help="idle CPU/RSS sampling time (default 10 s)")
    p.add_argument(
        "--skip",
        action="append",
        default=[],
        metavar="GROUP",
        choices=["deploy", "restart", "router", "scale", "preboot"],
        help="leave a group out",
    )
    p.add_argument("--output", type=Path, default=RESULTS / "latest.json", help="where the JSON goes")
    p.add_argument(
        "--markdown",
        type=Path,
        nargs="?",
        const=RESULTS / "latest.json",
        metavar="JSON",
        help="print the table of an earlier run (default: the latest) as Markdown, measure nothing",
    )
    args = p.parse_args(argv)
    if not 1 <= args.runs <= 50 or not 1 <= args.deploy_runs <= 20 or not 1 <= args.preboot_runs <= 20:
        p.error("--runs must be 1-50, --deploy-runs and --preboot-runs 1-20")
    if not 1 <= args.router_seconds <= 30 or not 2 <= args.idle_seconds <= 120:
        p.error("--router-seconds must be 1-30 and --idle-seconds 2-120")
    return args


class Bench:
    def __init__(self, args: argparse.Namespace, lab: BenchLab, workdir: Path):
        self.args = args
        self.lab = lab
        self.workdir = workdir
        self.figures: list[Figure] = []
        self.info: dict[str, Any] = {}
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
        log(f"{group}: {time.perf_counter() - started:.0f} s")

    # -- groups ------------------------------------------------------------------------------------
    def deploys(self) -> None:
        six = deploy.app_with_requirements(self.workdir)
        firsts: dict[str, list[float]] = {"plain": [], "six": []}
        seconds: dict[str, list[float]] = {"plain": [], "six": []}
        for i in range(self.args.deploy_runs):
            for kind, src in (("plain", deploy.SAMPLE_APP), ("six", six)):
                first, second = deploy.deploy_twice(self.lab, f"dep{kind}{i}", src)
                firsts[kind].append(first)
                seconds[kind].append(second)
                log(f"  deploy {kind}: first {first:.1f} s, second {second:.1f} s")
        for kind, what in (("plain", "images/sample-app (empty requirements)"), ("six", "requirements.txt `six`")):
            self.add(
                Figure(
                    f"deploy_first_{kind}",
                    f"deploy, first: {what}",
                    "s",
                    firsts[kind],
                    note="wall time of `labctl deploy` on a new app (no build cache)",
                )
            )
            self.add(
                Figure(
                    f"deploy_second_{kind}",
                    f"deploy, second (unchanged): {what}",
                    "s",
                    seconds[kind],
                    baseline=firsts[kind],
                    baseline_title="first deploy",
                    note="same source again: the pip layer comes from the build cache",
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
        base = Baseline(self.lab.name, self.lab.slug_image(app))
        docker_restart = dynos.docker_restart(base, self.args.runs)
        labctl_restart = dynos.restart(self.lab, app, self.args.runs)
        self.add(
            Figure(
                "restart",
                "PS ps:restart web.1 → serving via router",
                "s",
                labctl_restart,
                docker_restart,
                "docker restart",
                Target(RATIO_LE, 1.5, "≤ 1.5× docker restart"),
            )
        )
        replaced = dynos.replace(self.lab, app, self.args.runs)
        self.add(
            Figure(
                "replace",
                "PS ps:stop web.1 (new instance) → serving",
                "s",
                replaced,
                docker_restart,
                "docker restart",
                Target(RATIO_LE, 2.0, "≤ 2× docker restart"),
            )
        )
        api_restart = dynos.restart(self.lab, app, self.args.runs, via="api")
        self.add(
            Figure(
                "restart_api",
                "  same restart issued via the API (no CLI start)",
                "s",
                api_restart,
                docker_restart,
                "docker restart",
                note="information: how much of the restart figure is the CLI's own start-up",
            )
        )

    def router_overhead(self, app: str) -> None:
        if router.wrk_path() is None:
            for key, title in (("router_p50", "router p50 latency"), ("router_rps", "router max throughput")):
                self.add(Figure(key, title, "ms", skipped=router.INSTALL_HINT))
            log(f"router: SKIPPED: {router.INSTALL_HINT}")
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
        self.add(
            Figure(
                "router_p50",
                "router p50 latency (1 connection)",
                "ms",
                [r.p50_ms for r in res["router_lat"]],
                [r.p50_ms for r in res["direct_lat"]],
                "direct to dyno",
                Target(DELTA_LE, 1.0, "≤ direct + 1 ms"),
            )
        )
        self.add(
            Figure(
                "router_p99",
                "router p99 latency (1 connection)",
                "ms",
                [r.p99_ms for r in res["router_lat"]],
                [r.p99_ms for r in res["direct_lat"]],
                "direct to dyno",
            )
        )
        self.add(
            Figure(
                "router_rps",
                f"router max throughput ({router.THROUGHPUT_CONNECTIONS} connections)",
                "req/s",
                [r.rps for r in res["router_thr"]],
                [r.rps for r in res["direct_thr"]],
                "direct to dyno",
                Target(RATIO_GE, 0.7, "≥ 70 % of direct"),
            )
        )

    def scale(self) -> None:
        app = "bncr"
        self.lab.cli("apps:create", app)
        self.lab.cli("deploy", str(deploy.SAMPLE_APP), "-a", app, timeout=600)
        base = Baseline(self.lab.name, self.lab.slug_image(app))
        baseline = dynos.docker_run_many(base, SCALE_N, self.args.runs)
        scaled = dynos.scale_up(self.lab, app, SCALE_N, self.args.runs, keep_last=True)
        self.add(
            Figure(
                "scale20",
                f"CR ps:scale web=0 → {SCALE_N}, all serving via router",
                "s",
                scaled,
                baseline,
                f"{SCALE_N}× docker run",
                Target(RATIO_LE, 1.5, "≤ 1.5× docker run"),
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
                target=Target(ABS_LT, 1.0, "< 1 % of a core"),
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
                target=Target(ABS_LT, 100.0, "< 100 MB"),
                note="VmRSS from /proc/<pid>/status",
            )
        )

    def cli_latency(self, app: str) -> None:
        runs = max(10, self.args.runs)
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
                Target(ABS_LE, 0.3, "≤ 0.3 s"),
            )
        )

    def preboot(self) -> None:
        why = deploy.preboot_available(self.lab)
        if why:
            self.add(Figure("preboot", PREBOOT_PLACEHOLDER, "s", skipped=f"not measured yet ({why})"))
            return
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

    # -- the whole run -----------------------------------------------------------------------------
    def run(self) -> None:
        self.guarded("deploy", self.deploys)
        self.guarded("restart", lambda: self.restarts(self.space_app()))
        self.guarded("router", lambda: self.router_overhead(self.space_app()))
        self.guarded("scale", self.scale)
        self.guarded("preboot", self.preboot)


def host_info() -> dict[str, Any]:
    def docker_fmt(fmt: str) -> str:
        r = subprocess.run(["docker", "info", "--format", fmt], capture_output=True, text=True, timeout=30)
        return r.stdout.strip()

    return {
        "cpus": os.cpu_count(),
        "loadavg_before": os.getloadavg(),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "docker": docker_fmt("{{.ServerVersion}}"),
        "storage_driver": docker_fmt("{{.Driver}}"),
        "wrk": router.wrk_path(),
    }


def write_results(path: Path, bench: Bench, started: float, host: dict[str, Any], lab: str, code: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "interrupted": code == 130,
        "duration_s": round(time.time() - started, 1),
        "lab": lab,
        "host": host,
        "loadavg_after": os.getloadavg(),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(bench.args).items()},
        "figures": [f.to_json() for f in bench.figures],
        "info": bench.info,
        "failures": bench.failures,
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


def _terminate(*_: object) -> None:
    raise KeyboardInterrupt


def print_markdown(path: Path) -> int:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        print(f"bench: cannot read {path}: {err}", file=sys.stderr)
        return 2
    print(stats.render_markdown([stats.from_json(f) for f in data["figures"]]))
    host = data.get("host", {})
    print(
        f"\n{data['started_at']}, {host.get('cpus')} CPUs, Docker {host.get('docker')} "
        f"({host.get('storage_driver')}), load average before {host.get('loadavg_before')}, "
        f"{data['duration_s']:.0f} s in all"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.markdown:
        return print_markdown(args.markdown)
    if shutil.which("docker") is None:
        print("bench: the docker command is needed (baselines use it)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _terminate)
    started = time.time()
    workdir = Path(tempfile.mkdtemp(prefix="bn-bench-"))
    name = f"bnch-{secrets.token_hex(3)}"
    lab = BenchLab(name, workdir / "state")
    bench = Bench(args, lab, workdir)
    host = host_info()
    code = 0
    try:
        log(f"lab {name} up (state in {lab.state_dir})")
        lab.up(lambda line: log(f"  {line}"))
        bench.run()
    except KeyboardInterrupt:
        log("interrupted: taking the lab down")
        code = 130
    except Exception as err:  # noqa: BLE001 - report, then still take the lab down below
        traceback.print_exc()
        bench.failures.append(f"bench: {type(err).__name__}: {err}")
        code = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not stop the teardown half-way
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        _teardown(lab, workdir)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    print()
    print(stats.render_text(bench.figures))
    for f in bench.failures:
        print(f"FAILED  {f}")
    missed = [f.title for f in bench.figures if f.verdict() == "MISSED"]
    if missed:
        print(f"MISSED targets: {len(missed)}: " + "; ".join(missed))
    write_results(args.output, bench, started, host, name, code)
    print(f"\nResults: {args.output}  (lab {name}, {time.time() - started:.0f} s)")
    return code or (1 if bench.failures else 0)


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
