"""The ``stats compare`` run: backbones or families A vs B on one task or all tasks.

Resolves the tasks and the pairs once, aligns every backbone on the same patients,
calls the paired machinery of :mod:`neurofeat.analysis.compare` (binary/continuous:
probe AUC/BA...; survival: Harrell's and Uno's C through
:mod:`neurofeat.analysis.survival.compare`), adjusts p-values across tasks (Holm, BH),
shapes the ``tests`` table and writes the run. The table returned is the table stored.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from neurofeat.analysis.compare import adjust_across, compare_probes, pair_backbones
from neurofeat.analysis.paired_tests import DEFAULT_TEST, TEST_CHOICES
from neurofeat.analysis.survival.compare import compare_survival_backbones
from neurofeat.runs.inputs import AlignedData, PatientSetMismatch, load_aligned, site_mask
from neurofeat.runs.tables import inference_columns, shape
from neurofeat.store import RunInfo, Store, StoreError, write_run
from neurofeat.tasks import Task, get_task, list_tasks

__all__ = ["CLASSIFICATION_METRICS", "TaskComparison", "CompareRun", "compare_run",
           "compare_task"]

#: Metrics ``stats compare`` accepts (spearman and mae apply to continuous tasks only).
CLASSIFICATION_METRICS: tuple[str, ...] = ("auc", "ba", "sensitivity", "specificity",
                                           "spearman", "mae")


@dataclass(frozen=True, eq=False)
class TaskComparison:
    """One task's comparison: the analysis result and the patients it ran on."""

    task: Task
    result: Any  # ComparisonResult or SurvivalComparison
    data: AlignedData


@dataclass(frozen=True, eq=False)
class CompareRun:
    """A finished ``stats compare`` run.

    Attributes
    ----------
    side_a, side_b : str
        As requested (backbones or families).
    pairs : tuple of (backbone_a, backbone_b)
    comparisons : tuple of TaskComparison
        The tasks that ran.
    skipped : tuple of (task, reason)
        Tasks of ``--task all`` that could not be compared.
    tests : DataFrame
        Exactly the stored ``tests`` table (comparisons view), Holm/BH adjusted.
    params : dict
    info : RunInfo or None
    """

    side_a: str
    side_b: str
    pairs: tuple[tuple[str, str], ...]
    comparisons: tuple[TaskComparison, ...]
    skipped: tuple[tuple[str, str], ...]
    tests: pd.DataFrame
    params: dict
    info: RunInfo | None

    def adjusted(self) -> pd.DataFrame:
        """Pooled-site rows of the primary test with their Holm/BH p-values."""
        tests = self.tests
        rows = tests[tests["primary"].astype(bool) & (tests["site"] == "all")]
        return rows[["task", "metric", "backbone_a", "backbone_b", "diff", "test", "p_value",
                     "p_holm", "p_bh"]].reset_index(drop=True)


def _metrics_for(task: Task, metrics: Sequence[str]) -> tuple[str, ...]:
    if task.kind == "binary":
        return tuple(m for m in metrics if m not in ("spearman", "mae"))
    return tuple(metrics)


def _join_provenance(data: AlignedData, members: Sequence[str], which: int) -> str:
    return ",".join(str(data.provenance[name][which]) for name in members)


def _provenance(tests: pd.DataFrame, data: AlignedData, pairs, side_a: str,
                side_b: str) -> dict[str, list[str]]:
    members_a = {a: (a,) for a, _ in pairs}
    members_b = {b: (b,) for _, b in pairs}
    members_a[side_a] = tuple(a for a, _ in pairs)
    members_b[side_b] = tuple(b for _, b in pairs)
    out = {}
    for side, members in (("a", members_a), ("b", members_b)):
        names = tests[f"backbone_{side}"]
        out[f"checkpoint_sha256_{side}"] = [
            _join_provenance(data, members.get(n, ()), 0) for n in names]
        out[f"preprocess_sha256_{side}"] = [
            _join_provenance(data, members.get(n, ()), 1) for n in names]
    return out


