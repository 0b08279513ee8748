"""The ``stats compare`` run: backbones or families A vs B on one task or all tasks.

Resolves the tasks and the pairs once, aligns every backbone on the same patients,
calls the paired machinery of :mod:`neurofeat.analysis.compare` (binary/continuous:
probe AUC/BA...; survival: Harrell's and Uno's C through
:mod:`neurofeat.analysis.survival.compare`; ``protocol='loso'``:
:mod:`neurofeat.analysis.loso`; ``protocol='subsampling'``:
:mod:`neurofeat.analysis.subsampling`), optionally the seed-noise reference (A vs its recipe
trained with another seed, on the same patients and folds), adjusts p-values across
tasks (Holm, BH), shapes the ``tests`` table and writes the run. The table returned is
the table stored.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from neurofeat.analysis.compare import adjust_across, compare_probes
from neurofeat.analysis.pairing import pair_backbones, seed_noise_verdict, seed_reference_pairs
from neurofeat.analysis.loso import LOSO_TESTS, compare_survival_loso
from neurofeat.analysis.paired_tests import DEFAULT_TEST, TEST_CHOICES
from neurofeat.analysis.plots_report import forest_plot
from neurofeat.analysis.subsampling import (SUBSAMPLING_TESTS, SubsamplingDesign,
                                            subsample_probes, subsample_survival)
from neurofeat.analysis.survival.compare import compare_survival_backbones
from neurofeat.runs.inputs import AlignedData, PatientSetMismatch, load_aligned, site_mask
from neurofeat.runs.tables import inference_columns, shape
from neurofeat.store import RunInfo, Store, StoreError, write_run
from neurofeat.tasks import Task, get_task, list_tasks

__all__ = ["CLASSIFICATION_METRICS", "LOSO_TESTS", "SUBSAMPLING_TESTS", "PROTOCOLS",
           "PROTOCOL_TESTS", "SEED_REFERENCE", "TaskComparison", "CompareRun", "compare_run",
           "compare_task"]

#: Metrics ``stats compare`` accepts (spearman and mae apply to continuous tasks only).
CLASSIFICATION_METRICS: tuple[str, ...] = ("auc", "ba", "sensitivity", "specificity",
                                           "spearman", "mae")


#: ``--protocol`` values of ``stats compare``.
PROTOCOLS: tuple[str, ...] = ("cv", "loso", "subsampling")

#: Tests allowed with each protocol.
PROTOCOL_TESTS: dict[str, tuple[str, ...]] = {"cv": TEST_CHOICES, "loso": LOSO_TESTS,
                                              "subsampling": SUBSAMPLING_TESTS}

#: Label of the seed-noise reference side (``backbone_b`` of its family row, and the
#: ``comparison`` column of its rows).
SEED_REFERENCE = "seed-reference"


@dataclass(frozen=True, eq=False)
class TaskComparison:
    """One task's comparison: the analysis result and the patients it ran on.

    ``reference`` is the seed-noise reference (A vs the same recipe with another seed)
    on the same patients and folds, or None.
    """

    task: Task
    result: Any  # ComparisonResult, LosoComparison, SurvivalComparison, SubsamplingComparison
    data: AlignedData
    reference: Any = None


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
        Exactly the stored ``tests`` table (comparisons view), Holm/BH adjusted; rows of
        the seed-noise reference have ``comparison = 'seed-reference'``.
    params : dict
    info : RunInfo or None
    verdicts : tuple of str
        With a seed reference: one line per task x metric saying whether A - B exceeds
        seed-to-seed variation.
    """

    side_a: str
    side_b: str
    pairs: tuple[tuple[str, str], ...]
    comparisons: tuple[TaskComparison, ...]
    skipped: tuple[tuple[str, str], ...]
    tests: pd.DataFrame
    params: dict
    info: RunInfo | None
    verdicts: tuple[str, ...] = ()

    def adjusted(self) -> pd.DataFrame:
        """Pooled-site rows of the primary test with their Holm/BH p-values."""
        tests = self.tests
        rows = tests[tests["primary"].astype(bool) & (tests["site"] == "all")
                     & (tests["comparison"] == "requested")]
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


