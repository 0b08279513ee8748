"""CLI: ``neurofeat stats compare`` — paired comparison of backbones or families.

Parses the options, calls :func:`neurofeat.runs.compare_run` (which dispatches on the
task's kind, adjusts across tasks and writes the run) and prints its tables.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from neurofeat.cli.common import (StoreOption, console, fail, open_store, print_frame,
                                  progress_hooks, user_errors)

__all__ = ["register", "compare"]

stats_app = typer.Typer(help="Statistics across backbones: paired comparisons.",
                        no_args_is_help=True)

@stats_app.command("compare")
def compare(
    side_a: Annotated[str, typer.Argument(metavar="A",
                                          help="Backbone or family (base = byol, dino, mae, "
                                               "moco; dro = their _dro twins).")],
    side_b: Annotated[str, typer.Argument(metavar="B", help="Backbone or family.")],
    task: Annotated[str, typer.Option(help="Task name, or 'all' for every task (adds "
                                           "Holm/BH across tasks).")],
    metric: Annotated[str, typer.Option(help="Comma-separated metrics: auc, ba, sensitivity, "
                                             "specificity (continuous: also spearman, mae). "
                                             "Survival tasks always use Harrell's and Uno's C.")]
    = "auc,ba",
    test: Annotated[str, typer.Option(
        help="Primary test. calibrated-t (default): the corrected resampled t with a "
             "correction measured by simulation so that p holds its level; its estimand is "
             "the expected performance of the probe trained on n(k-1)/k patients. Published "
             "procedures by name (measured type-I error at alpha 0.05 in brackets): auto = "
             "Shapiro-Wilk choosing paired t or Wilcoxon over folds (NeuroRAD-FM; 38-59 %), "
             "fold-t, wilcoxon, ttest, corrected-t (Nadeau-Bengio; AUC 10-11 %), delong "
             "(BrainIAC; 11-18 %), bootstrap (14-25 %). Every test is stored; Holm/BH "
             "adjust each test's rows across tasks.")] = "calibrated-t",
    repeats: Annotated[int, typer.Option(help="CV repeats.", min=1)] = 5,
    folds: Annotated[int, typer.Option(help="CV folds.", min=2)] = 5,
    bootstrap: Annotated[int, typer.Option(help="Paired stratified bootstrap resamples.",
                                           min=10)] = 2000,
    seed: Annotated[int, typer.Option(help="Seed of folds and bootstrap.")] = 0,
    intersect: Annotated[bool, typer.Option(help="Compare on the patients every backbone "
                                                 "has, when their patient sets differ.")]
    = False,
    perturbation: Annotated[str, typer.Option(help="Embeddings of this perturbation.")] = "none",
    site: Annotated[str | None, typer.Option(
        help="Only patients of these sites (comma-separated), e.g. CUIMC for a "
             "single-site analysis.")] = None,
    protocol: Annotated[str, typer.Option(
        help="cv (repeated stratified k-fold) or loso (leave-one-site-out): each site "
             "held out once, the probe (or Cox model) trained on the other sites, identical "
             "for both sides; one row per held-out site (DeLong for AUC, paired bootstrap "
             "otherwise, conditional on that site's fit), the pooled mean over sites "
             "(loso-z) and the worst site. subsampling: paired subsampling with the "
             "conservative Z (Nadeau-Bengio; mlr3inferr's ci.con_z): 15 subsamples testing "
             "n/folds patients give the estimate, 10 pairs of disjoint halves its variance; "
             "315 fits per backbone, no factor measured by simulation; NOT calibrated "
             "with the default probes (measured type-I 21-24 % at alpha 0.05 on exact "
             "nulls; see the README).")] = "cv",
    seed_reference: Annotated[str | None, typer.Option(
        help="Comma-separated backbones that are A's recipe(s) trained with another seed "
             "(e.g. dino_s1; for a family one per member: byol_s1,dino_s1,...). Adds the "
             "same paired comparison A vs them and says whether A - B exceeds "
             "seed-to-seed variation.")] = None,
    jobs: Annotated[int, typer.Option(
        help="Worker processes for --task all, one task each at a time (the numbers do not "
             "depend on it).", min=1)] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
    csv: Annotated[Path | None, typer.Option(help="Also write the tests table to this CSV.")]
    = None,
    store: StoreOption = None,
) -> None:
    """Paired comparison of A and B on identical folds and bootstrap resamples: each
    side's metric, the paired difference and the primary test (calibrated-t by
    default) with their 95 % intervals, next to the published procedures (Shapiro-chosen
    fold t/Wilcoxon, Nadeau-Bengio corrected t, DeLong for AUC, bootstrap), per pair and
    pooled over a family. Results go to the store (comparisons view; primary = true
    marks the default's rows).

    Example: neurofeat stats compare base dro --task cdkn2a --store S
    """
    from neurofeat.runs import (CLASSIFICATION_METRICS, TEST_CHOICES, PatientSetMismatch,
                                compare_run)
    from neurofeat.runs.compare import LOSO_TESTS, SUBSAMPLING_TESTS

    known = tuple(dict.fromkeys((*TEST_CHOICES, *LOSO_TESTS, *SUBSAMPLING_TESTS)))
    if test not in known:
        fail(f"--test must be one of {', '.join(known)}, got {test!r}")
    references = tuple(r.strip() for r in (seed_reference or "").split(",") if r.strip())
    if seed_reference is not None and not references:
        fail("--seed-reference needs at least one backbone name, e.g. --seed-reference dino_s1")
    metrics = tuple(m.strip() for m in metric.split(",") if m.strip())
    if not metrics or any(m not in CLASSIFICATION_METRICS for m in metrics):
        fail(f"unknown metric(s) in {metric!r}; use {', '.join(CLASSIFICATION_METRICS)}")
    opened = open_store(store)
    progress, on_start, on_step = progress_hooks(not as_json)
    with user_errors(PatientSetMismatch), progress:
        run = compare_run(opened, side_a, side_b, task, metrics=metrics, test=test,
                          n_repeats=repeats, n_splits=folds, n_boot=bootstrap, seed=seed,
                          intersect=intersect, perturbation=perturbation, site=site,
                          protocol=protocol, seed_reference=references, jobs=jobs,
                          on_start=on_start, on_split=on_step)
    if csv is not None:
        run.tests.to_csv(csv, index=False)
    if as_json:
        from neurofeat.runs import json_records

        typer.echo(json.dumps({"run_id": run.info.run_id, "params": run.params,
                               "tests": json_records(run.tests)}, indent=2))
        return
    _print_run(run)


def _print_comparison(result, title: str) -> None:
    summary = result.summary_frame()
    print_frame(_display(summary), title=title)
    if "estimand" in summary.columns and not summary.empty:
        estimands = list(dict.fromkeys(summary["estimand"]))
        if len(estimands) == 1:
            console().print(f"estimates, intervals and p refer to: {estimands[0]}")
        else:
            console().print("estimates, intervals and p refer to:")
            for estimand in estimands:
                console().print(f"  - {estimand}")
    warnings = sorted({w for w in summary.get("warning", []) if isinstance(w, str) and w})
    for warning in warnings:
        console().print(f"[yellow]{warning}[/yellow]")


def _print_run(run) -> None:
    protocol = run.params.get("protocol", "cv")
    how = {"loso": "leave-one-site-out, paired sites and resamples",
           "subsampling": "paired subsamples, conservative Z"}.get(
        protocol, "paired folds and resamples")
    for comparison in run.comparisons:
        data = comparison.data
        _print_comparison(comparison.result,
                          f"{run.side_a} vs {run.side_b} on {comparison.task.name} "
                          f"(n={data.patient_ids.size}, {how})")
        if comparison.reference is not None:
            _print_comparison(comparison.reference,
                              f"seed-noise reference: {run.side_a} vs the same recipe(s), "
                              f"other seed, on {comparison.task.name} (same patients, {how})")
        if any(data.dropped.values()):
            console().print(f"--intersect: compared on {data.patient_ids.size} shared "
                            f"patients (dropped {data.dropped})")
    for line in run.verdicts:
        console().print(f"[bold]{line}[/bold]")
    if len(run.comparisons) > 1:
        print_frame(run.adjusted(), title="adjusted across tasks (Holm, Benjamini-Hochberg)")
    for name, why in run.skipped:
        console().print(f"[yellow]skipped {name}[/yellow]: {why}")
    console().print(f"wrote run [bold]{run.info.run_id}[/bold] to {run.info.path}")


def _display(summary):
    """Compact terminal view of a summary frame: value (CI) strings, short p-values."""
    import pandas as pd

    def p(value):
        return "" if value != value else f"{value:.3g}"

    rows = []
    for r in summary.to_dict(orient="records"):
        row = {"metric": r["metric"]}
        if r.get("site", "all") != "all" or summary.get("site", pd.Series(["all"])).nunique() > 1:
            row["site"] = r["site"]
        row.update({
            "A": f"{r['a']} {r['estimate_a']:.3f} ({r['ci_a']})",
            "B": f"{r['b']} {r['estimate_b']:.3f} ({r['ci_b']})",
            "A-B (95% CI)": f"{r['diff']:+.3f} ({r['diff_ci']})",
            "test": f"{r['test']} p={p(r['p'])}",
            "corr-t p": p(r["p_corrected_t"]),
            "DeLong p": p(r.get("p_delong", float("nan"))),
        })
        rows.append(row)
    frame = pd.DataFrame(rows)
    # LOSO rows have neither a corrected t nor a repeat-averaged DeLong
    return frame.drop(columns=[c for c in ("corr-t p", "DeLong p")
                               if c in frame.columns and not frame[c].astype(bool).any()])


def register(app: typer.Typer) -> None:
    """Add ``neurofeat stats ...`` to *app*."""
    app.add_typer(stats_app, name="stats")
