"""CLI: ``neurofeat demo`` — the whole workflow on a synthetic cohort with planted truth.

The demo runs the same commands a user would type (synth → ingest → pretrain →
extract → probe → stats compare → survival → invariance → stability → report),
through the same Typer app, so it exercises exactly the public interface and leaves a
store to explore. Which commands, with which arguments, is decided by
:func:`neurofeat.runs.demo.demo_plan`; the closing summary by
:func:`neurofeat.runs.demo_summary.demo_summary`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from neurofeat.cli.common import console, fail


def _surface() -> dict[str, set[str]]:
    """Every command path of the app with its option names (what the demo can use)."""
    from neurofeat.cli import app

    surface: dict[str, set[str]] = {}

    def walk(command: object, path: list[str]) -> None:
        subcommands = getattr(command, "commands", None)  # a group (typer's vendored click)
        if subcommands is not None:
            for name, sub in subcommands.items():
                walk(sub, [*path, name])
        else:
            surface[" ".join(path)] = {opt for param in command.params for opt in param.opts}

    walk(typer.main.get_command(app), [])
    return surface


def _run(args: tuple[str, ...], title: str) -> None:
    """Run one neurofeat command in-process; stop the demo if it fails."""
    from neurofeat.cli import app

    command = typer.main.get_command(app)
    try:
        command.main(args=list(args), prog_name="neurofeat", standalone_mode=False)
    except typer.Exit as done:
        if done.exit_code:
            fail(f"demo step '{title}' failed (exit code {done.exit_code}); see the message above")
    except SystemExit as done:  # click's own exits
        if done.code:
            fail(f"demo step '{title}' failed (exit code {done.code}); see the message above")


def _run_step(plan, index: int, clock, out_console) -> None:
    """Run step ``index`` (1-based) of the plan here, under its heading and command line."""
    step = plan.steps[index - 1]
    out_console.rule(f"[bold]{clock.heading(index, plan)}[/]")
    out_console.print(f"[dim]$ {step.command_line()}[/]", soft_wrap=True)
    with clock.stage(step.stage):
        _run(step.args, step.title)


def _run_side_by_side(plan, clock, out_console, total: int) -> None:
    """Run the plan ``settings.jobs`` commands at a time; a line per finished step (``i/total``
    of the whole demo) and a progress bar naming the running ones; stop at the first failure
    with its log."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from neurofeat.runs.demo_runner import run_plan

    settings = plan.settings
    logs = settings.out / "logs"
    out_console.print(f"{settings.jobs} commands at a time, one thread each; each command's output is in {logs}/")
    running: dict[int, str] = {}
    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=out_console, transient=True)

    def describe() -> str:
        return "running: " + ", ".join(running.values()) if running else "starting"

    with progress:
        bar = progress.add_task(describe(), total=total)

        def started(index: int) -> None:
            running[index] = plan.steps[index].title
            progress.update(bar, description=describe())

        def finished(outcome) -> None:
            step = plan.steps[outcome.index]
            running.pop(outcome.index, None)
            clock.add(step.stage, outcome.wall, outcome.cpu)
            mark = "[green]✓[/]" if outcome.ok else "[red]✗[/]"
            out_console.print(f"{mark} [{outcome.index + 1}/{total}] {step.title}: {outcome.wall:.0f} s "
                              f"(CPU {outcome.cpu:.0f} s)  [dim]{clock.elapsed_text()}[/]", soft_wrap=True)
            progress.update(bar, advance=1, description=describe())

        outcomes = run_plan(plan, settings.jobs, logs, on_start=started, on_finish=finished)
    failed = [o for o in outcomes if not o.ok]
    if failed:
        for outcome in failed:
            step = plan.steps[outcome.index]
            out_console.print(f"[red]demo step '{step.title}' failed[/] (exit code {outcome.returncode}); "
                              "the end of its output:")
            out_console.print(f"$ {step.command_line()}\n{outcome.log_tail()}", soft_wrap=True, markup=False,
                              highlight=False)
        fail(f"the demo stopped at '{plan.steps[failed[0].index].title}'; its output is in {failed[0].log}")


