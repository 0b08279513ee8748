"""Store side of `neurofeat probe` and `neurofeat stats compare`.

Reads aligned (X, y) for one or more backbones from the store, calls the pure
functions of :mod:`neurofeat.analysis`, and shapes their output into the store's
result tables (``metrics`` -> ``results`` view, ``tests`` -> ``comparisons`` view).
Tests call these functions directly; the Typer commands only parse options and print.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "PatientSetMismatch",
    "AlignedData",
    "load_aligned",
    "probe_on_store",
    "compare_on_store",
    "probe_results_table",
]


class PatientSetMismatch(ValueError):
    """Backbones to compare cover different patients."""


@dataclass(frozen=True, eq=False)
class AlignedData:
    """Embeddings of several backbones on the same patients (rows sorted by patient_id)."""

    task: Any
    patient_ids: np.ndarray
    sites: np.ndarray
    y: np.ndarray
    event: np.ndarray | None
    X: dict[str, np.ndarray]
    provenance: dict[str, tuple[str | None, str | None]]
    dropped: dict[str, int] = field(default_factory=dict)


def load_aligned(store: Any, backbones: Sequence[str], task: Any, *, intersect: bool = False,
                 perturbation: str = "none") -> AlignedData:
    """Read every backbone for ``task`` and align them on patients.

    Raises
    ------
    PatientSetMismatch
        When the backbones cover different patients and ``intersect`` is False; says
        how many patients each side lacks (with examples) and suggests ``--intersect``.
    """
    from neurofeat.store import read_xy

    datas = {b: read_xy(store, b, task, perturbation=perturbation) for b in backbones}
    first = datas[backbones[0]]
    common = set(first.patient_ids)
    for data in datas.values():
        common &= set(data.patient_ids)
    mismatched = [(b, d) for b, d in datas.items() if len(d.patient_ids) != len(common)]
    if mismatched and not intersect:
        parts = []
        union = set().union(*(set(d.patient_ids) for d in datas.values()))
        for b, d in datas.items():
            missing = sorted(union - set(d.patient_ids))
            if missing:
                parts.append(f"{b} lacks {len(missing)} (e.g. {', '.join(missing[:3])})")
        complete = [b for b, d in datas.items() if len(d.patient_ids) == len(union)]
        if complete:
            parts.append(f"{', '.join(complete)} lack{'s' if len(complete) == 1 else ''} none")
        raise PatientSetMismatch(
            f"the backbones cover different patients of task '{first.task.name}': "
            + "; ".join(parts) + f". Extract the missing patients, or rerun with --intersect "
            f"to compare on the {len(common)} patients all of them have.")
    keep = np.array(sorted(common))
    if keep.size == 0:
        raise ValueError(f"no labelled patient of task '{first.task.name}' has embeddings "
                         f"for all of {', '.join(backbones)}")
    X = {}
    dropped = {}
    for b, d in datas.items():
        pos = pd.Index(d.patient_ids).get_indexer(keep)
        X[b] = d.X[pos]
        _check_finite(X[b], keep, b)
        dropped[b] = int(len(d.patient_ids) - keep.size)
    pos = pd.Index(first.patient_ids).get_indexer(keep)
    return AlignedData(
        task=first.task, patient_ids=keep, sites=first.sites[pos], y=first.y[pos],
        event=None if first.event is None else first.event[pos], X=X,
        provenance={b: (d.checkpoint_sha256, d.preprocess_sha256) for b, d in datas.items()},
        dropped=dropped)


def _check_finite(X: np.ndarray, patient_ids: np.ndarray, backbone: str) -> None:
    """Refuse embeddings with NaN/inf, naming the patients."""
    bad = ~np.isfinite(X).all(axis=1)
    if bad.any():
        ids = patient_ids[bad]
        raise ValueError(f"backbone '{backbone}': {int(bad.sum())} embedding(s) contain NaN or "
                         f"inf (patients {', '.join(ids[:5])}{'...' if ids.size > 5 else ''}); "
                         "re-extract them with --replace, or drop them from the store")


def _restrict_sites(patient_ids, sites, site_filter, task_name):
    """Row mask for ``--site`` (comma-separated site names; None = all)."""
    if not site_filter:
        return np.ones(len(patient_ids), bool)
    wanted = [x.strip() for x in site_filter.split(",") if x.strip()]
    known = sorted(set(np.asarray(sites).tolist()))
    unknown = [w for w in wanted if w not in known]
    if unknown:
        import difflib

        guess = difflib.get_close_matches(unknown[0], known, n=1, cutoff=0.5)
        hint = f" Did you mean '{guess[0]}'?" if guess else ""
        raise ValueError(f"site(s) {unknown} have no patient of task '{task_name}'.{hint} "
                         f"Sites: {', '.join(known)}.")
    return np.isin(sites, wanted)


def probe_results_table(result: Any, *, perturbation: str, seed: int,
                        checkpoint_sha256: str | None,
                        preprocess_sha256: str | None) -> pd.DataFrame:
    """The ``metrics`` table of a probe run in the ``results`` view's long format."""
    frame = result.metrics.copy()
    frame.insert(0, "command", "probe")
    frame.insert(1, "backbone", result.backbone)
    frame.insert(2, "perturbation", perturbation)
    frame.insert(3, "task", result.task)
    frame.insert(4, "protocol", result.protocol)
    frame["seed"] = seed
    frame["checkpoint_sha256"] = checkpoint_sha256
    frame["preprocess_sha256"] = preprocess_sha256
    return frame


