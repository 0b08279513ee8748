"""The ``stability`` run: a probe trained on clean embeddings, tested on perturbed ones.

For each backbone: the clean embeddings and every stored perturbation (``neurofeat
extract --perturb``) of the task's patients, aligned on the patients all of them hold,
then :func:`neurofeat.analysis.stability.perturbation_stability` (metric vs
perturbation strength with intervals, change from clean, per-patient embedding drift).
Several backbones are compared on the perturbations they all have. ``neurofeat
stability`` only parses, calls :func:`stability_run` and prints.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from neurofeat.analysis.stability import StabilityResult, perturbation_stability
from neurofeat.runs.inputs import check_backbone, check_finite, site_mask
from neurofeat.runs.metrics_rows import metrics_rows
from neurofeat.runs.tables import provenance_columns, shape
from neurofeat.store import RunInfo, Store, read_xy, write_run
from neurofeat.tasks import get_task

__all__ = ["NoPerturbationsError", "StabilityRun", "stability_run", "stored_perturbations"]


class NoPerturbationsError(ValueError):
    """A backbone has no perturbed embeddings (or not the ones asked for)."""


def stored_perturbations(store: Store, backbone: str) -> list[str]:
    """Perturbation labels stored for ``backbone``, without 'none'.

    Raises
    ------
    NoPerturbationsError
        Only clean embeddings are stored; the message gives the extract command.
    """
    labels = [p for p in store.perturbations(backbone) if p != "none"]
    if not labels:
        raise NoPerturbationsError(
            f"backbone '{backbone}' has no perturbed embeddings (only 'none'); extract them "
            f"with `neurofeat extract --backbone {backbone} --perturb "
            "gibbs:0.2,bias:0.3,contrast:1.5` (BrainIAC sweeps contrast 0.5-2.0, Gibbs and "
            "bias 0-0.4)")
    return labels


@dataclass(frozen=True, eq=False)
class StabilityRun:
    """A finished stability run.

    Attributes
    ----------
    results : dict backbone -> StabilityResult
    tables : dict name -> DataFrame
        Exactly the stored tables (``stability``, ``drift``, ``metrics``).
    figures : dict name -> Figure
    params : dict
    info : RunInfo or None
    """

    results: dict[str, StabilityResult]
    tables: dict[str, pd.DataFrame]
    figures: dict
    params: dict
    info: RunInfo | None

    def summary(self) -> str:
        """Every backbone's summary."""
        return "\n".join(r.summary() for r in self.results.values())


def _common_perturbations(store: Store, backbones: Sequence[str],
                          wanted: Sequence[str] | None) -> list[str]:
    per = {b: stored_perturbations(store, b) for b in backbones}
    if wanted:
        for b, labels in per.items():
            missing = [w for w in wanted if w not in labels]
            if missing:
                raise NoPerturbationsError(
                    f"backbone '{b}' has no embeddings with perturbation "
                    f"{', '.join(repr(m) for m in missing)}; it has: {', '.join(labels)}")
        return list(dict.fromkeys(wanted))
    common = [p for p in per[backbones[0]] if all(p in per[b] for b in backbones)]
    if not common:
        raise NoPerturbationsError(
            "the backbones share no perturbation: " + "; ".join(
                f"{b}: {', '.join(labels)}" for b, labels in per.items()))
    return common


