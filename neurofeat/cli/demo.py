"""CLI: ``neurofeat demo`` — the whole workflow on the synthetic cohort, end to end.

The demo runs the same commands a user would type (synth → ingest → pretrain →
extract → probe → stats compare → survival → sql), through the same Typer app, so
it exercises exactly the public interface and leaves a store to explore.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from neurofeat.cli.common import console, fail


def _run(step: str, args: list[str]) -> float:
    """Run one neurofeat command in-process; stop the demo if it fails."""
    from neurofeat.cli import app

    console().rule(f"[bold]{step}[/]  neurofeat {' '.join(args)}")
    command = typer.main.get_command(app)
    start = time.perf_counter()
    try:
        command.main(args=args, prog_name="neurofeat", standalone_mode=False)
    except typer.Exit as done:
        if done.exit_code:
            fail(f"demo step '{step}' failed (exit code {done.exit_code}); see the message above")
    except SystemExit as done:  # click's own exits
        if done.code:
            fail(f"demo step '{step}' failed (exit code {done.code}); see the message above")
    return time.perf_counter() - start


def demo(
    out: Annotated[Path, typer.Option(help="Folder for the cohort, the models and the store.")] = Path("demo"),
    n: Annotated[int, typer.Option(help="Synthetic patients.")] = 120,
    methods: Annotated[
        str, typer.Option(help="SSL methods to pretrain, each as base and _dro twin (byol,dino,mae,moco,simclr).")
    ] = "dino",
    epochs: Annotated[int, typer.Option(help="Pretraining epochs (tiny CPU encoders).")] = 1,
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples for the CIs.")] = 500,
    seed: Annotated[int, typer.Option(help="Seed of the cohort, the training and the statistics.")] = 0,
) -> None:
    """Run the whole workflow on a synthetic multi-site cohort, on a CPU, in minutes.

    Generates a cohort with known truth, ingests it, pretrains tiny 3D ResNets with and
    without Group-DRO, extracts embeddings, probes IDH1, compares base vs DRO, fits a
    survival model, and queries the results with SQL. Everything lands in OUT/store.

    Example: neurofeat demo --out demo --methods dino,mae --epochs 2
    """
    chosen = [m.strip() for m in methods.split(",") if m.strip()]
    known = ("byol", "dino", "mae", "moco", "simclr")
    unknown = [m for m in chosen if m not in known]
    if unknown or not chosen:
        fail(f"--methods: unknown {unknown or methods!r}; choose from {', '.join(known)}")
    store, models, cohort = out / "store", out / "models", out / "cohort"
    # Preprocessed volumes are cached once and shared by pretraining and every extraction.
    cache = ["--cache-dir", str(out / "cache")]
    if (store / "store.json").exists():
        fail(f"{store} already holds a store; remove {out} or choose another --out")
    tiny = ["--arch", "resnet10", "--widen-factor", "0.25", "--input-size", "32", "--spacing", "6"]
    stats = ["--repeats", "2", "--folds", "5", "--bootstrap", str(bootstrap), "--seed", str(seed)]
    timings: dict[str, float] = {}
    timings["synth"] = _run(
        "1 synth", ["synth", "--out", str(cohort), "--n", str(n), "--size", "32", "--spacing", "6", "--seed", str(seed)]
    )
    timings["ingest"] = _run(
        "2 ingest",
        ["ingest", "--manifest", str(cohort / "manifest.csv"), "--clinical", str(cohort / "clinical.csv"), "--store", str(store)],
    )
    backbones = [name for method in chosen for name in (method, f"{method}_dro")]
    for name in backbones:
        method, dro = name.removesuffix("_dro"), name.endswith("_dro")
        args = ["pretrain", "--method", method, "--store", str(store), "--models-dir", str(models), *tiny]
        args += ["--epochs", str(epochs), "--batch-size", "8", "--lr", "1e-3", "--seed", str(seed), "--no-progress", *cache]
        if dro:
            args += ["--dro", "--group-by", "site"]
        timings[f"pretrain {name}"] = _run(f"3 pretrain {name}", args)
    for name in backbones:
        timings[f"extract {name}"] = _run(
            f"4 extract {name}",
            ["extract", "--backbone", name, "--store", str(store), "--models-dir", str(models), "--workers", "1", "--no-progress", *cache],
        )
    first = backbones[1]
    timings["probe"] = _run(
        "5 probe", ["probe", "--backbone", first, "--task", "idh1", "--store", str(store), *stats, "--fractions", "none"]
    )
    # the families "base"/"dro" need every family member pretrained; else compare one pair
    pair = ["base", "dro"] if set(chosen) >= {"byol", "dino", "mae", "moco"} else [chosen[0], f"{chosen[0]}_dro"]
    timings["compare"] = _run("6 stats compare", ["stats", "compare", *pair, "--task", "idh1", "--store", str(store), *stats])
    timings["survival"] = _run(
        "7 survival",
        ["survival", "--backbone", first, "--task", "os", "--store", str(store), "--repeats", "2", "--bootstrap", str(bootstrap), "--min-patients", "10"],
    )
    _run(
        "8 sql",
        [
            "sql",
            "SELECT command, backbone, task, coalesce(probe, model) AS model, metric, round(estimate, 3) AS estimate, "
            "round(ci_low, 3) AS ci_low, round(ci_high, 3) AS ci_high FROM results "
            "WHERE site = 'all' AND metric IN ('auc', 'ba', 'harrell_c', 'uno_c') AND ci_method LIKE 'percentile%' "
            "ORDER BY command, backbone, model, metric",
            "--store",
            str(store),
        ],
    )
    console().rule("[bold]done[/]")
    total = sum(timings.values())
    console().print(
        f"demo finished in {total:.0f} s. Explore it:\n"
        f"  neurofeat store info --store {store}\n"
        f"  neurofeat sql \"SELECT * FROM comparisons\" --store {store}\n"
        f"  figures: {store}/runs/*/*.png"
    )


def register(app: typer.Typer) -> None:
    """Add ``neurofeat demo`` to *app*."""
    app.command("demo")(demo)