def _compare(data: AlignedData, task: Task, pairs, side_a: str, side_b: str, *,
             protocol: str, metrics, test, n_repeats, n_splits, n_boot, seed, on_split):
    progress = (lambda *_: on_split()) if on_split is not None else None
    if protocol == "subsampling":
        design = SubsamplingDesign(n_splits=n_splits)
        if task.kind == "survival":
            return subsample_survival(
                data.X, data.y, data.event, patient_ids=data.patient_ids, pairs=pairs,
                task=task.name, design=design, seed=seed, side_a=side_a, side_b=side_b,
                on_split=progress)
        return subsample_probes(
            data.X, data.y, patient_ids=data.patient_ids, pairs=pairs, task=task.name,
            kind=task.kind, threshold=task.threshold, metrics=_metrics_for(task, metrics),
            design=design, seed=seed, side_a=side_a, side_b=side_b, on_split=on_split)
    if task.kind == "survival" and protocol == "loso":
        return compare_survival_loso(
            data.X, data.y, data.event, patient_ids=data.patient_ids, pairs=pairs,
            sites=data.sites, task=task.name, n_boot=n_boot, seed=seed, test=test,
            side_a=side_a, side_b=side_b, on_split=progress)
    if task.kind == "survival":
        return compare_survival_backbones(
            data.X, data.y, data.event, patient_ids=data.patient_ids, pairs=pairs,
            sites=data.sites, task=task.name, n_splits=n_splits, n_repeats=n_repeats,
            n_boot=n_boot, seed=seed, test=test, side_a=side_a, side_b=side_b,
            on_split=progress)
    return compare_probes(data.X, data.y, patient_ids=data.patient_ids, pairs=pairs,
                          task=task.name, kind=task.kind, threshold=task.threshold,
                          metrics=_metrics_for(task, metrics), n_splits=n_splits,
                          n_repeats=n_repeats, n_boot=n_boot, seed=seed, test=test,
                          side_a=side_a, side_b=side_b, on_split=on_split,
                          protocol=protocol, sites=data.sites)


def compare_task(store: Store, side_a: str, side_b: str, task: Task,
                 pairs: Sequence[tuple[str, str]], *, metrics: Sequence[str] = ("auc", "ba"),
                 test: str = DEFAULT_TEST, n_repeats: int = 5, n_splits: int = 5,
                 n_boot: int = 2000, seed: int = 0, intersect: bool = False,
                 perturbation: str = "none", site: str | None = None,
                 protocol: str = "cv",
                 reference_pairs: Sequence[tuple[str, str]] = (),
                 on_split: Callable[[], None] | None = None,
                 on_start: Callable[[int], None] | None = None
                 ) -> tuple[TaskComparison, pd.DataFrame]:
    """Compare the pairs on one (resolved) task; the task's rows of the tests table.

    With ``reference_pairs`` (the seed-noise reference) every backbone of both
    comparisons is aligned on the same patients, so both use the same folds. The rows
    carry provenance but not yet the across-task adjustment.
    """
    names = sorted({x for pair in (*pairs, *reference_pairs) for x in pair})
    data = load_aligned(store, names, task, intersect=intersect, perturbation=perturbation)
    keep = site_mask(data.sites, site, task.name)
    if not keep.all():
        data = data.subset(keep)
    if on_start is not None:
        n_fits = {"cv": n_splits * n_repeats, "loso": len(set(data.sites.tolist())),
                  "subsampling": SubsamplingDesign(n_splits=n_splits).n_subsamples}[protocol]
        n_models = len({x for p in pairs for x in p}) + \
            len({x for p in reference_pairs for x in p})
        on_start(n_models * n_fits)
    common = dict(protocol=protocol, metrics=metrics, test=test, n_repeats=n_repeats,
                  n_splits=n_splits, n_boot=n_boot, seed=seed, on_split=on_split)
    result = _compare(data, task, pairs, side_a, side_b, **common)
    reference = None
    frames = [_rows(result, data, pairs, side_a, side_b, "requested")]
    if reference_pairs:
        reference = _compare(data, task, reference_pairs, side_a, SEED_REFERENCE, **common)
        frames.append(_rows(reference, data, reference_pairs, side_a, SEED_REFERENCE,
                            SEED_REFERENCE))
    tests = pd.concat(frames, ignore_index=True)
    constants = {"protocol": protocol, "perturbation": perturbation,
                 "cohort_sites": site or "all", "seed": seed}
    if "tau" not in tests.columns:
        constants["tau"] = float("nan")
    return TaskComparison(task, result, data, reference), tests.assign(**constants)


def _rows(result, data: AlignedData, pairs, side_a: str, side_b: str,
          comparison: str) -> pd.DataFrame:
    """One comparison's rows: inference columns, provenance, comparison and held_out."""
    tests = inference_columns(result.to_frame(), "stats-compare", "tests")
    if "held_out" not in tests.columns:
        tests["held_out"] = None
    return tests.assign(**_provenance(tests, data, pairs, side_a, side_b),
                        comparison=comparison)


