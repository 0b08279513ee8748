"""The ``probe`` run: one backbone, one task, linear/ridge and kNN probes -> the store.

Reads the task's (X, y) through the store, calls
:func:`neurofeat.analysis.protocols.run_probe`, shapes its tables against the declared
schemas and writes the run with its figures (``roc``: ROC curves of the repeat-averaged
out-of-fold scores, pooled and per site; ``data_fraction``: the data-fraction curve, when
one was computed), each as PNG and SVG. ``neurofeat probe`` only parses, calls
:func:`probe_run` and prints.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from neurofeat.analysis.plots_report import average_repeats, data_fraction_figure, roc_figure
from neurofeat.analysis.protocols import DEFAULT_FRACTIONS, ProbeResult, make_plan, run_probe
from neurofeat.runs.inputs import check_backbone, check_finite, restrict_sites
from neurofeat.runs.tables import inference_columns, provenance_columns, shape
from neurofeat.store import RunInfo, Store, read_xy, write_run
from neurofeat.tasks import get_task

__all__ = ["ProbeRun", "probe_run", "probe_tables", "probe_figures"]


@dataclass(frozen=True, eq=False)
class ProbeRun:
    """A finished probe run.

    Attributes
    ----------
    result : ProbeResult
        The analysis result (folds plan, per-fold values, fitted hyperparameters).
    tables : dict name -> DataFrame
        Exactly the tables written to ``runs/<run_id>/`` (``metrics`` feeds the
        ``results`` view).
    params : dict
        Parameters and provenance, as stored in ``run.json``.
    info : RunInfo or None
        Where the run was written (None with ``write=False``).
    figures : dict name -> matplotlib Figure
        The run's figures (``roc``, ``data_fraction``), stored as PNG and SVG.
    """

    result: ProbeResult
    tables: dict[str, pd.DataFrame]
    params: dict
    info: RunInfo | None
    figures: dict = field(default_factory=dict)

    @property
    def metrics(self) -> pd.DataFrame:
        """The stored ``metrics`` table."""
        return self.tables["metrics"]


def probe_tables(result: ProbeResult, *, perturbation: str, seed: int,
                 checkpoint_sha256: str | None, preprocess_sha256: str | None,
                 cohort_sites: str = "all") -> dict[str, pd.DataFrame]:
    """The probe's run tables, shaped against their declared schemas."""
    provenance = provenance_columns(seed, checkpoint_sha256, preprocess_sha256)
    keys = {"backbone": result.backbone, "task": result.task}
    metrics = shape(inference_columns(result.metrics, "probe", "metrics"), "probe", "metrics",
                    command="probe", backbone=result.backbone, perturbation=perturbation,
                    task=result.task, protocol=result.protocol, model=None, tau=None,
                    horizon=None, bca_low=None, bca_high=None, cohort_sites=cohort_sites,
                    **provenance)
    fitted = result.fitted
    for hyper in ("C", "alpha"):
        if hyper not in fitted.columns:
            fitted = fitted.assign(**{hyper: np.nan})
    return {
        "metrics": metrics,
        "folds": shape(result.folds, "probe", "folds", **keys, **provenance),
        "predictions": shape(result.predictions, "probe", "predictions", **keys, **provenance),
        "fitted": shape(fitted, "probe", "fitted", **keys, **provenance),
    }


def probe_figures(tables: dict[str, pd.DataFrame], positive: dict[str, bool], *,
                  title: str) -> dict:
    """The probe's figures from its tables.

    Parameters
    ----------
    tables : dict
        The run's ``predictions`` and ``metrics`` tables.
    positive : dict patient_id -> bool
        Each patient's binary label (for a continuous task: value >= threshold).
    title : str
        Backbone, task and protocol, for the figure titles.

    Returns
    -------
    dict name -> Figure
        ``roc`` (main probe at the full training fraction, pooled and per site; absent
        when the patients are all of one class) and ``data_fraction`` (when the metrics
        hold more than one training fraction).
    """
    metrics = tables["metrics"]
    main = "ridge" if (metrics["probe"] == "ridge").any() else "linear"
    figures = {}
    predictions = tables["predictions"]
    rows = predictions[(predictions["probe"] == main) & (predictions["fraction"] == 1.0)]
    scores = average_repeats(rows)
    scores = scores.assign(label=scores["patient_id"].map(positive).astype(bool))
    if scores["label"].any() and not scores["label"].all():
        figures["roc"] = roc_figure(scores, title=f"{title}: {main} probe, out-of-fold scores "
                                    "(mean over repeats)")
    curve = metrics[(metrics["site"] == "all") & metrics["primary"].astype(bool)
                    & (metrics["probe"] == main) & metrics["metric"].isin(["auc", "ba"])]
    if curve["fraction"].nunique() > 1:
        figures["data_fraction"] = data_fraction_figure(
            curve, curve="backbone", title=f"{title}: data-fraction curve ({main} probe, "
            "calibrated 95 % interval)")
    return figures