def stability_run(store: Store, backbones: Sequence[str] | str, task: str, *,
                  perturbations: Sequence[str] | None = None, n_splits: int = 5,
                  n_repeats: int = 5, n_boot: int = 2000, seed: int = 0,
                  site: str | None = None, write: bool = True,
                  on_start: Callable[[int], None] | None = None,
                  on_split: Callable[[], None] | None = None) -> StabilityRun:
    """Stability of one or more backbones' probes under the stored perturbations.

    Parameters
    ----------
    store : Store
    backbones : str or sequence of str
    task : str
        Binary or continuous task.
    perturbations : sequence of str, optional
        Labels to evaluate (default: every label all backbones have).
    n_splits, n_repeats, n_boot, seed : fold plan and bootstrap (as ``neurofeat probe``).
    site : str, optional
        Comma-separated sites to keep.
    write : bool
    on_start, on_split : progress hooks.

    Raises
    ------
    NoPerturbationsError
        A backbone without perturbed embeddings (or without those asked for).
    ValueError
        Unknown backbone or task, a survival task, no patient left.
    """
    task_def = get_task(task)
    if task_def.kind == "survival":
        raise ValueError(f"task '{task_def.name}' is a survival task; stability needs a binary "
                         "or continuous task such as idh1 (see `neurofeat tasks`)")
    backbones = [backbones] if isinstance(backbones, str) else list(dict.fromkeys(backbones))
    if not backbones:
        raise ValueError("give at least one --backbone")
    for b in backbones:
        check_backbone(store, b)
    labels = _common_perturbations(store, backbones, perturbations)
    if on_start is not None:
        on_start(len(backbones) * n_splits * n_repeats)
    results: dict[str, StabilityResult] = {}
    curve_frames, drift_frames, metric_frames, dropped = [], [], [], {}
    for backbone in backbones:
        clean = read_xy(store, backbone, task_def)
        perturbed = {p: read_xy(store, backbone, task_def, perturbation=p) for p in labels}
        common = set(clean.patient_ids)
        for data in perturbed.values():
            common &= set(data.patient_ids)
        keep_ids = np.array(sorted(common))
        keep_ids = keep_ids[site_mask(clean.sites[pd.Index(clean.patient_ids)
                                                  .get_indexer(keep_ids)], site, task_def.name)]
        if keep_ids.size == 0:
            raise ValueError(f"no patient of task '{task_def.name}' has clean and perturbed "
                             f"embeddings of backbone '{backbone}'")
        dropped[backbone] = int(clean.n - keep_ids.size)
        pos = pd.Index(clean.patient_ids).get_indexer(keep_ids)
        X_clean = clean.X[pos]
        check_finite(X_clean, keep_ids, backbone)
        X_pert = {}
        for p, data in perturbed.items():
            X_pert[p] = data.X[pd.Index(data.patient_ids).get_indexer(keep_ids)]
            check_finite(X_pert[p], keep_ids, f"{backbone} ({p})")
        result = perturbation_stability(
            X_clean, clean.y[pos], X_pert, patient_ids=keep_ids, sites=clean.sites[pos],
            task=task_def.name, backbone=backbone, kind=task_def.kind,
            threshold=task_def.threshold, n_splits=n_splits, n_repeats=n_repeats,
            n_boot=n_boot, seed=seed, on_split=on_split)
        results[backbone] = result
        provenance = provenance_columns(seed, clean.checkpoint_sha256, clean.preprocess_sha256)
        curve_frames.append(shape(result.curve, "stability", "stability", backbone=backbone,
                                  task=task_def.name, **provenance))
        drift_frames.append(shape(result.drift, "stability", "drift", backbone=backbone,
                                  **provenance))
        probe = "ridge" if task_def.kind == "continuous" else "linear"
        metric_frames.append(metrics_rows(
            result.metrics.rename(columns={"level": "ci_level"}), "stability",
            command="stability", backbone=backbone, task=task_def.name, protocol="cv",
            probe=f"{probe} (trained on clean)", model=None, tau=None, horizon=None,
            bca_low=None, bca_high=None, cohort_sites=site or "all", **provenance))
    tables = {"stability": pd.concat(curve_frames, ignore_index=True),
              "drift": pd.concat(drift_frames, ignore_index=True),
              "metrics": pd.concat(metric_frames, ignore_index=True)}
    from neurofeat.analysis.plots_trust import drift_boxplot, stability_curves

    figures = {"stability_auc": stability_curves(tables["stability"], metric="auc"),
               "embedding_drift": drift_boxplot(tables["drift"])}
    params = {"backbones": backbones, "task": task_def.name, "perturbations": labels,
              "n_splits": n_splits, "n_repeats": n_repeats, "n_boot": n_boot, "seed": seed,
              "site": site or "all", "n_dropped_patients": dropped,
              "trained_on": "clean embeddings"}
    info = write_run(store, "stability", tables, params=params, figures=figures) if write else None
    return StabilityRun(results=results, tables=tables, figures=figures, params=params, info=info)
