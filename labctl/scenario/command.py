"""``scenario run FILE``, ``run-all [DIR]``, ``validate FILE``, ``list`` (lab-spec §9, docs/scenarios.md).

The ``scenario`` command group. Scenarios drive the CLI as a user does, so they sit above it: this module uses
``labctl.cli`` (its renderer), and the entry module ``labctl.main`` adds the group to the CLI's commands;
``labctl.cli`` never imports the scenario package. Everything heavy (the loader, YAML, the runner) is imported
inside the commands, so ``labctl ps`` does not pay for it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from labctl.cli import render
from labctl.errors import LabError

scenario_app = typer.Typer(no_args_is_help=True, help="Run YAML lab scenarios unattended and report on them.")

File = Annotated[
    Path,
    typer.Argument(
        help="A scenario YAML file, or the name of a built-in one (labctl scenario list), "
        "e.g. private-space-restart-vs-stop",
        show_default=False,
    ),
]


def scenario_file(arg: Path) -> Path:
    """A path that exists is a file of the user's; otherwise a built-in scenario's name (``labctl scenario list``)."""
    from labctl import resources

    if arg.exists():
        return arg
    builtin = resources.builtin_scenario(str(arg))
    if builtin is not None:
        return builtin
    raise LabError(f"No such scenario file or built-in scenario: {arg} (labctl scenario list shows the built-in ones)")


@scenario_app.command("run")
def run(
    file: File,
    report: Annotated[
        Path | None, typer.Option("--report", help="Report directory (default: reports/<name>-<timestamp>/).")
    ] = None,
    lab: Annotated[
        str | None,
        typer.Option("--lab", help="Lab name (default: scn-<hash>, a lab of its own; an existing lab is refused)."),
    ] = None,
    keep: Annotated[bool, typer.Option("--keep", help="Leave the lab up afterwards (labctl down --lab NAME).")] = False,
    json: Annotated[bool, typer.Option("--json", help="Print result.json instead of the table.")] = False,
    interactive: Annotated[
        bool,
        typer.Option(
            "--interactive",
            "-i",
            help="A lab sheet: each task waits for your commands at a `lab>` prompt, with hints; graded at the end.",
        ),
    ] = False,
) -> None:
    """Set up a lab, run the steps, check the expectations, write a report; exit 0 only if all held."""
    from labctl.labdir import validate_lab_name
    from labctl.scenario import report as rep
    from labctl.scenario.loader import load
    from labctl.scenario.result import dumps
    from labctl.scenario.runner import Runner

    if interactive and json:
        from labctl.errors import InvalidInput

        raise InvalidInput("--interactive talks to you on the terminal; it cannot be combined with --json")
    scenario = load(scenario_file(file))
    if lab is not None:
        validate_lab_name(lab)
    out = render.progress if json else render.out
    learner = None
    if interactive:
        from labctl.scenario.interactive import Learner

        learner = Learner()
    runner = Runner(
        scenario,
        lab=lab,
        keep=keep,
        progress=render.progress,
        learner=learner,
        on_steps_start=lambda: None if json else out(rep.table_header(scenario)),
        on_step=lambda r: None if json else out(rep.table_row(scenario, r)),
    )
    render.progress(
        f"Scenario {scenario.name}: {len(scenario.steps)} steps, {scenario.checks} expectations, lab {runner.lab}"
    )
    result = runner.run()
    directory = report if report is not None else rep.default_report_dir(scenario)
    try:
        page: Path | None = rep.write(result, directory)
    except OSError as err:
        render.err(f" ▸    cannot write the report to {directory}: {err.strerror or err}")
        page = None
    if json:
        render.out(dumps(result))
        render.progress(rep.final_line(result, page))
    else:
        render.out(rep.final_line(result, page))
    runner.redeliver_sigterm()
    if result.exit_code:
        raise typer.Exit(result.exit_code)


@scenario_app.command("run-all")
def run_all(
    directory: Annotated[
        Path | None,
        typer.Argument(help="Where the scenarios are (default: the ones shipped with labctl).", show_default=False),
    ] = None,
    jobs: Annotated[
        int,
        typer.Option("--jobs", "-j", help="Scenarios run at once, each in a lab of its own (1-8; default 1)."),
    ] = 1,
    report: Annotated[
        Path | None, typer.Option("--report", help="Report directory (default: reports/all-<timestamp>/).")
    ] = None,
    json: Annotated[bool, typer.Option("--json", help="Print index.json instead of the table.")] = False,
) -> None:
    """Run every scenario of a directory unattended, each in a lab of its own; exit 0 only if all passed."""
    import time

    from labctl import resources
    from labctl.scenario import library

    library.check_jobs(jobs)
    files = library.scenario_files(directory if directory is not None else resources.scenarios_dir())
    directory_out = report or Path("reports") / f"all-{time.strftime('%Y%m%d-%H%M%S')}"
    out = render.progress if json else render.out
    out(f"Running {len(files)} scenarios, {jobs} at a time; reports in {directory_out}/")
    width = max(len(f.stem) for f in files)

    def done(r: library.LibraryRow) -> None:
        tail = f"  {r.message}" if r.status != "pass" and r.message else ""
        out(f"  {r.status.upper():<11} {r.name:<{width}}  {r.checks:>5}  {r.seconds:6.1f} s{tail}")

    t0 = time.monotonic()
    rows = library.Library(files, directory_out, jobs, done).run()
    wall = time.monotonic() - t0
    index = library.write_index(directory_out, rows, wall, jobs)
    passed = sum(1 for r in rows if r.status == "pass")
    if json:
        render.out(index.read_text().rstrip("\n"))
    verdict = "PASS" if passed == len(rows) else "FAIL"
    (render.progress if json else render.out)(
        f"{verdict}: {passed} of {len(rows)} scenarios passed in {wall:.0f} s ({jobs} at a time) — index: {index}"
    )
    if any(r.status == "interrupted" for r in rows):
        raise typer.Exit(130)
    if passed != len(rows):
        raise typer.Exit(1)


@scenario_app.command("validate")
def validate(
    file: File,
    json: Annotated[bool, typer.Option("--json", help="Print JSON, as a row of scenario list --json.")] = False,
) -> None:
    """Check a scenario file without running it: one line naming the file, line and field if it is wrong."""
    from labctl.scenario.loader import load

    file = scenario_file(file)
    sc = load(file)
    if json:  # the shape of a valid row of `scenario list --json`; an invalid file is still one line, exit 1
        row = {"file": str(file), "name": sc.name, "description": sc.description, "valid": True}
        return render.as_json({**row, "steps": len(sc.steps), "expectations": sc.checks})
    render.out(f"{file}: valid — {sc.name}: {len(sc.apps)} app(s), {len(sc.steps)} steps, {sc.checks} expectations")


@scenario_app.command("list")
def list_(
    directory: Annotated[
        Path | None,
        typer.Argument(help="Where to look (default: the scenarios shipped with labctl).", show_default=False),
    ] = None,
    json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List the built-in scenarios (or a directory's) with their descriptions; run one by name or by file."""
    from labctl import resources
    from labctl.scenario.loader import load

    builtin = directory is None
    if directory is None:
        directory = resources.scenarios_dir()
    if not directory.is_dir():
        raise LabError(f"{directory} is not a directory")
    rows = []
    for path in sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")]):
        try:
            sc = load(path)
            rows.append(
                {
                    "file": str(path),
                    "name": sc.name,
                    "description": sc.description,
                    "valid": True,
                    "steps": len(sc.steps),
                    "expectations": sc.checks,
                }
            )
        except LabError as err:
            rows.append({"file": str(path), "name": path.stem, "description": "", "valid": False, "error": str(err)})
    if json:
        return render.as_json(rows)
    if not rows:
        return render.out(f"No scenarios in {directory}")
    render.out("=== Built-in scenarios (labctl scenario run NAME)" if builtin else f"=== Scenarios in {directory}")
    for r in rows:
        render.out(Path(str(r["file"])).stem if builtin else str(r["file"]))
        render.out(f"    {r['description']}" if r["valid"] else f"    INVALID: {r['error']}")


