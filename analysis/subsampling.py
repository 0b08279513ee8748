"""Conservative-Z inference on paired subsampling (Nadeau & Bengio 2003).

A candidate for the calibrated default that does not rest on a factor measured by
simulation: the variance of the mean over subsamples is estimated from *independent*
replicates of the whole procedure, run on two disjoint halves of the cohort. It is the
method of mlr3inferr's ``ci.con_z`` (with ``rsmp("paired_subsampling")``), the one of
that package's intervals that applies to non-decomposable metrics (the AUC, BA, a
c-index), and is measured against the calibrated t by ``benchmarks/bench_calibration.py
--conservative-z``.

The design (:func:`~neurofeat.analysis.folds.paired_subsampling_plan`):

- ``n_inner`` subsamples of the whole cohort, each testing ``n / k`` patients (every
  class in proportion) and training on the rest: their mean metric is the estimate, of
  the expected performance of the probe trained on ``n (k - 1) / k`` patients (the
  calibrated t's estimand; mlr3inferr trains on 90 %, i.e. ``k = 10``);
- ``n_outer`` times, the cohort dealt into two halves, and in each half ``n_inner``
  subsamples with the same test size: the half means ``mu_1m, mu_2m`` are independent,
  so ``sigma^2 = sum_m (mu_1m - mu_2m)^2 / (2 n_outer)`` estimates the variance of a
  mean over subsamples of *half* the cohort, which Nadeau & Bengio argue exceeds the
  full cohort's (smaller training sets, fewer patients): conservative, *if* the
  probe's predictions vary no less when it is trained on fewer patients.
- interval ``estimate -/+ z_{1 - alpha/2} sigma``; the paired difference applies the
  same to the per-subsample differences ``a - b`` (the same subsamples for every
  backbone), and ``p = 2 (1 - Phi(|diff| / sigma))``.

Costs ``n_inner (1 + 2 n_outer)`` fits per backbone (315 at mlr3inferr's defaults 15 and
10), against the 25 of 5 x 5 CV.

Measured (binary, 33 % positives, n = 120, d = 16, 200 cohorts each; README): with a
fixed-penalty probe it holds its level (type-I 5.6 %, coverage 92-95 %), but with the
default inner-CV probes it is *liberal*: 21-24 % type-I at the exact null (coverage of
0.5 74-76 %), 8-9 % with the same signal in both backbones. The default probe shrinks
to a constant (AUC exactly 0.5) in 55 % of the half-sample subsamples (36 training
patients) against 8.5 % at full size (96), so the half means vary less than the
estimate. Hence it is not the default, and its rows say so.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from neurofeat.analysis.folds import FoldPlan, paired_subsampling_plan
from neurofeat.analysis.paired_tests import METRIC_BOUNDS, is_rare
from neurofeat.analysis.scoring import Scorer, score_folds

__all__ = [
    "SUBSAMPLING_TESTS",
    "NOT_CALIBRATED",
    "SubsamplingDesign",
    "ConservativeZ",
    "conservative_z",
    "subsample_metrics",
    "SubsamplingComparison",
    "compare_subsampled_scores",
    "subsample_probes",
    "subsample_survival",
]

TEST = "conservative-z"
#: ``--test`` values that apply to ``--protocol subsampling`` (the default means its one
#: test, the conservative Z).
SUBSAMPLING_TESTS = ("calibrated-t", TEST)
ESTIMAND = ("expected {metric} of the probe trained on {n_train:.0f} patients "
            "(mean over {n_inner} subsamples; variance from disjoint halves)")
#: Every conservative-Z row's warning: it reproduces mlr3inferr, it is not calibrated.
NOT_CALIBRATED = ("conservative Z is not calibrated with the default probes (measured "
                  "type-I 21-24 % on binary exact nulls): for inference use the default "
                  "protocol (cv, calibrated t)")


@dataclass(frozen=True)
class SubsamplingDesign:
    """How many subsamples, of what size.

    Attributes
    ----------
    n_splits : int
        Each subsample tests ``n / n_splits`` patients (CV's test-fold size).
    n_inner : int
        Subsamples per sample (whole cohort, and each half); mlr3inferr's ``repeats_in``.
    n_outer : int
        Pairs of disjoint halves; mlr3inferr's ``repeats_out``.
    """

    n_splits: int = 5
    n_inner: int = 15
    n_outer: int = 10

    @property
    def n_subsamples(self) -> int:
        """Fits per backbone: ``n_inner (1 + 2 n_outer)``."""
        return self.n_inner * (1 + 2 * self.n_outer)

    def plan(self, patient_ids: np.ndarray, strata: np.ndarray, *, task: str, seed: int = 0,
             stratum_name: str = "positive") -> FoldPlan:
        """The :func:`~neurofeat.analysis.folds.paired_subsampling_plan` of this design."""
        return paired_subsampling_plan(patient_ids, strata, n_splits=self.n_splits,
                                       n_inner=self.n_inner, n_outer=self.n_outer, task=task,
                                       seed=seed, stratum_name=stratum_name)


@dataclass(frozen=True)
class ConservativeZ:
    """A conservative-Z estimate, its interval and the z test of ``estimate = null``."""

    estimate: float
    se: float
    ci_low: float
    ci_high: float
    statistic: float
    p_value: float
    level: float = 0.95
    null: float = 0.0

    def summary(self) -> str:
        """``0.612 [0.540, 0.684] (se 0.037; z = 3.03, p = 0.0024 against 0.5)``."""
        return (f"{self.estimate:.3f} [{self.ci_low:.3f}, {self.ci_high:.3f}] "
                f"(se {self.se:.3f}; z = {self.statistic:.2f}, p = {self.p_value:.3g} "
                f"against {self.null:g})")


def conservative_z(values: np.ndarray, *, n_inner: int, n_outer: int, level: float = 0.95,
                   null: float = 0.0, bounds: tuple[float, float] | None = None) -> ConservativeZ:
    """Nadeau & Bengio's conservative Z from per-subsample values in plan order.

    Parameters
    ----------
    values : ndarray, shape (n_inner (1 + 2 n_outer),)
        A metric (or a paired difference) per subsample, in the order of
        :func:`~neurofeat.analysis.folds.paired_subsampling_plan`: the whole cohort's
        ``n_inner`` first, then for each outer repeat half 1's and half 2's.
    n_inner, n_outer : int
    level : float
    null : float
        Value tested (0 for a difference, 0.5 for one backbone's AUC).
    bounds : (low, high), optional
        Clip the interval to the metric's range.

    Returns
    -------
    ConservativeZ
        ``se = 0`` (every half mean equal, e.g. two probes that collapse alike) gives a
        zero-width interval and ``p = 1`` when the estimate equals ``null`` (else 0).
    """
    values = np.asarray(values, dtype=float)
    expected = n_inner * (1 + 2 * n_outer)
    if values.shape != (expected,):
        raise ValueError(f"expected {expected} values (n_inner {n_inner} x (1 + 2 x n_outer "
                         f"{n_outer})), got shape {values.shape}")
    estimate = float(np.nanmean(values[:n_inner]))
    halves = np.nanmean(values[n_inner:].reshape(n_outer, 2, n_inner), axis=2)
    se = float(np.sqrt(np.sum((halves[:, 0] - halves[:, 1]) ** 2) / (2 * n_outer)))
    q = float(stats.norm.ppf(0.5 + level / 2))
    low, high = estimate - q * se, estimate + q * se
    if bounds is not None:
        low, high = max(low, bounds[0]), min(high, bounds[1])
    if se > 0:
        z = (estimate - null) / se
        p = float(2 * stats.norm.sf(abs(z)))
    else:
        z = 0.0 if estimate == null else float(np.sign(estimate - null) * np.inf)
        p = 1.0 if estimate == null else 0.0
    return ConservativeZ(estimate, se, float(low), float(high), float(z), p, level, null)


def subsample_metrics(scorer: Scorer, target: Any, scores: np.ndarray,
                      plan: FoldPlan) -> np.ndarray:
    """The metric on each subsample's test set, shape (n_subsamples,)."""
    tested = np.where(plan.fold_ids == 0, 0, -1)
    return score_folds(scorer, target, scores, tested, 1)[:, 0]


@dataclass(frozen=True, eq=False)
class SubsamplingComparison:
    """Side A vs side B by conservative Z: one row per pair (and pooled family) x metric.

    Attributes
    ----------
    task : str
    rows : DataFrame
        The ``tests`` table's analysis columns (:attr:`COLUMNS`); ``test =
        'conservative-z'``, the primary (and only) test of this protocol.
    values : dict of (metric, backbone) -> ndarray
        Per-subsample metric of every backbone (plan order).
    design : SubsamplingDesign
    """

    task: str
    rows: pd.DataFrame
    values: dict[tuple[str, str], np.ndarray] = field(repr=False)
    design: SubsamplingDesign = SubsamplingDesign()

    COLUMNS = ("task", "metric", "site", "backbone_a", "backbone_b", "pooled", "test",
               "primary", "estimand", "method", "level", "estimate_a", "ci_low_a",
               "ci_high_a", "estimate_b", "ci_low_b", "ci_high_b", "diff", "diff_ci_low",
               "diff_ci_high", "diff_bca_low", "diff_bca_high", "statistic", "df", "p_value",
               "p_holm", "p_bh", "n", "n_pos", "n_train", "rare", "warning")

    def to_frame(self) -> pd.DataFrame:
        """The rows (a copy)."""
        return self.rows.copy()

    def summary_frame(self) -> pd.DataFrame:
        """One row per pair x metric, in the columns of
        :meth:`~neurofeat.analysis.compare.ComparisonResult.summary_frame`."""
        r = self.rows
        return pd.DataFrame({
            "metric": r["metric"], "site": r["site"], "a": r["backbone_a"],
            "b": r["backbone_b"], "estimate_a": r["estimate_a"],
            "ci_a": [f"{lo:.3f}-{hi:.3f}" for lo, hi in zip(r["ci_low_a"], r["ci_high_a"])],
            "estimate_b": r["estimate_b"],
            "ci_b": [f"{lo:.3f}-{hi:.3f}" for lo, hi in zip(r["ci_low_b"], r["ci_high_b"])],
            "diff": r["diff"],
            "diff_ci": [f"{lo:+.3f} to {hi:+.3f}"
                        for lo, hi in zip(r["diff_ci_low"], r["diff_ci_high"])],
            "test": r["test"], "p": r["p_value"], "p_corrected_t": np.nan,
            "p_delong": np.nan, "estimand": r["estimand"], "warning": r["warning"]})

    def summary(self) -> str:
        """Readable lines, one per pair x metric."""
        lines = [f"{self.task}: conservative Z over {self.design.n_subsamples} subsamples"]
        for r in self.rows.to_dict(orient="records"):
            lines.append(f"  {r['metric']:<6} {r['backbone_a']} {r['estimate_a']:.3f} vs "
                         f"{r['backbone_b']} {r['estimate_b']:.3f}: diff {r['diff']:+.3f} "
                         f"[{r['diff_ci_low']:+.3f}, {r['diff_ci_high']:+.3f}], "
                         f"p={r['p_value']:.3g}")
        return "\n".join(lines)


def compare_subsampled_scores(scorers: Sequence[Scorer], targets: Mapping[str, Any],
                              scores: Mapping[str, np.ndarray],
                              pairs: Sequence[tuple[str, str]], plan: FoldPlan, *,
                              design: SubsamplingDesign, task: str, rare_count: int,
                              n_pos: int,
                              side_a: str = "A", side_b: str = "B",
                              level: float = 0.95) -> SubsamplingComparison:
    """Conservative-Z rows for every pair and metric from subsampled predictions.

    Parameters
    ----------
    scorers : sequence of Scorer
    targets : mapping scorer name -> target
    scores : mapping backbone -> ndarray (n_subsamples, n)
        Predictions on ``plan`` (NaN where not tested).
    pairs : sequence of (backbone_a, backbone_b)
        With more than one pair a pooled row averages the members per subsample.
    plan : FoldPlan
        The design's :func:`~neurofeat.analysis.folds.paired_subsampling_plan`.
    rare_count : int
        Smallest class or events (the ``rare`` flag and warning).
    n_pos : int
        Positives or events (the ``n_pos`` column).
    """
    from neurofeat.analysis.compare import join_warnings, rare_endpoint_warning

    j, m = design.n_inner, design.n_outer
    sizes = [(s.train.size, s.test.size) for s in plan.splits()][:j]
    n_train, n_test = (float(np.mean([a for a, _ in sizes])),
                       float(np.mean([b for _, b in sizes])))
    method = (f"conservative Z (Nadeau-Bengio; mlr3inferr ci.con_z): mean over {j} "
              f"subsamples testing {n_test:.0f} of {plan.patient_ids.size}, variance from "
              f"{m} pairs of disjoint halves x {j} subsamples; not calibrated with the "
              "default probes (measured type-I 21-24 % at the exact null, 8-9 % with "
              "equal signal: half-size training sets shrink to constant predictions)")
    values: dict[tuple[str, str], np.ndarray] = {}
    rows = []
    for scorer in scorers:
        for name in sorted({x for pair in pairs for x in pair}):
            values[(scorer.name, name)] = subsample_metrics(scorer, targets[scorer.name],
                                                            scores[name], plan)
        groups = [(a, b, False, [(a, b)]) for a, b in pairs]
        if len(pairs) > 1:
            groups.append((side_a, side_b, True, list(pairs)))
        bounds = METRIC_BOUNDS.get(scorer.name)
        for name_a, name_b, pooled, members in groups:
            va = np.mean([values[(scorer.name, a)] for a, _ in members], axis=0)
            vb = np.mean([values[(scorer.name, b)] for _, b in members], axis=0)
            za = conservative_z(va, n_inner=j, n_outer=m, level=level, bounds=bounds)
            zb = conservative_z(vb, n_inner=j, n_outer=m, level=level, bounds=bounds)
            zd = conservative_z(va - vb, n_inner=j, n_outer=m, level=level)
            rows.append({
                "task": task, "metric": scorer.name, "site": "all", "backbone_a": name_a,
                "backbone_b": name_b, "pooled": pooled, "test": TEST, "primary": True,
                "estimand": ESTIMAND.format(metric=scorer.name, n_train=n_train, n_inner=j),
                "method": method + (f"; pooled over {len(members)} pairs (per-subsample "
                                    "means)" if pooled else ""),
                "level": level, "estimate_a": za.estimate, "ci_low_a": za.ci_low,
                "ci_high_a": za.ci_high, "estimate_b": zb.estimate, "ci_low_b": zb.ci_low,
                "ci_high_b": zb.ci_high, "diff": zd.estimate, "diff_ci_low": zd.ci_low,
                "diff_ci_high": zd.ci_high, "diff_bca_low": np.nan, "diff_bca_high": np.nan,
                "statistic": zd.statistic, "df": np.nan, "p_value": zd.p_value,
                "p_holm": zd.p_value, "p_bh": zd.p_value, "n": plan.patient_ids.size,
                "n_pos": n_pos, "n_train": n_train, "rare": is_rare(rare_count),
                "warning": join_warnings(rare_endpoint_warning(rare_count),
                                         NOT_CALIBRATED)})
    frame = pd.DataFrame(rows, columns=list(SubsamplingComparison.COLUMNS))
    return SubsamplingComparison(task, frame, values, design)


def subsample_probes(embeddings: Mapping[str, np.ndarray], y: np.ndarray, *,
                     patient_ids: np.ndarray, pairs: Sequence[tuple[str, str]], task: str,
                     kind: str = "binary", threshold: float | None = None,
                     metrics: Sequence[str] = ("auc", "ba"),
                     design: SubsamplingDesign = SubsamplingDesign(), seed: int = 0,
                     side_a: str = "A", side_b: str = "B", linear_params: dict | None = None,
                     ridge_params: dict | None = None, level: float = 0.95,
                     on_split: Callable[[], None] | None = None) -> SubsamplingComparison:
    """Fit the probe of every backbone on the same paired subsamples; conservative Z.

    The probes and metrics of :func:`~neurofeat.analysis.compare.compare_probes`
    (binary: LinearProbe; continuous: RidgeProbe, metrics at ``threshold``); the plan is
    stratified by class (the binarised value for continuous tasks).
    """
    from neurofeat.analysis.compare import probe_setup
    from neurofeat.analysis.protocols import out_of_fold
    from neurofeat.analysis.scoring import get_scorer

    setup = probe_setup(kind, y, threshold=threshold, task=task, linear_params=linear_params,
                        ridge_params=ridge_params)
    scorers = [get_scorer(name, setup.cut) for name in metrics]
    plan = design.plan(patient_ids, setup.labels, task=task, seed=seed)
    scores = {name: out_of_fold(embeddings[name], setup.fit_y, plan, setup.factory,
                                output=setup.output, strata=setup.labels,
                                on_split=on_split).scores
              for name in sorted({x for pair in pairs for x in pair})}
    targets = {s.name: (setup.fit_y if s.name in ("spearman", "mae") else setup.labels)
               for s in scorers}
    n_pos = int(setup.labels.sum())
    return compare_subsampled_scores(scorers, targets, scores, pairs, plan, design=design,
                                     task=task, rare_count=min(n_pos, setup.labels.size - n_pos),
                                     n_pos=n_pos,
                                     side_a=side_a, side_b=side_b, level=level)


def subsample_survival(embeddings: Mapping[str, np.ndarray], time: np.ndarray,
                       event: np.ndarray, *, patient_ids: np.ndarray,
                       pairs: Sequence[tuple[str, str]], task: str = "os",
                       model: str = "coxnet", model_params: dict | None = None,
                       design: SubsamplingDesign = SubsamplingDesign(), seed: int = 0,
                       side_a: str = "A", side_b: str = "B", level: float = 0.95,
                       on_split: Callable[[int], None] | None = None
                       ) -> SubsamplingComparison:
    """Harrell's and Uno's C of every backbone's Cox model by conservative Z.

    The model of :func:`~neurofeat.analysis.survival.compare.compare_survival_backbones`
    on a plan stratified by event; Uno's weights from the whole cohort's censoring, as
    there.
    """
    from neurofeat.analysis.survival.compare import HARRELL, UNO, survival_target
    from neurofeat.analysis.survival.cox import make_cox_model
    from neurofeat.analysis.survival.protocol import cross_validated_risk
    from neurofeat.analysis.survival.validation import check_survival_data

    time, event = check_survival_data(time, event, patient_ids=patient_ids)
    plan = design.plan(np.asarray(patient_ids).astype(str), event, task=task, seed=seed,
                       stratum_name="event")
    estimator = make_cox_model(model, **(model_params or {}))
    risk = {name: cross_validated_risk(embeddings[name], time, event, plan, model=estimator,
                                       model_name=model, backbone=name,
                                       progress=on_split).risk
            for name in sorted({x for pair in pairs for x in pair})}
    target = survival_target(time, event)
    return compare_subsampled_scores([HARRELL, UNO], {"harrell_c": target, "uno_c": target},
                                     risk, pairs, plan, design=design, task=task,
                                     rare_count=int(event.sum()), n_pos=int(event.sum()),
                                     side_a=side_a, side_b=side_b, level=level)
