"""CLI: ``neurofeat stats compare`` — paired comparison of backbones or families.

Dispatch on the task's kind happens in
:func:`neurofeat.cli.probe_runner.compare_on_store`: binary/continuous tasks compare
probe AUC/balanced accuracy (DeLong for AUC), survival tasks compare c-indices through
the same paired machinery (:mod:`neurofeat.analysis.survival.compare`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from neurofeat.cli.common import StoreOption, console, fail, open_store, print_frame, user_errors

__all__ = ["register", "compare"]

stats_app = typer.Typer(help="Statistics across backbones: paired comparisons.",
                        no_args_is_help=True)

_CLASSIFICATION_METRICS = ("auc", "ba", "sensitivity", "specificity", "spearman", "mae")


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
    test: Annotated[str, typer.Option(help="Primary test: auto (Shapiro-Wilk picks paired t "
                                           "or Wilcoxon), wilcoxon, ttest, or corrected-t "
                                           "(Nadeau-Bengio). All are stored.")] = "auto",
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
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
    csv: Annotated[Path | None, typer.Option(help="Also write the tests table to this CSV.")]
    = None,
    store: StoreOption = None,
) -> None:
    """Paired comparison of A and B on identical folds and bootstrap resamples: each
    side's metric with CI, the paired difference with CI, DeLong for AUC, Wilcoxon or
    paired t on fold differences (chosen by Shapiro-Wilk) and the Nadeau-Bengio
    corrected t-test; per pair and pooled over a family. Results go to the store
    (comparisons view).

    Example: neurofeat stats compare base dro --task cdkn2a --store S
    """
    import pandas as pd

    from neurofeat.analysis.compare import adjust_across
    from neurofeat.analysis.paired_tests import TEST_CHOICES
    from neurofeat.cli.probe import progress_bar
    from neurofeat.cli.probe_runner import PatientSetMismatch, compare_on_store
    from neurofeat.store import write_run
    from neurofeat.tasks import get_task, list_tasks

    if test not in TEST_CHOICES:
        fail(f"--test must be one of {', '.join(TEST_CHOICES)}, got {test!r}")
    metrics = tuple(m.strip() for m in metric.split(",") if m.strip())
    unknown = [m for m in metrics if m not in _CLASSIFICATION_METRICS]
    if unknown or not metrics:
        fail(f"unknown metric(s) {unknown or metric!r}; use {', '.join(_CLASSIFICATION_METRICS)}")
    opened = open_store(store)
    with user_errors():
        if task == "all":
            task_names = [t.name for t in list_tasks()]
        else:
            task_names = [get_task(task).name]

    from neurofeat.analysis.compare import pair_backbones
    from neurofeat.store import StoreError

    with user_errors():
        pair_backbones(side_a, side_b, opened.backbones())  # unknown names fail fast

    results, frames, skipped = [], [], []
    progress, start, advance = progress_bar(not as_json)
    with progress:
        for name in task_names:
            kind = get_task(name).kind
            task_metrics = metrics if kind != "binary" else tuple(
                m for m in metrics if m not in ("spearman", "mae"))
            try:
                result, tests, data = compare_on_store(
                    opened, side_a, side_b, name, metrics=task_metrics, test=test,
                    n_repeats=repeats, n_splits=folds, n_boot=bootstrap, seed=seed,
                    intersect=intersect, perturbation=perturbation, site=site,
                    on_split=advance, on_start=start)
            except PatientSetMismatch as error:
                fail(str(error))
            except (ValueError, StoreError) as error:  # FoldError is a ValueError
                if len(task_names) == 1:
                    fail(str(error))
                skipped.append((name, str(error)))
                continue
            results.append((name, result, data))
            frames.append(tests)
    if not frames:
        fail("no task could be compared:\n" + "\n".join(f"  {n}: {why}" for n, why in skipped))
    tests = pd.concat(frames, ignore_index=True)
    # Holm/BH across tasks (one task: unchanged); survival tables already carry
    # their across-site adjustment, which is kept when only one task ran.
    if len(frames) > 1 or "tau" not in tests.columns:
        tests = adjust_across(tests, across="task")
    params = {"side_a": side_a, "side_b": side_b, "tasks": [n for n, _, _ in results],
              "metrics": list(metrics), "test": test, "repeats": repeats, "folds": folds,
              "bootstrap": bootstrap, "seed": seed, "intersect": intersect,
              "perturbation": perturbation, "site": site or "all",
              "skipped": {n: why for n, why in skipped}}
    with user_errors():
        info = write_run(opened, "stats-compare", {"tests": tests}, params=params)
    if csv is not None:
        tests.to_csv(csv, index=False)
    if as_json:
        from neurofeat.analysis.protocols import json_records

        typer.echo(json.dumps({"run_id": info.run_id, "params": params,
                               "tests": json_records(tests)}, indent=2))
        return
    for name, result, data in results:
        summary = _display(result.summary_frame())
        print_frame(summary, title=f"{side_a} vs {side_b} on {name} (n={data.patient_ids.size}"
                                   f", paired folds and resamples)")
        if any(data.dropped.values()):
            console().print(f"--intersect: compared on {data.patient_ids.size} shared patients "
                            f"(dropped {data.dropped})")
    if len(results) > 1:
        primary = tests[tests["test"].isin(["corrected-t"] if test == "corrected-t"
                                           else ["wilcoxon", "ttest"])]
        cols = ["task", "metric", "backbone_a", "backbone_b", "diff", "test", "p_value",
                "p_holm", "p_bh"]
        print_frame(primary[primary["site"] == "all"][cols],
                    title="adjusted across tasks (Holm, Benjamini-Hochberg)")
    for name, why in skipped:
        console().print(f"[yellow]skipped {name}[/yellow]: {why}")
    console().print(f"wrote run [bold]{info.run_id}[/bold] to {info.path}")


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
    return pd.DataFrame(rows)


def register(app: typer.Typer) -> None:
    """Add ``neurofeat stats ...`` to *app*."""
    app.add_typer(stats_app, name="stats")