def compare_task(store: Store, side_a: str, side_b: str, task: Task,
                 pairs: Sequence[tuple[str, str]], *, metrics: Sequence[str] = ("auc", "ba"),
                 test: str = DEFAULT_TEST, n_repeats: int = 5, n_splits: int = 5,
                 n_boot: int = 2000, seed: int = 0, intersect: bool = False,
                 perturbation: str = "none", site: str | None = None,
                 on_split: Callable[[], None] | None = None,
                 on_start: Callable[[int], None] | None = None
                 ) -> tuple[TaskComparison, pd.DataFrame]:
    """Compare the pairs on one (resolved) task; the task's rows of the tests table.

    The rows carry provenance but not yet the across-task adjustment.
    """
    names = sorted({x for pair in pairs for x in pair})
    data = load_aligned(store, names, task, intersect=intersect, perturbation=perturbation)
    keep = site_mask(data.sites, site, task.name)
    if not keep.all():
        data = data.subset(keep)
    if on_start is not None:
        on_start(len(names) * n_splits * n_repeats)
    if task.kind == "survival":
        result = compare_survival_backbones(
            data.X, data.y, data.event, patient_ids=data.patient_ids, pairs=pairs,
            sites=data.sites, task=task.name, n_splits=n_splits, n_repeats=n_repeats,
            n_boot=n_boot, seed=seed, test=test, side_a=side_a, side_b=side_b,
            on_split=(lambda *_: on_split()) if on_split is not None else None)
    else:
        result = compare_probes(data.X, data.y, patient_ids=data.patient_ids, pairs=pairs,
                                task=task.name, kind=task.kind, threshold=task.threshold,
                                metrics=_metrics_for(task, metrics), n_splits=n_splits,
                                n_repeats=n_repeats, n_boot=n_boot, seed=seed, test=test,
                                side_a=side_a, side_b=side_b, on_split=on_split)
    tests = inference_columns(result.to_frame(), "stats-compare", "tests")
    constants = {"protocol": "cv", "perturbation": perturbation,
                 "cohort_sites": site or "all", "seed": seed, "comparison": "requested",
                 "held_out": None}
    if "tau" not in tests.columns:
        constants["tau"] = float("nan")
    tests = tests.assign(**_provenance(tests, data, pairs, side_a, side_b), **constants)
    return TaskComparison(task, result, data), tests


def compare_run(store: Store, side_a: str, side_b: str, task: str, *,
                metrics: Sequence[str] = ("auc", "ba"), test: str = DEFAULT_TEST,
                n_repeats: int = 5, n_splits: int = 5, n_boot: int = 2000, seed: int = 0,
                intersect: bool = False, perturbation: str = "none", site: str | None = None,
                write: bool = True, on_start: Callable[[int], None] | None = None,
                on_split: Callable[[], None] | None = None) -> CompareRun:
    """Compare A with B on ``task`` (or every task with ``task='all'``) and store the run.

    Parameters
    ----------
    store : Store
    side_a, side_b : str
        Backbones or families (``base`` = byol, dino, mae, moco; ``dro`` = their twins).
    task : str
        A task name, or ``'all'``: tasks that cannot be compared are skipped (with the
        reason) and p-values are adjusted across the tasks that ran.
    metrics : sequence of str
        From :data:`CLASSIFICATION_METRICS`; survival tasks always use Harrell's/Uno's C.
    test : str
        Primary test (see :data:`neurofeat.analysis.paired_tests.TEST_CHOICES`).
    write : bool
        Write the run (False: compute only).

    Raises
    ------
    ValueError
        Unknown task, metric, test or backbone; for one task, anything that prevents
        the comparison.
    PatientSetMismatch
        The backbones cover different patients (use ``intersect=True``).
    """
    if test not in TEST_CHOICES:
        raise ValueError(f"test must be one of {', '.join(TEST_CHOICES)}, got {test!r}")
    metrics = tuple(metrics)
    unknown = [m for m in metrics if m not in CLASSIFICATION_METRICS]
    if unknown or not metrics:
        raise ValueError(f"unknown metric(s) {unknown or list(metrics)}; use "
                         f"{', '.join(CLASSIFICATION_METRICS)}")
    tasks = list_tasks() if task == "all" else [get_task(task)]
    pairs = tuple(pair_backbones(side_a, side_b, store.backbones()))
    comparisons, frames, skipped = [], [], []
    for task_def in tasks:
        try:
            comparison, rows = compare_task(
                store, side_a, side_b, task_def, pairs, metrics=metrics, test=test,
                n_repeats=n_repeats, n_splits=n_splits, n_boot=n_boot, seed=seed,
                intersect=intersect, perturbation=perturbation, site=site,
                on_split=on_split, on_start=on_start)
        except PatientSetMismatch:
            raise
        except (ValueError, StoreError) as error:  # FoldError is a ValueError
            if len(tasks) == 1:
                raise
            skipped.append((task_def.name, str(error)))
            continue
        comparisons.append(comparison)
        frames.append(rows)
    if not frames:
        raise ValueError("no task could be compared:\n"
                         + "\n".join(f"  {name}: {why}" for name, why in skipped))
    tests = pd.concat(frames, ignore_index=True)
    # Holm/BH across tasks; a single survival task keeps its across-site adjustment.
    if len(frames) > 1 or comparisons[0].task.kind != "survival":
        tests = adjust_across(tests, across="task")
    tests = shape(tests, "stats-compare", "tests")
    params = {"side_a": side_a, "side_b": side_b, "pairs": [list(p) for p in pairs],
              "tasks": [c.task.name for c in comparisons], "metrics": list(metrics),
              "test": test, "repeats": n_repeats, "folds": n_splits, "bootstrap": n_boot,
              "seed": seed, "intersect": intersect, "perturbation": perturbation,
              "site": site or "all", "skipped": dict(skipped)}
    info = write_run(store, "stats-compare", {"tests": tests}, params=params) if write else None
    return CompareRun(side_a, side_b, pairs, tuple(comparisons), tuple(skipped), tests,
                      params, info)