def probe_on_store(store: Any, backbone: str, task_name: str, *, protocol: str = "cv",
                   n_repeats: int = 5, n_splits: int = 5, n_boot: int = 2000, seed: int = 0,
                   fractions: Sequence[float] | None = None, knn: bool = True,
                   knn_neighbors: int = 15, perturbation: str = "none", write: bool = True,
                   site: str | None = None,
                   on_split: Callable[[], None] | None = None,
                   on_start: Callable[[int], None] | None = None) -> tuple[Any, Any]:
    """Run the probe of one backbone on one task and write the run to the store.

    Returns
    -------
    (ProbeResult, RunInfo or None)
    """
    from neurofeat.analysis.protocols import DEFAULT_FRACTIONS, make_plan, run_probe
    from neurofeat.store import read_xy, write_run
    from neurofeat.tasks import get_task

    task = get_task(task_name)
    if task.kind == "survival":
        raise ValueError(f"task '{task.name}' is a survival task; use `neurofeat survival "
                         f"--backbone {backbone} --task {task.name}`")
    data = read_xy(store, backbone, task, perturbation=perturbation)
    _check_finite(data.X, data.patient_ids, backbone)
    keep = _restrict_sites(data.patient_ids, data.sites, site, task.name)
    if not keep.all():
        from dataclasses import replace

        data = replace(data, X=data.X[keep], y=data.y[keep], patient_ids=data.patient_ids[keep],
                       sites=data.sites[keep])
    if data.n == 0:
        raise ValueError(f"no patient of task '{task.name}' has both a label and an embedding "
                         f"of backbone '{backbone}'")
    fractions = DEFAULT_FRACTIONS if fractions is None else tuple(fractions)
    if on_start is not None:
        labels = data.y_binary.astype(bool)
        plan = make_plan(protocol, data.patient_ids, labels, data.sites, task=task.name,
                         n_splits=n_splits, n_repeats=n_repeats, seed=seed)
        n_splits_total = sum(1 for _ in plan.splits())
        runs = 1 + int(knn) + (len([f for f in fractions if f < 1]) if protocol == "cv" else 0)
        on_start(n_splits_total * runs)
    result = run_probe(data.X, data.y, patient_ids=data.patient_ids, sites=data.sites,
                       task=task.name, kind=task.kind, threshold=task.threshold,
                       backbone=backbone, protocol=protocol, n_splits=n_splits,
                       n_repeats=n_repeats, n_boot=n_boot, seed=seed, fractions=fractions,
                       knn=knn, knn_neighbors=knn_neighbors, on_split=on_split)
    info = None
    if write:
        metrics = probe_results_table(result, perturbation=perturbation, seed=seed,
                                      checkpoint_sha256=data.checkpoint_sha256,
                                      preprocess_sha256=data.preprocess_sha256)
        metrics["cohort_sites"] = site or "all"
        predictions = result.predictions.assign(backbone=backbone, task=task.name)
        params = dict(result.params, backbone=backbone, task=task.name, site=site or "all",
                      perturbation=perturbation, n_patients=data.n,
                      n_missing_embedding=data.n_missing_embedding,
                      checkpoint_sha256=data.checkpoint_sha256,
                      preprocess_sha256=data.preprocess_sha256)
        info = write_run(store, "probe", {"metrics": metrics, "folds": result.folds,
                                          "predictions": predictions,
                                          "fitted": result.fitted}, params=params)
    return result, info