def demo(
    out: Annotated[Path, typer.Option(help="Folder for the cohort, the models, the store and the report.")] = Path("demo"),
    quick: Annotated[
        bool,
        typer.Option(
            "--quick",
            help="About a minute instead of about 6 (idle 2-core CPU): 120 patients, one pair (dino, dino_dro) for 1 epoch, 1x5-fold CV, "
            "200 bootstrap resamples, one perturbation (Gibbs), and stats compare on IDH1, MGMT and survival only. "
            "One epoch teaches the encoders little; the reference backbones and the shortcut still show.",
        ),
    ] = False,
    shortcut: Annotated[
        bool,
        typer.Option(
            "--shortcut/--no-shortcut",
            help="Plant the site shortcut (strength 0.8: at the training sites the scanner goes with MGMT "
            "methylation, at the held-out site the other way round).",
        ),
    ] = True,
    n: Annotated[int | None, typer.Option(help="Synthetic patients (default 240; --quick 120).", show_default=False)] = None,
    methods: Annotated[
        str | None,
        typer.Option(
            help="SSL methods, each pretrained as base and _dro twin (default byol,dino,mae,moco; --quick dino). "
            "With all four, stats compare compares the families base and dro.",
            show_default=False,
        ),
    ] = None,
    epochs: Annotated[
        int | None,
        typer.Option(help="Pretraining epochs (default 6 of the cpu-demo recipe's 8, which --epochs 8 runs in about "
                     "8 minutes; --quick 1).", show_default=False),
    ] = None,
    bootstrap: Annotated[
        int | None, typer.Option(help="Bootstrap resamples (default 500; --quick 200).", show_default=False)
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the cohort, the training and the statistics.")] = 0,
    jobs: Annotated[
        int | None,
        typer.Option(help="Commands run side by side, each in a one-thread process with its output in OUT/logs "
                     "(default: one per core; 1 runs them one after the other here, output shown).",
                     show_default=False),
    ] = None,
) -> None:
    """Run the whole workflow on a synthetic multi-site cohort with planted truth, on a CPU: about 6 minutes on 2 cores (--quick: about a minute).

    The cohort is synthetic: 240 glioma patients at three sites, whose markers are planted in
    the tumour's appearance and, with the shortcut, tied to the scanner at two sites and the
    other way round at the third. The demo ingests it, pretrains the study's four base/DRO
    pairs (BYOL, DINO, MAE, MoCo; cpu-demo recipe for 6 epochs, tiny 3D ResNet10 at 32³), adds the
    reference backbones (the true traits as a ceiling, a random-init encoder as a floor,
    IBSI radiomics), extracts clean and perturbed embeddings, compares base with DRO on
    every task (calibrated test, cross-validated and leave-one-site-out), fits survival per
    site, measures site invariance and perturbation stability, writes the HTML report, and
    ends with a summary of what was found against what was planted. Everything lands in
    OUT (store in OUT/store).

    Example: neurofeat demo --out demo --quick
    """
    from dataclasses import replace

    from neurofeat.runs.demo import DemoCapabilities, DemoClock, demo_plan, demo_settings
    from neurofeat.runs.demo_summary import demo_summary, write_summary

    try:
        settings = demo_settings(out, quick=quick, n=n, shortcut=shortcut, methods=methods,
                                 epochs=epochs, bootstrap=bootstrap, seed=seed, jobs=jobs)
    except ValueError as error:
        fail(str(error))
    if (settings.store / "store.json").exists():
        fail(f"{settings.store} already holds a store; remove {out} or choose another --out")
    plan = demo_plan(settings, DemoCapabilities.from_surface(_surface()))
    out_console = console()
    for line in plan.preamble():
        out_console.print(line)
    for what, why in plan.skipped:
        out_console.print(f"[yellow]left out:[/] {what}: {why}")
    clock = DemoClock()
    # the report comes last and shows the summary, which is written after every analysis
    has_report = bool(plan.steps) and plan.steps[-1].stage == "report"
    work = replace(plan, steps=plan.steps[:-1]) if has_report else plan
    if settings.jobs > 1:
        _run_side_by_side(work, clock, out_console, total=len(plan.steps))
    else:
        for index in range(1, len(work.steps) + 1):
            _run_step(plan, index, clock, out_console)
    summary = demo_summary(settings.store, settings.cohort)
    write_summary(settings.store, summary, settings)
    if has_report:
        _run_step(plan, len(plan.steps), clock, out_console)
    out_console.rule("[bold]What was planted, what was found[/]")
    for sentence in summary.sentences():
        out_console.print(f"• {sentence}", soft_wrap=False)
    out_console.rule("[bold]done[/]")
    out_console.print(
        f"{clock.closing()} Explore it:\n"
        f"  neurofeat store info --store {settings.store}\n"
        f"  neurofeat sql \"SELECT * FROM comparisons WHERE \\\"primary\\\"\" --store {settings.store}\n"
        + (f"  open {settings.report}\n" if has_report else "")
        + f"  figures: {settings.store}/runs/*/*.png"
    )


def register(app: typer.Typer) -> None:
    """Add ``neurofeat demo`` to *app*."""
    app.command("demo")(demo)