def _verdicts(tests: pd.DataFrame, side_a: str, side_b: str) -> tuple[str, ...]:
    """One line per task x metric: A - B against A - seed reference (primary rows)."""
    primary = tests[tests["primary"].astype(bool) & (tests["site"] == "all")]
    lines = []
    for (task, metric), group in primary.groupby(["task", "metric"], sort=False):
        main = group[group["comparison"] == "requested"]
        ref = group[group["comparison"] == SEED_REFERENCE]
        if main.empty or ref.empty:
            continue
        # the family row when there is one (the pooled comparison), else the one pair
        pick_main = main[main["pooled"].astype(bool)] if main["pooled"].any() else main
        pick_ref = ref[ref["pooled"].astype(bool)] if ref["pooled"].any() else ref
        m, r = pick_main.iloc[0], pick_ref.iloc[0]
        _, line = seed_noise_verdict(
            f"{task} {metric} ({side_a} vs {side_b})", float(m["diff"]),
            (float(m["diff_ci_low"]), float(m["diff_ci_high"])), float(r["diff"]),
            (float(r["diff_ci_low"]), float(r["diff_ci_high"])))
        lines.append(line.replace("A-seed", f"{side_a}-seed").replace("A-B", f"{side_a}-{side_b}"))
    return tuple(lines)