def _provenance_columns(frame: pd.DataFrame, data: AlignedData, pairs, side_a: str,
                        side_b: str, seed: int) -> pd.DataFrame:
    frame = frame.copy()

    def join(names, which):
        return ",".join(str(data.provenance[n][which]) for n in names)

    members_a = {a: (a,) for a, _ in pairs}
    members_b = {b: (b,) for _, b in pairs}
    members_a[side_a] = tuple(a for a, _ in pairs)
    members_b[side_b] = tuple(b for _, b in pairs)
    frame["checkpoint_sha256_a"] = [join(members_a.get(a, ()), 0) for a in frame["backbone_a"]]
    frame["checkpoint_sha256_b"] = [join(members_b.get(b, ()), 0) for b in frame["backbone_b"]]
    frame["preprocess_sha256_a"] = [join(members_a.get(a, ()), 1) for a in frame["backbone_a"]]
    frame["preprocess_sha256_b"] = [join(members_b.get(b, ()), 1) for b in frame["backbone_b"]]
    frame["seed"] = seed
    return frame


def compare_on_store(store: Any, side_a: str, side_b: str, task_name: str, *,
                     metrics: Sequence[str] = ("auc", "ba"), test: str = "auto",
                     n_repeats: int = 5, n_splits: int = 5, n_boot: int = 2000, seed: int = 0,
                     intersect: bool = False, perturbation: str = "none",
                     site: str | None = None,
                     on_split: Callable[[], None] | None = None,
                     on_start: Callable[[int], None] | None = None) -> tuple[Any, pd.DataFrame,
                                                                              AlignedData]:
    """Compare side A with side B (backbones or families) on one task.

    Dispatches on ``task.kind``: binary and continuous tasks go through the probe
    comparison here; survival tasks through
    :func:`neurofeat.analysis.survival.compare.compare_survival_backbones`.

    Returns
    -------
    (ComparisonResult or SurvivalComparison, tests DataFrame with provenance, AlignedData)
    """
    from neurofeat.analysis.compare import compare_probes, pair_backbones
    from neurofeat.tasks import get_task

    task = get_task(task_name)
    pairs = pair_backbones(side_a, side_b, store.backbones())
    names = sorted({x for pair in pairs for x in pair})
    data = load_aligned(store, names, task, intersect=intersect, perturbation=perturbation)
    keep = _restrict_sites(data.patient_ids, data.sites, site, task.name)
    if not keep.all():
        from dataclasses import replace

        data = replace(data, X={b: x[keep] for b, x in data.X.items()},
                       patient_ids=data.patient_ids[keep], sites=data.sites[keep],
                       y=data.y[keep], event=None if data.event is None else data.event[keep])
    if on_start is not None:
        on_start(len(names) * n_splits * n_repeats)
    if task.kind == "survival":
        result = _compare_survival(data, pairs, task, test=test, n_repeats=n_repeats,
                                   n_splits=n_splits, n_boot=n_boot, seed=seed, side_a=side_a,
                                   side_b=side_b, on_split=on_split)
        tests = result.to_frame()
    else:
        result = compare_probes(data.X, data.y, patient_ids=data.patient_ids, pairs=pairs,
                                task=task.name, kind=task.kind, threshold=task.threshold,
                                metrics=metrics, n_splits=n_splits, n_repeats=n_repeats,
                                n_boot=n_boot, seed=seed, test=test, side_a=side_a,
                                side_b=side_b, on_split=on_split)
        tests = result.to_frame()
    tests = _provenance_columns(tests, data, pairs, side_a, side_b, seed)
    tests["perturbation"] = perturbation
    if site:
        # the comparison ran on these sites' patients only (the pooled 'all' of that subset)
        tests["cohort_sites"] = site
    return result, tests, data


def _compare_survival(data: AlignedData, pairs, task, *, test, n_repeats, n_splits, n_boot,
                      seed, side_a, side_b, on_split):
    """Survival branch of `stats compare` (c-index through the same paired machinery)."""
    from neurofeat.analysis.survival.compare import compare_survival_backbones

    def progress(*_args):
        if on_split is not None:
            on_split()

    return compare_survival_backbones(
        data.X, data.y, data.event, patient_ids=data.patient_ids, pairs=pairs,
        sites=data.sites, task=task.name, n_splits=n_splits, n_repeats=n_repeats,
        n_boot=n_boot, seed=seed, test=test, side_a=side_a, side_b=side_b,
        on_split=progress)
