"""The ``calibrate`` run: are a probe's probabilities right, and are they useful?

Out-of-fold probabilities of the linear probe (same fold plan as ``neurofeat probe``:
task + seed + patient ids), averaged over the CV repeats, then
:func:`neurofeat.analysis.calibration.calibration` (slope, intercept, Brier, reliability
bins) and :func:`neurofeat.analysis.decision_curve.net_benefit` (net benefit against
treat-all/treat-none), pooled and per site. ``neurofeat calibrate`` only parses, calls
:func:`calibrate_run` and prints.

Why the probe is unweighted by default: the class-balanced probe of ``neurofeat
probe`` weighs both classes equally, so its probabilities are calibrated to a 50 %
prevalence by construction and its calibration intercept only measures the
prevalence. ``balanced=True`` checks that probe anyway.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from neurofeat.analysis.calibration import CalibrationResult, calibration
from neurofeat.analysis.decision_curve import DecisionCurve, net_benefit
from neurofeat.analysis.protocols import make_plan, out_of_fold
from neurofeat.runs.inputs import check_backbone, check_finite, restrict_sites
from neurofeat.runs.tables import provenance_columns, shape
from neurofeat.store import RunInfo, Store, read_xy, write_run
from neurofeat.tasks import get_task

__all__ = ["CalibrateRun", "calibrate_run", "MIN_SITE_PATIENTS"]

#: Sites with fewer patients (or one class) get no per-site rows.
MIN_SITE_PATIENTS: int = 10


@dataclass(frozen=True, eq=False)
class CalibrateRun:
    """A finished calibration run.

    Attributes
    ----------
    calibration : dict site -> CalibrationResult
        'all' (pooled) and each site with enough patients of both classes.
    curves : dict site -> DecisionCurve
    tables : dict name -> DataFrame
        Exactly the stored tables.
    figures : dict name -> Figure
    params : dict
    info : RunInfo or None
    """

    calibration: dict[str, CalibrationResult]
    curves: dict[str, DecisionCurve]
    tables: dict[str, pd.DataFrame]
    figures: dict
    params: dict
    info: RunInfo | None

    def summary(self) -> str:
        """The pooled calibration and decision-curve summaries."""
        return (f"{self.params['backbone']} on {self.params['task']}: "
                f"{self.calibration['all'].summary()}\n{self.curves['all'].summary()}")


def _check_task(task_name: str, backbone: str):
    task = get_task(task_name)
    if task.kind == "survival":
        raise ValueError(f"task '{task.name}' is a survival task; calibrate needs a binary task "
                         f"(for survival use `neurofeat survival --backbone {backbone} --task "
                         f"{task.name}`)")
    if task.kind != "binary":
        raise ValueError(f"task '{task.name}' is continuous (scored by a ridge probe, which "
                         "gives no probabilities); calibrate needs a binary task such as idh1 "
                         "or mgmt (see `neurofeat tasks`)")
    return task


def calibrate_run(store: Store, backbone: str, task: str, *, n_splits: int = 5,
                  n_repeats: int = 5, seed: int = 0, balanced: bool = False, n_bins: int = 10,
                  bin_strategy: str = "quantile", n_boot: int = 2000,
                  thresholds: Sequence[float] | None = None, site: str | None = None,
                  perturbation: str = "none", write: bool = True,
                  on_start: Callable[[int], None] | None = None,
                  on_split: Callable[[], None] | None = None) -> CalibrateRun:
    """Calibration and decision curves of one backbone's probe on one binary task.

    Parameters
    ----------
    store : Store
    backbone, task : str
    n_splits, n_repeats, seed : fold plan (the same folds as ``neurofeat probe``).
    balanced : bool
        Class-balanced probe (False: plain L2 logistic, whose probabilities estimate
        the risk at the cohort's prevalence).
    n_bins, bin_strategy : reliability bins.
    n_boot : int
        Bootstrap resamples of the Brier score.
    thresholds : sequence of float, optional
        Decision-curve thresholds (default 0.01-0.99).
    site : str, optional
        Comma-separated sites to keep.
    perturbation : str
    write : bool
    on_start, on_split : progress hooks.

    Raises
    ------
    ValueError
        Unknown backbone or task, a continuous or survival task, no labelled patient.
    """
    from neurofeat.analysis.probes import LinearProbe

    task_def = _check_task(task, backbone)
    check_backbone(store, backbone)
    data = restrict_sites(read_xy(store, backbone, task_def, perturbation=perturbation), site)
    check_finite(data.X, data.patient_ids, backbone)
    if data.n == 0:
        raise ValueError(f"no patient of task '{task_def.name}' has both a label and an "
                         f"embedding of backbone '{backbone}'")
    labels = data.y_binary.astype(bool)
    plan = make_plan("cv", data.patient_ids, labels, data.sites, task=task_def.name,
                     n_splits=n_splits, n_repeats=n_repeats, seed=seed)
    if on_start is not None:
        on_start(plan.n_repeats * plan.n_folds)
    weight = "balanced" if balanced else None
    oof = out_of_fold(data.X, labels, plan, lambda: LinearProbe(class_weight=weight),
                      output="proba", on_split=on_split)
    probability = oof.mean_scores
    groups = [("all", np.ones(data.n, bool))]
    for name in np.unique(data.sites):
        member = data.sites == name
        if member.sum() >= MIN_SITE_PATIENTS and 0 < labels[member].sum() < member.sum():
            groups.append((str(name), member))
    results, curves = {}, {}
    provenance = provenance_columns(seed, data.checkpoint_sha256, data.preprocess_sha256)
    keys = {"backbone": backbone, "task": task_def.name}
    cal_frames, bin_frames, curve_frames = [], [], []
    probe_name = "linear-balanced" if balanced else "linear"
    for name, member in groups:
        result = calibration(labels[member], probability[member], n_bins=n_bins,
                             strategy=bin_strategy, n_boot=n_boot, seed=seed)
        curve = net_benefit(labels[member], probability[member], thresholds)
        results[name], curves[name] = result, curve
        cal_frames.append(shape(result.to_frame(), "calibrate", "calibration", **keys,
                                probe=probe_name, site=name, **provenance))
        bin_frames.append(shape(result.bins.assign(ci_level=result.level), "calibrate",
                                "reliability", **keys, site=name, **provenance))
        curve_frames.append(shape(curve.to_frame(), "calibrate", "decision_curve", **keys,
                                  site=name, **provenance))
    predictions = pd.DataFrame({"patient_id": data.patient_ids, "site": data.sites,
                                "label": labels.astype(float), "probability": probability})
    tables = {
        "calibration": pd.concat(cal_frames, ignore_index=True),
        "reliability": pd.concat(bin_frames, ignore_index=True),
        "decision_curve": pd.concat(curve_frames, ignore_index=True),
        "predictions": shape(predictions, "calibrate", "predictions", **keys, **provenance),
    }
    from neurofeat.analysis.plots_trust import decision_curve_figure, reliability_diagram

    title = f"{backbone} on {task_def.name}"
    figures = {"reliability": reliability_diagram(tables["reliability"], title=title),
               "decision_curve": decision_curve_figure(tables["decision_curve"], title=title)}
    params = {"backbone": backbone, "task": task_def.name, "probe": probe_name,
              "class_weight": weight, "n_splits": n_splits, "n_repeats": n_repeats,
              "seed": seed, "n_bins": n_bins, "bin_strategy": bin_strategy, "n_boot": n_boot,
              "site": site or "all", "perturbation": perturbation, "n_patients": data.n,
              "n_missing_embedding": data.n_missing_embedding,
              "checkpoint_sha256": data.checkpoint_sha256,
              "preprocess_sha256": data.preprocess_sha256,
              "probabilities": "out-of-fold, mean over CV repeats"}
    info = write_run(store, "calibrate", tables, params=params, figures=figures) if write else None
    return CalibrateRun(calibration=results, curves=curves, tables=tables, figures=figures,
                        params=params, info=info)