def compare_run(store: Store, side_a: str, side_b: str, task: str, *,
                metrics: Sequence[str] = ("auc", "ba"), test: str = DEFAULT_TEST,
                n_repeats: int = 5, n_splits: int = 5, n_boot: int = 2000, seed: int = 0,
                intersect: bool = False, perturbation: str = "none", site: str | None = None,
                protocol: str = "cv", seed_reference: Sequence[str] = (),
                write: bool = True, figures: bool = True, jobs: int = 1,
                on_start: Callable[[int], None] | None = None,
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
        Primary test (see :data:`neurofeat.analysis.paired_tests.TEST_CHOICES`; with
        ``protocol='loso'`` one of :data:`neurofeat.analysis.loso.LOSO_TESTS`, with
        ``'subsampling'`` of :data:`~neurofeat.analysis.subsampling.SUBSAMPLING_TESTS`).
    protocol : {'cv', 'loso', 'subsampling'}
        Repeated stratified k-fold, or leave-one-site-out (binary and continuous tasks:
        one row per held-out site, the pooled ``loso-z`` row and the worst site; survival
        tasks: Harrell's and Uno's C the same way; see :mod:`neurofeat.analysis.loso`),
        or paired subsampling with the conservative Z (mlr3inferr's ``ci.con_z``: 15
        subsamples testing n / ``n_splits`` patients, the variance from 10 pairs of
        disjoint halves; 315 fits per backbone; ``n_repeats`` does not apply; see
        :mod:`neurofeat.analysis.subsampling`).
    seed_reference : sequence of str
        Backbones that are side A's recipe(s) trained with another seed: the same paired
        comparison A vs them is added (``comparison = 'seed-reference'``) with a verdict
        line per task x metric on whether A - B exceeds seed-to-seed variation.
    write : bool
        Write the run (False: compute only).
    figures : bool
        Draw the ``forest`` plot of the primary paired differences (every task, metric
        and, with LOSO, held-out site) and store it with the run as PNG and SVG.
    jobs : int
        Worker processes for ``task='all'``: each compares one task at a time (progress
        then counts tasks, not fits). The stored numbers are the same for every ``jobs``.

    Raises
    ------
    ValueError
        Unknown task, metric, test or backbone; for one task, anything that prevents
        the comparison.
    PatientSetMismatch
        The backbones cover different patients (use ``intersect=True``).
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"--protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    allowed = PROTOCOL_TESTS[protocol]
    if test not in allowed:
        raise ValueError(f"test must be one of {', '.join(allowed)} with --protocol {protocol}, "
                         f"got {test!r}")
    metrics = tuple(metrics)
    unknown = [m for m in metrics if m not in CLASSIFICATION_METRICS]
    if unknown or not metrics:
        raise ValueError(f"unknown metric(s) {unknown or list(metrics)}; use "
                         f"{', '.join(CLASSIFICATION_METRICS)}")
    tasks = list_tasks() if task == "all" else [get_task(task)]
    known = store.backbones()
    pairs = tuple(pair_backbones(side_a, side_b, known))
    reference_pairs = tuple(seed_reference_pairs(side_a, seed_reference, known)) \
        if seed_reference else ()
    if jobs < 1:
        raise ValueError(f"jobs must be 1 or more, got {jobs}")
    options = dict(metrics=metrics, test=test, n_repeats=n_repeats, n_splits=n_splits,
                   n_boot=n_boot, seed=seed, intersect=intersect, perturbation=perturbation,
                   site=site, protocol=protocol, reference_pairs=reference_pairs)
    comparisons, frames, skipped = [], [], []
    for task_def, outcome in _each_task(store, side_a, side_b, tasks, pairs, options, jobs=jobs,
                                        on_start=on_start, on_split=on_split):
        if isinstance(outcome, PatientSetMismatch):
            raise outcome
        if isinstance(outcome, (ValueError, StoreError)):  # FoldError is a ValueError
            if len(tasks) == 1:
                raise outcome
            skipped.append((task_def.name, str(outcome)))
            continue
        comparison, rows = outcome
        comparisons.append(comparison)
        frames.append(rows)
    if not frames:
        raise ValueError("no task could be compared:\n"
                         + "\n".join(f"  {name}: {why}" for name, why in skipped))
    tests = pd.concat(frames, ignore_index=True)
    tests = _adjust(tests, comparisons, protocol)
    tests = shape(tests, "stats-compare", "tests")
    verdicts = _verdicts(tests, side_a, side_b) if reference_pairs else ()
    params = {"side_a": side_a, "side_b": side_b, "pairs": [list(p) for p in pairs],
              "tasks": [c.task.name for c in comparisons], "metrics": list(metrics),
              "test": test, "repeats": n_repeats, "folds": n_splits, "bootstrap": n_boot,
              "seed": seed, "intersect": intersect, "perturbation": perturbation,
              "site": site or "all", "skipped": dict(skipped), "protocol": protocol,
              "seed_reference": list(seed_reference),
              "reference_pairs": [list(p) for p in reference_pairs],
              "seed_reference_verdicts": list(verdicts), "jobs": jobs}
    drawn = {"forest": forest_plot(tests, title=f"stats compare {side_a} vs {side_b} ({protocol})")} \
        if figures and write else {}
    info = write_run(store, "stats-compare", {"tests": tests}, params=params,
                     figures=drawn) if write else None
    return CompareRun(side_a, side_b, pairs, tuple(comparisons), tuple(skipped), tests,
                      params, info, verdicts)


def _task_outcome(store: Store, side_a: str, side_b: str, task_def: Task, pairs,
                  options: dict, on_start=None, on_split=None):
    """``compare_task``'s result, or the user error that stops this task (returned, so a
    worker process hands it back instead of dying)."""
    try:
        return compare_task(store, side_a, side_b, task_def, pairs, on_start=on_start,
                            on_split=on_split, **options)
    except (ValueError, StoreError) as error:  # PatientSetMismatch and FoldError included
        return error


def _each_task(store: Store, side_a: str, side_b: str, tasks: Sequence[Task], pairs,
               options: dict, *, jobs: int, on_start, on_split):
    """``(task, outcome)`` in task order: one process with per-split progress, or ``jobs``
    worker processes, one task each at a time, with per-task progress.

    Workers are spawned (not forked: the caller may hold torch's OpenMP threads) and use
    one BLAS thread each; every task's folds and bootstrap come from ``seed`` alone, so
    the numbers do not depend on ``jobs``.
    """
    if jobs == 1 or len(tasks) == 1:
        for task_def in tasks:
            yield task_def, _task_outcome(store, side_a, side_b, task_def, pairs, options,
                                          on_start=on_start, on_split=on_split)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    if on_start is not None:
        on_start(len(tasks))
    with ProcessPoolExecutor(max_workers=min(jobs, len(tasks)),
                             mp_context=multiprocessing.get_context("spawn"),
                             initializer=_single_thread_worker) as pool:
        futures = [pool.submit(_task_outcome, store, side_a, side_b, task_def, pairs, options)
                   for task_def in tasks]
        for task_def, future in zip(tasks, futures):
            outcome = future.result()
            if on_split is not None:
                on_split()
            yield task_def, outcome


def _single_thread_worker() -> None:
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1)


def _adjust(tests: pd.DataFrame, comparisons, protocol: str) -> pd.DataFrame:
    """Holm/BH: across tasks (several tasks, or one probe task under CV); a single survival
    task keeps its across-site adjustment; a single LOSO task adjusts its held-out-site
    rows across sites (pooled and worst rows keep their p). Each comparison (requested,
    seed reference) is adjusted on its own."""
    parts = []
    for _, part in tests.groupby("comparison", sort=False):
        if len(comparisons) > 1:
            part = adjust_across(part, across="task")
        elif protocol == "loso":
            per_site = part["site"].ne("all") & part["site"].ne("worst")
            part = part.copy()
            part["p_holm"] = part["p_value"]
            part["p_bh"] = part["p_value"]
            if per_site.any():
                adjusted = adjust_across(part[per_site], across="site")
                part.loc[per_site, ["p_holm", "p_bh"]] = adjusted[["p_holm", "p_bh"]]
        elif comparisons[0].task.kind != "survival":
            part = adjust_across(part, across="task")
        parts.append(part)
    return pd.concat(parts).sort_index()