def probe_run(store: Store, backbone: str, task: str, *, protocol: str = "cv",
              n_repeats: int = 5, n_splits: int = 5, n_boot: int = 2000, seed: int = 0,
              fractions: Sequence[float] | None = None, knn: bool = True,
              knn_neighbors: int = 15, perturbation: str = "none", site: str | None = None,
              write: bool = True, figures: bool = True, on_start: Callable[[int], None] | None = None,
              on_split: Callable[[], None] | None = None) -> ProbeRun:
    """Probe one backbone on one task and write the run to the store.

    Parameters
    ----------
    store : Store
    backbone, task : str
    protocol : {'cv', 'loso', 'site'}
    n_repeats, n_splits, n_boot, seed : CV and bootstrap settings.
    fractions : sequence of float, optional
        Data-fraction curve (default :data:`DEFAULT_FRACTIONS`; ``()`` skips it).
    knn, knn_neighbors : the kNN probe.
    perturbation : str
        Embeddings of this perturbation ('none' = clean).
    site : str, optional
        Comma-separated sites to keep.
    write : bool
        Write the run (False: compute only).
    figures : bool
        Draw the ``roc`` and ``data_fraction`` figures and store them with the run (PNG
        + SVG); False skips them (about a third of a default probe's time on 2 cores,
        for batch runs that only need the tables).
    on_start, on_split : callables, optional
        Progress hooks: total number of fits, then one call per fit.

    Raises
    ------
    ValueError
        Unknown task or backbone, a survival task, no labelled patient, bad embeddings.
    """
    task_def = get_task(task)
    if task_def.kind == "survival":
        raise ValueError(f"task '{task_def.name}' is a survival task; use `neurofeat survival "
                         f"--backbone {backbone} --task {task_def.name}`")
    check_backbone(store, backbone)
    data = read_xy(store, backbone, task_def, perturbation=perturbation)
    check_finite(data.X, data.patient_ids, backbone)
    data = restrict_sites(data, site)
    if data.n == 0:
        raise ValueError(f"no patient of task '{task_def.name}' has both a label and an "
                         f"embedding of backbone '{backbone}'")
    fractions = DEFAULT_FRACTIONS if fractions is None else tuple(fractions)
    if on_start is not None:
        plan = make_plan(protocol, data.patient_ids, data.y_binary.astype(bool), data.sites,
                         task=task_def.name, n_splits=n_splits, n_repeats=n_repeats, seed=seed)
        fits_per_split = 1 + int(knn) + (sum(f < 1 for f in fractions) if protocol == "cv" else 0)
        on_start(sum(1 for _ in plan.splits()) * fits_per_split)
    result = run_probe(data.X, data.y, patient_ids=data.patient_ids, sites=data.sites,
                       task=task_def.name, kind=task_def.kind, threshold=task_def.threshold,
                       backbone=backbone, protocol=protocol, n_splits=n_splits,
                       n_repeats=n_repeats, n_boot=n_boot, seed=seed, fractions=fractions,
                       knn=knn, knn_neighbors=knn_neighbors, on_split=on_split)
    tables = probe_tables(result, perturbation=perturbation, seed=seed,
                          checkpoint_sha256=data.checkpoint_sha256,
                          preprocess_sha256=data.preprocess_sha256, cohort_sites=site or "all")
    params = dict(result.params, backbone=backbone, task=task_def.name, site=site or "all",
                  perturbation=perturbation, n_patients=data.n,
                  n_missing_embedding=data.n_missing_embedding,
                  checkpoint_sha256=data.checkpoint_sha256,
                  preprocess_sha256=data.preprocess_sha256)
    drawn = {}
    if figures:
        positive = dict(zip(data.patient_ids.astype(str), data.y_binary.astype(bool)))
        drawn = probe_figures(tables, positive,
                              title=f"{backbone} on {task_def.name} ({protocol})")
    info = write_run(store, "probe", tables, params=params, figures=drawn) if write else None
    return ProbeRun(result=result, tables=tables, params=params, info=info, figures=drawn)