@scenario_app.command("compare")
def compare(
    file: File,
    report: Annotated[
        Path | None, typer.Option("--report", help="Report directory (default: reports/<name>-compare-<timestamp>/).")
    ] = None,
    json: Annotated[bool, typer.Option("--json", help="Print compare.json instead of the table.")] = False,
) -> None:
    """Run every variant of FILE (its `variants:`) and write one report with their timelines and error budgets."""
    import time

    from labctl.errors import InvalidInput
    from labctl.scenario import compare as cmp
    from labctl.scenario import report as rep
    from labctl.scenario.loader import load
    from labctl.scenario.runner import Runner

    path = scenario_file(file)
    first = load(path)
    if not first.variants:
        raise InvalidInput(f"{path}: declares no variants: nothing to compare (see docs/scenarios.md, What-if runs)")
    directory = report or Path("reports") / f"{first.name}-compare-{time.strftime('%Y%m%d-%H%M%S')}"
    results = []
    for name in first.variants:
        scenario = load(path, variant=name)
        render.progress(f"Variant {name}: {len(scenario.steps)} steps, {scenario.checks} expectations")
        runner = Runner(scenario, progress=render.progress)
        result = runner.run()
        data = result.to_json()
        data["variant"] = name
        try:
            rep.write(result, directory / name)
        except OSError as err:
            render.err(f" ▸    cannot write the report to {directory / name}: {err.strerror or err}")
        render.progress(rep.final_line(result, None))
        results.append((name, data))
        runner.redeliver_sigterm()
        if result.status == "interrupted":
            break
    page = cmp.write(results, directory, str(path))
    if json:
        render.out((directory / "compare.json").read_text(encoding="utf-8").rstrip())
    else:
        for name, data in results:
            render.out(cmp.row_text(name, data, cmp.budget(data)))
        render.out(f"report: {page}")
    if any(d["status"] != "pass" for _, d in results) or len(results) < len(first.variants):
        raise typer.Exit(1)
