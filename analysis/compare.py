"""Paired comparison of backbones (or families of backbones) on the same task.

"Is the DRO backbone better than the base one on this marker?" Both sides are scored
on identical folds (the fold plan derives from task + seed + patient ids) and identical
bootstrap resamples (the index matrix derives from the strata + task + seed), so every
difference is paired patient by patient and fold by fold.

Which backbones pair up (families, seed references) is
:mod:`~neurofeat.analysis.pairing`'s. With more than one pair a ``pooled`` row averages
the pairs: the pooled metric of a side is the mean over its members, its bootstrap
distribution the mean of the members' distributions on the same resamples, its per-fold
values the mean over members of the same fold.

The generic engine: a *scorer*
------------------------------
Everything here works on out-of-fold predictions through a
:class:`~neurofeat.analysis.scoring.Scorer`, so any metric plugs in — AUC and balanced
accuracy for classification, a c-index for survival — without touching this module::

    Scorer(name, fn, higher_is_better=True, analytic_test=None)
    fn(target, scores, index) -> ndarray (B, R)
        target : the outcome, in the scorer's own form (bool (n,) for AUC/BA; e.g. a
                 structured (event, time) array for a c-index)
        scores : (R, n) out-of-fold predictions, one row per CV repeat
        index  : (B, m) int index sets (bootstrap resamples, leave-one-out sets, or one
                 fold's test rows as a (1, m) array)
    analytic_test(target, scores_a (n,), scores_b (n,)) -> (name, statistic, p)
        optional; called on the repeat-averaged scores (DeLong for AUC).

Given ``{backbone: scores (R, n)}``, the fold ids ``(R, n)`` of the plan and the
bootstrap strata, :func:`compare_scores` computes for each pair and metric one
:class:`Inference` per test. Each is one row of the ``tests`` table, and its estimate,
intervals and p refer to one quantity, named in the row's ``estimand``:

=================  ==============================================  =================
test               estimate (each side, and a - b) / intervals     estimand
=================  ==============================================  =================
calibrated-t       mean of the R x k per-fold metrics; corrected   expected metric of
(default)          resampled t with the metric's calibrated        the probe trained
                   correction factor, J - 1 df                     on n_train patients
corrected-t        same estimate; Nadeau-Bengio, J - 1 df          same
ttest / wilcoxon   same estimate; plain t over folds (Shapiro      this cohort's folds
(``auto``)         picks t or Wilcoxon: NeuroRAD-FM)
delong (AUC)       AUC of repeat-averaged scores; DeLong CIs/test  this cohort's scores
bootstrap          out-of-fold metric, mean over repeats;          this cohort's scores
                   percentile (and BCa) bootstrap, p = 2 min tail
=================  ==============================================  =================

The default and why
-------------------
The question "is A better than B?" is about the backbones, not about this cohort's
particular predictions, so the estimand is the expected performance (AUC, BA, c-index)
of the probe trained on ``n_train = n (k - 1) / k`` patients of this population (Bates,
Hastie & Tibshirani 2023). The mean over the R x k test folds of the per-fold metric is
(nearly) unbiased for it: each fold's metric is computed on patients its probe never
saw. Its variance includes the variability of the training sets, which every test that
treats the out-of-fold predictions as fixed ignores (DeLong, the bootstrap of
out-of-fold scores, t or Wilcoxon over folds): those rejected a true null in 11-53 % of
simulated comparisons (``benchmarks/bench_calibration.py``). The pooled AUC of
repeat-averaged scores is moreover a different number (it mixes folds whose scores are
on different scales; noise embeddings come out "below chance").

The Nadeau-Bengio variance ``(1/J + n_test/n_train) s^2`` accounts for the shared
training data, and was about right for balanced accuracy in the simulations (5-6.5 %
rejections of a true null), but too small for the AUC (10-11 %) and the c-index
(6.5-13 %): rank metrics' per-fold values are more correlated across overlapping
training sets than the heuristic assumes, and how much depends on the probe. The default
multiplies the ``n_test/n_train`` term by a factor calibrated per task kind and metric
(:data:`~neurofeat.analysis.correction_factors.CALIBRATED_CORRECTION`: binary AUC 1.75,
BA 1.15; continuous AUC 1.2, BA 1.4, Spearman 1.5, MAE 1.0; c-index 2.3) and keeps
``J - 1`` df, whose precision matched the simulated spread of ``s^2``. A factor must
hold under every null, so each is the larger of what the exact null (no signal) and two
equally informative backbones need: with the default probes the two differ (the inner-CV
probe shrinks to near-constant predictions when there is nothing to learn), and the
continuous BA/MAE and c-index factors are conservative at the exact null. Sparse test
folds (fewer than 4 minority patients per fold) raise the binary AUC's to 2.1
(:data:`~neurofeat.analysis.correction_factors.CALIBRATED_CORRECTION_SPARSE`); one
backbone's interval uses
:data:`~neurofeat.analysis.correction_factors.CALIBRATED_CORRECTION_SINGLE` where it
needs its own (continuous BA 1.1, c-index 1.65, or 3.0 where the Cox model has more
features than training patients per fold and 4.0 beyond six times as many; the
difference's c-index factor is 2.8 from half a feature per training patient:
:data:`~neurofeat.analysis.correction_factors.CALIBRATED_CORRECTION_HIGH_DIMENSIONAL`;
each plus the test noise of its degenerate folds, where a constant prediction scores
exactly 0.5: :func:`~neurofeat.analysis.correction_factors.degenerate_fold_variance`;
binary BA at least its folds' test noise, and 2.25 where the probe calls fewer than 4
patients per test fold on one side of the threshold:
:data:`~neurofeat.analysis.correction_factors.CALIBRATED_CORRECTION_SPARSE_PREDICTIONS`);
binary tasks with fewer than 96 training patients per fold move towards
:data:`~neurofeat.analysis.correction_factors.CALIBRATED_CORRECTION_SMALL` (AUC 2.0, one
backbone 2.5; BA 1.3 / 1.6 at 64 and below), which two equally informative backbones
need at n = 80. Nested CV (Bates et al.) and refitting bootstraps cost 10-100x more fits
and were not needed to reach the band; label permutation is exact only against chance,
not for A vs B; ``k - 1`` df (an option of the corrected t) held the AUC's level but was
conservative for BA (1.2 %).

Pooled family rows average the member pairs' per-fold values (members share patients and
folds, so the pooled per-fold difference carries their correlation) and apply the same
test to those J values.

:class:`ComparisonResult.to_frame` gives the long ``tests`` table the store's
``comparisons`` view reads (one row per pair x metric x test, ``primary`` marking the
requested test's row); :func:`adjust_across` adds Holm and Benjamini-Hochberg p-values
across tasks (or sites, for survival) within each test, so the primary rows are
adjusted among themselves. A task whose rarest class (or events) has fewer than
:data:`RARE_ENDPOINT` patients gets ``rare = True`` and a ``warning``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from neurofeat.analysis.bootstrap import BootstrapCI, bootstrap_ci, stratified_bootstrap_indices
from neurofeat.analysis.folds import derive_seed
from scipy import special

from neurofeat.analysis.paired_tests import (DEFAULT_TEST, METRIC_BOUNDS, RARE_ENDPOINT,
                                             TEST_CHOICES, PairedTestResult, adjust_pvalues,
                                             corrected_resampled_interval,
                                             corrected_resampled_ttest, is_rare, paired_test,
                                             smallest_attainable_p)
from neurofeat.analysis.correction_factors import (calibrated_correction,
                                                   predicted_minority_per_fold,
                                                   single_variance_terms)
from neurofeat.analysis.scoring import (AUC, Scorer, predicted_share_folds, score_folds,
                                        score_jackknife, score_point, score_resamples)

if TYPE_CHECKING:  # analysis.loso builds on this module
    from neurofeat.analysis.loso import LosoComparison

__all__ = [
    "MetricDraws",
    "metric_draws",
    "Inference",
    "PairComparison",
    "bootstrap_p_value",
    "delong_inference",
    "RARE_ENDPOINT",
    "tied_folds_warning",
    "join_warnings",
    "ESTIMANDS",
    "METHODS",
    "ComparisonResult",
    "compare_scores",
    "adjust_across",
    "compare_probes",
]

@dataclass(frozen=True, eq=False)
class MetricDraws:
    """One backbone's metric on the full sample, per fold, per resample and leave-one-out.

    All repeat-averaged except ``folds``.

    Attributes
    ----------
    point : float
    boot : ndarray, shape (B,)
    jack : ndarray, shape (m,)
    folds : ndarray, shape (R, K)
    mean_scores : ndarray, shape (n,)
        Per-patient mean of the out-of-fold scores over repeats (analytic tests).
    shares : ndarray, shape (R, K), optional
        Per-fold share of patients at or above the scorer's threshold (thresholded
        metrics only: the test-noise floor of one backbone's BA interval).
    """

    point: float
    boot: np.ndarray
    jack: np.ndarray | None
    folds: np.ndarray
    mean_scores: np.ndarray
    shares: np.ndarray | None = None

    @staticmethod
    def mean(draws: Sequence[MetricDraws]) -> MetricDraws:
        """Member-wise average (pooled family)."""
        jacks = [d.jack for d in draws]
        shares = [d.shares for d in draws]
        return MetricDraws(
            float(np.mean([d.point for d in draws])),
            np.mean([d.boot for d in draws], axis=0),
            None if any(j is None for j in jacks) else np.mean(jacks, axis=0),
            np.mean([d.folds for d in draws], axis=0),
            np.mean([d.mean_scores for d in draws], axis=0),
            None if any(q is None for q in shares) else np.mean(shares, axis=0))


def metric_draws(scorer: Scorer, target: Any, scores: np.ndarray, fold_ids: np.ndarray,
                 boot_index: np.ndarray, rows: np.ndarray | None = None,
                 n_folds: int | None = None, bca: bool = True) -> MetricDraws:
    """Compute a :class:`MetricDraws` for one backbone's out-of-fold scores (R, n)."""
    scores = np.atleast_2d(scores)
    point = float(np.nanmean(score_point(scorer, target, scores, rows)))
    boot = np.nanmean(score_resamples(scorer, target, scores, boot_index), axis=1)
    jack = np.nanmean(score_jackknife(scorer, target, scores, rows), axis=1) if bca else None
    fold_ids = np.atleast_2d(fold_ids)
    if rows is not None:
        mask = np.zeros(scores.shape[1], bool)
        mask[rows] = True
        fold_ids = np.where(mask[None], fold_ids, -1)
    folds = score_folds(scorer, target, scores, fold_ids, n_folds)
    shares = (None if scorer.threshold is None
              else predicted_share_folds(scores, fold_ids, scorer.threshold, n_folds))
    return MetricDraws(point, boot, jack, folds, np.nanmean(scores, axis=0), shares)


def rare_endpoint_warning(
        count: int, *, smallest: str = "class/events", where: str = "",
        consequence: str = "per-fold estimates are noisy and intervals wide") -> str:
    """The rare-endpoint warning of a row ('' when ``count`` >= :data:`RARE_ENDPOINT`)."""
    if is_rare(count):
        return (f"rare endpoint: {count} patients in the smallest {smallest} "
                f"(< {RARE_ENDPOINT}){where}; {consequence}")
    return ""


def join_warnings(*texts: str) -> str:
    """A row's warnings '; '-joined: empty ones dropped, repeats kept once, in order."""
    return "; ".join(dict.fromkeys(t for t in texts if t))


def tied_folds_warning(fold_diff: np.ndarray, *, n_train: float, n_test: float,
                       correction: float, alpha: float, test: str = DEFAULT_TEST,
                       label: str = "") -> str:
    """Warning for a pair whose t-test over folds cannot reach ``alpha`` ('' otherwise).

    Folds where both sides score exactly the same (both probes collapsed to a constant,
    at chance) are zero differences whatever the backbones are; with too few non-zero
    differences even the most favourable data give p >= ``alpha``
    (:func:`~neurofeat.analysis.paired_tests.smallest_attainable_p`). Such a row cannot
    be significant, and its large p is not evidence that the backbones are equal. This is
    where the calibrated t is conservative at exact nulls (README, "Still open").

    Parameters
    ----------
    fold_diff : ndarray, shape (J,)
        Finite per-fold differences ``a - b``.
    n_train, n_test : float
    correction : float
        The test's factor ``c`` (1 for 'corrected-t').
    alpha : float
    test : str
        Named in the message.
    label : str
        Names the row (pair, metric, site) in the message.
    """
    d = np.asarray(fold_diff, dtype=float).reshape(-1)
    d = d[np.isfinite(d)]
    if d.size < 2 or not (n_train > 0 and n_test > 0):
        return ""
    differing = int(np.count_nonzero(np.abs(d) > 1e-12))
    floor = smallest_attainable_p(differing, d.size, n_train=n_train, n_test=n_test,
                                  correction=correction)
    if floor < alpha:
        return ""
    where = f"{label}: " if label else ""
    return (f"{where}{d.size - differing} of {d.size} folds tied (both probes scored the "
            f"same, typically both at chance); with {differing} differing folds the "
            f"{test} cannot reach p < {alpha:g} (smallest attainable p {floor:.2g}): "
            f"inconclusive, not evidence that the backbones are equal")


#: What each test's row estimates (``estimand`` column), by test name.
ESTIMANDS: dict[str, str] = {
    "calibrated-t": "expected {metric} of the probe trained on {n_train:.0f} patients "
                    "(mean over the R x k test folds)",
    "corrected-t": "expected {metric} of the probe trained on {n_train:.0f} patients "
                   "(mean over the R x k test folds)",
    "fold-test": "mean per-fold {metric} of this cohort's R x k folds (folds treated as "
                 "independent)",
    "delong": "{metric} of the repeat-averaged out-of-fold scores (this cohort's "
              "predictions treated as fixed)",
    "bootstrap": "{metric} of the out-of-fold scores, mean over repeats (this cohort's "
                 "predictions treated as fixed)",
}

#: How each test works, what it assumes and its measured type-I error at alpha = 0.05
#: (``method`` column; benchmarks/bench_calibration.py, 4 + 4 backbones, 5 x 5 CV,
#: n = 80-300, d = 16/512; the calibrated t with the default probes, the published
#: procedures with fast fixed-penalty probes).
METHODS: dict[str, str] = {
    "calibrated-t": "corrected resampled t, variance (1/J + c n_test/n_train) s^2 with the "
                    "simulation-calibrated factor c of the task kind and metric (the larger "
                    "of what the exact null and equal planted signal need), J-1 df "
                    "(default; larger below 96 training patients per fold for binary "
                    "tasks; measured type-I with the default probes at 1,000 "
                    "replications per setting: binary 3.9-5.2 % pairs with equal signal "
                    "(n = 48-120), 2.1-4.9 % at exact nulls (conservative at n = 80); "
                    "continuous and c-index 1.9-5.2 % with equal signal, 0.3-5.6 % at the "
                    "exact null, where BA, MAE and the c-index are conservative)",
    "corrected-t": "Nadeau-Bengio corrected resampled t, variance (1/J + n_test/n_train) "
                   "s^2, J-1 df (published; measured type-I AUC 10-11 %, c-index 6.5-13 %, "
                   "BA 2-5.5 %)",
    "ttest": "paired t over R x k folds (published, NeuroRAD-FM; ignores shared training "
             "data; measured type-I 39-55 %)",
    "wilcoxon": "Wilcoxon signed-rank over R x k folds (published, NeuroRAD-FM; ignores "
                "shared training data; measured type-I 38-55 %)",
    "delong": "paired DeLong on repeat-averaged out-of-fold scores (published, BrainIAC; "
              "ignores training variability; measured type-I 11-17 %)",
    "bootstrap": "stratified patient bootstrap of the out-of-fold metric, percentile CI, "
                 "p = 2 min(P*(diff<=0), P*(diff>=0)) (published, BrainIAC; no refit; "
                 "measured type-I 14-25 %)",
}


@dataclass(frozen=True)
class Inference:
    """One test of one pair on one metric: the estimate, its 95 % intervals, its p.

    Every number of a row refers to the same quantity (``estimand``): e.g. the
    ``calibrated-t`` row's estimates are means of per-fold metrics and its intervals
    cover the expected performance; the ``delong`` row's estimates are AUCs of the
    repeat-averaged scores.

    Attributes
    ----------
    test : str
        'calibrated-t', 'corrected-t', 'ttest', 'wilcoxon', 'delong', 'bootstrap'.
    estimate_a, ci_low_a, ci_high_a, estimate_b, ci_low_b, ci_high_b : float
    diff, diff_ci_low, diff_ci_high : float
        ``a - b`` and its interval.
    statistic, p_value, df : float
    diff_bca_low, diff_bca_high : float
        BCa interval of the difference (bootstrap row only).
    """

    test: str
    estimate_a: float
    ci_low_a: float
    ci_high_a: float
    estimate_b: float
    ci_low_b: float
    ci_high_b: float
    diff: float
    diff_ci_low: float
    diff_ci_high: float
    statistic: float
    p_value: float
    df: float = float("nan")
    diff_bca_low: float = float("nan")
    diff_bca_high: float = float("nan")

    @property
    def family(self) -> str:
        """'fold-test' for the Shapiro-chosen ttest/wilcoxon, else the test name."""
        return "fold-test" if self.test in ("ttest", "wilcoxon") else self.test


@dataclass(frozen=True)
class PairComparison:
    """Side A vs side B on one metric (and site).

    Attributes
    ----------
    metric, site, backbone_a, backbone_b : str
        ``backbone_a``/``_b`` are family names on the pooled row.
    pooled : bool
    a, b, diff : BootstrapCI
        Repeat-averaged out-of-fold metric of each side and ``a - b`` (bootstrap).
    fold_test : PairedTestResult
        Wilcoxon or paired t on per-fold differences (``test`` rule).
    corrected : PairedTestResult
        Nadeau-Bengio corrected resampled t-test on the same differences (J - 1 df).
    analytic : tuple (name, statistic, p) or None
        The scorer's analytic test (DeLong for AUC); None for pooled rows.
    higher_is_better : bool
    n, n_pos : int
    members : tuple of (str, str)
        The pairs averaged into this row.
    inferences : tuple of Inference
        One per test, the calibrated default first.
    n_train : float
        Mean training-fold size (the estimand's training size).
    rare_count : int
        Positives, negatives or events, whichever is fewest (rare-endpoint warning).
    folds_a, folds_b : ndarray, shape (R, k)
        Per-fold metric of each side (member means on the pooled row).
    tie_warning : str
        Set when so many folds tie (both sides score the same) that the primary t-test
        cannot reach its level (:func:`tied_folds_warning`); '' otherwise.
    shares_a, shares_b : ndarray, shape (R, k), optional
        Per-fold share of patients predicted positive by each side (thresholded metrics
        only; member means on the pooled row): what one backbone's variance floor
        (:func:`~neurofeat.analysis.correction_factors.single_variance_floor`) is read from.
    design_warning : str
        A warning that the design puts the row where an interval was measured to miss
        its level (:meth:`ComparisonResult.with_backbone_warnings`); '' otherwise.
    """

    metric: str
    site: str
    backbone_a: str
    backbone_b: str
    pooled: bool
    a: BootstrapCI
    b: BootstrapCI
    diff: BootstrapCI
    fold_test: PairedTestResult
    corrected: PairedTestResult
    analytic: tuple[str, float, float] | None
    higher_is_better: bool
    n: int
    n_pos: int
    members: tuple[tuple[str, str], ...] = ()
    inferences: tuple[Inference, ...] = ()
    n_train: float = float("nan")
    rare_count: int = -1
    folds_a: np.ndarray | None = field(default=None, repr=False)
    folds_b: np.ndarray | None = field(default=None, repr=False)
    tie_warning: str = ""
    shares_a: np.ndarray | None = field(default=None, repr=False)
    shares_b: np.ndarray | None = field(default=None, repr=False)
    design_warning: str = ""

    def tests(self) -> list[tuple[str, float, float]]:
        """(test, statistic, p) of every test run for this pair."""
        if self.inferences:
            return [(i.test, i.statistic, i.p_value) for i in self.inferences]
        out = [(self.fold_test.test, self.fold_test.statistic, self.fold_test.p_value),
               (self.corrected.test, self.corrected.statistic, self.corrected.p_value)]
        if self.analytic is not None:
            out.append(self.analytic)
        return out

    def inference(self, test: str) -> Inference | None:
        """The row of ``test`` ('auto', 'fold-t' -> the Shapiro-chosen fold test)."""
        want = "fold-test" if test in ("auto", "fold-t", "ttest", "wilcoxon") else test
        for inf in self.inferences:
            if inf.family == want:
                return inf
        return None

    @property
    def rare(self) -> bool:
        """Whether the smallest class (or the events) makes a rare endpoint."""
        return is_rare(self.rare_count)

    @property
    def warning(self) -> str:
        """The rare-endpoint, tied-folds and design warnings, '; '-joined ('' when none)."""
        return join_warnings(rare_endpoint_warning(self.rare_count), self.tie_warning,
                             self.design_warning)

    @property
    def backbones(self) -> tuple[str, ...]:
        """The backbones behind the row: its pair, or a pooled row's member pairs."""
        pairs = self.members or ((self.backbone_a, self.backbone_b),)
        return tuple(dict.fromkeys(name for pair in pairs for name in pair))


@dataclass(frozen=True, eq=False)
class ComparisonResult:
    """All pairs and metrics of one comparison on one task.

    Attributes
    ----------
    task : str
    side_a, side_b : str
        As requested (family or backbone names).
    pairs : tuple of PairComparison
    primary_test : str
        The test whose row is ``primary`` (its p is the one shown and adjusted):
        'calibrated-t' (default), or a published procedure by name
        ('auto' = the Shapiro-chosen 'ttest'/'wilcoxon', 'fold-t', 'wilcoxon', 'ttest',
        'corrected-t', 'delong', 'bootstrap').
    params : dict
    """

    task: str
    side_a: str
    side_b: str
    pairs: tuple[PairComparison, ...]
    primary_test: str = DEFAULT_TEST
    params: dict = field(default_factory=dict)

    #: Columns of :meth:`to_frame`, in order.
    COLUMNS = ("task", "metric", "site", "backbone_a", "backbone_b", "pooled", "test",
               "primary", "estimand", "method", "level", "estimate_a", "ci_low_a",
               "ci_high_a", "estimate_b", "ci_low_b", "ci_high_b", "diff", "diff_ci_low",
               "diff_ci_high", "diff_bca_low", "diff_bca_high", "statistic", "df",
               "p_value", "p_holm", "p_bh", "n", "n_pos", "n_train", "rare", "warning")

    def with_backbone_warnings(self, warnings: Mapping[str, str]) -> ComparisonResult:
        """A copy whose rows carry ``warnings[backbone]`` of every backbone behind them
        (:attr:`PairComparison.backbones`; distinct texts '; '-joined)."""
        return replace(self, pairs=tuple(
            replace(pc, design_warning=join_warnings(*(warnings.get(name, "")
                                                       for name in pc.backbones)))
            for pc in self.pairs))

    def _is_primary(self, pc: PairComparison, inf: Inference) -> bool:
        # the requested test, or the default where it does not apply (delong asked for a
        # metric without it, or a pooled row)
        return self._primary(pc) is inf

    def to_frame(self) -> pd.DataFrame:
        """Long ``tests`` table: one row per pair x metric x test (comparisons view).

        Every row's estimates, intervals (level in ``level``, 0.95 by default) and p
        refer to its ``estimand``; ``primary`` marks the row of the requested test (one
        per pair x metric), the p that Holm/BH adjust and the CLI shows. Columns:
        :attr:`COLUMNS`.
        """
        rows = []
        level = 1.0 - float(self.params.get("alpha", 0.05))
        for pc in self.pairs:
            for inf in pc.inferences:
                method = METHODS.get(inf.test, inf.test)
                if pc.pooled:
                    method += f"; pooled over {len(pc.members)} pairs (per-fold means)"
                rows.append({
                    "task": self.task, "metric": pc.metric, "site": pc.site,
                    "backbone_a": pc.backbone_a, "backbone_b": pc.backbone_b,
                    "pooled": pc.pooled, "test": inf.test,
                    "primary": self._is_primary(pc, inf),
                    "estimand": ESTIMANDS[inf.family].format(metric=pc.metric,
                                                             n_train=pc.n_train),
                    "method": method, "level": level,
                    "estimate_a": inf.estimate_a, "ci_low_a": inf.ci_low_a,
                    "ci_high_a": inf.ci_high_a, "estimate_b": inf.estimate_b,
                    "ci_low_b": inf.ci_low_b, "ci_high_b": inf.ci_high_b,
                    "diff": inf.diff, "diff_ci_low": inf.diff_ci_low,
                    "diff_ci_high": inf.diff_ci_high, "diff_bca_low": inf.diff_bca_low,
                    "diff_bca_high": inf.diff_bca_high, "statistic": inf.statistic,
                    "df": inf.df, "p_value": inf.p_value, "p_holm": inf.p_value,
                    "p_bh": inf.p_value, "n": pc.n, "n_pos": pc.n_pos,
                    "n_train": pc.n_train, "rare": pc.rare,
                    "warning": pc.warning,
                })
        return pd.DataFrame(rows, columns=list(self.COLUMNS))

    def _primary(self, pc: PairComparison) -> Inference:
        return pc.inference(self.primary_test) or pc.inference(DEFAULT_TEST)

    def summary_frame(self) -> pd.DataFrame:
        """One row per pair x metric: the primary test's estimates, intervals and p.

        Also the p of the published corrected t (``p_corrected_t``, J - 1 df) and
        DeLong (``p_delong``) for reference, and the rare-endpoint and tied-folds
        ``warning``.
        """
        rows = []
        for pc in self.pairs:
            inf = self._primary(pc)
            delong = pc.inference("delong")
            rows.append({
                "metric": pc.metric, "site": pc.site,
                "a": pc.backbone_a, "b": pc.backbone_b,
                "estimate_a": inf.estimate_a,
                "ci_a": f"{inf.ci_low_a:.3f}-{inf.ci_high_a:.3f}",
                "estimate_b": inf.estimate_b,
                "ci_b": f"{inf.ci_low_b:.3f}-{inf.ci_high_b:.3f}",
                "diff": inf.diff,
                "diff_ci": f"{inf.diff_ci_low:+.3f} to {inf.diff_ci_high:+.3f}",
                "test": inf.test, "p": inf.p_value,
                "p_corrected_t": pc.corrected.p_value,
                "p_delong": delong.p_value if delong is not None else np.nan,
                "estimand": ESTIMANDS[inf.family].format(metric=pc.metric,
                                                         n_train=pc.n_train),
                "warning": pc.warning,
            })
        return pd.DataFrame(rows)

    def summary(self) -> str:
        """Readable lines, one per pair x metric."""
        lines = [f"{self.side_a} vs {self.side_b} on {self.task}:"]
        for pc in self.pairs:
            inf = self._primary(pc)
            warn = f"  [{pc.warning}]" if pc.warning else ""
            lines.append(
                f"  {pc.metric:<6} {pc.backbone_a} {inf.estimate_a:.3f} vs {pc.backbone_b} "
                f"{inf.estimate_b:.3f}: diff {inf.diff:+.3f} "
                f"[{inf.diff_ci_low:+.3f}, {inf.diff_ci_high:+.3f}], {inf.test} "
                f"p={inf.p_value:.3g}{warn}")
        return "\n".join(lines)


def bootstrap_p_value(boot_diff: np.ndarray) -> float:
    """Two-sided percentile-bootstrap p of ``diff = 0``: ``2 min(P*(<= 0), P*(>= 0))``."""
    b = np.asarray(boot_diff, float)
    b = b[np.isfinite(b)]
    if b.size == 0:
        return float("nan")
    return float(min(1.0, 2 * min(np.mean(b <= 0), np.mean(b >= 0))))


def _t_inference(test: str, fa: np.ndarray, fb: np.ndarray, result: PairedTestResult, *,
                 n_train: float, n_test: float, n_folds: int | None, df, level: float,
                 naive: bool = False, correction: float = 1.0,
                 single_correction: tuple[float, float] | None = None,
                 bounds: tuple[float, float] | None = None,
                 single_extra: tuple[float, float] = (0.0, 0.0),
                 single_floor: tuple[float, float] = (0.0, 0.0)) -> Inference:
    """Estimates = mean per-fold values; intervals from the same variance as the test
    (each side's interval with its ``single_correction`` when given, its variance raised to
    ``single_floor`` and ``single_extra`` added)."""
    def interval(v, bounds=None, correction=correction, extra=0.0, floor=0.0):
        if naive:  # plain t over folds: se = s / sqrt(J), J - 1 df
            v = v[np.isfinite(v)]
            nan = float("nan")
            if v.size < 2:
                return (float(v.mean()) if v.size else nan), nan, nan
            half = special.stdtrit(v.size - 1, 1 - (1 - level) / 2) * v.std(ddof=1) / np.sqrt(
                v.size)
            return float(v.mean()), float(v.mean() - half), float(v.mean() + half)
        ci = corrected_resampled_interval(v, n_train=n_train, n_test=n_test, level=level,
                                          df=df, n_folds=n_folds, correction=correction,
                                          bounds=bounds, extra_variance=extra,
                                          variance_floor=floor)
        return ci.estimate, ci.ci_low, ci.ci_high

    ok = np.isfinite(fa) & np.isfinite(fb)
    span = None if bounds is None else (bounds[0] - bounds[1], bounds[1] - bounds[0])
    side = (correction, correction) if single_correction is None else single_correction
    ea = interval(np.where(ok, fa, np.nan).reshape(-1), bounds, side[0], single_extra[0],
                  single_floor[0])
    eb = interval(np.where(ok, fb, np.nan).reshape(-1), bounds, side[1], single_extra[1],
                  single_floor[1])
    ed = interval((fa - fb).reshape(-1), span)
    return Inference(test, *ea, *eb, *ed, result.statistic, result.p_value, result.df)


def _pair(metric: str, site: str, name_a: str, name_b: str, da: MetricDraws, db: MetricDraws,
          *, alpha: float, test: str, n_train: float, n_test: float, analytic,
          higher_is_better: bool, n: int, n_pos: int, pooled: bool,
          members: tuple[tuple[str, str], ...], n_folds: int | None = None,
          delong: Inference | None = None, rare_count: int = -1,
          kind: str | None = None,
          n_features: tuple[int | None, int | None] = (None, None)) -> PairComparison:
    level = 1.0 - alpha
    side_a = bootstrap_ci(da.point, da.boot, da.jack, alpha)
    side_b = bootstrap_ci(db.point, db.boot, db.jack, alpha)
    jack = None if da.jack is None or db.jack is None else da.jack - db.jack
    diff = bootstrap_ci(da.point - db.point, da.boot - db.boot, jack, alpha)
    fold_diff = (da.folds - db.folds).reshape(-1)
    fold_diff = fold_diff[np.isfinite(fold_diff)]
    method = test if test in ("wilcoxon", "ttest") else "auto"
    k = n_folds or da.folds.shape[1]
    per_fold = rare_count / k if rare_count >= 0 else None
    correction = calibrated_correction(metric, kind, minority_per_fold=per_fold,
                                       n_train=n_train, n_features=_widest(n_features))
    single_correction = tuple(calibrated_correction(
        metric, kind, minority_per_fold=per_fold, single=True, n_train=n_train,
        predicted_minority_per_fold=predicted_minority_per_fold(d.shares, n=n, n_folds=k),
        n_features=features) for d, features in zip((da, db), n_features))
    single_extra, single_floor = zip(*(single_variance_terms(d.folds, d.shares, metric=metric,
                                                             kind=kind, n=n, n_pos=n_pos,
                                                             n_folds=k)
                                       for d in (da, db)))
    nan = float("nan")
    if fold_diff.size >= 2:
        fold_test = paired_test(fold_diff, method=method)
        corrected = corrected_resampled_ttest(fold_diff, n_train=n_train, n_test=n_test)
        calibrated = corrected_resampled_ttest(fold_diff, n_train=n_train, n_test=n_test,
                                               correction=correction, name=DEFAULT_TEST)
    else:
        fold_test = PairedTestResult(method, nan, nan, nan, int(fold_diff.size))
        corrected = PairedTestResult("corrected-t", nan, nan, nan, int(fold_diff.size))
        calibrated = PairedTestResult(DEFAULT_TEST, nan, nan, nan, int(fold_diff.size))
    common = dict(n_train=n_train, n_test=n_test, n_folds=max(2, k), level=level)
    inferences = [
        _t_inference(DEFAULT_TEST, da.folds, db.folds, calibrated, df="J",
                     correction=correction, single_correction=single_correction,
                     bounds=METRIC_BOUNDS.get(metric), single_extra=single_extra,
                     single_floor=single_floor,
                     **common),
        _t_inference("corrected-t", da.folds, db.folds, corrected, df="J", **common),
        _t_inference(fold_test.test, da.folds, db.folds, fold_test, df="J", naive=True,
                     **common),
    ]
    if delong is not None:
        inferences.append(delong)
    inferences.append(Inference(
        "bootstrap", side_a.estimate, side_a.ci_low, side_a.ci_high, side_b.estimate,
        side_b.ci_low, side_b.ci_high, diff.estimate, diff.ci_low, diff.ci_high, nan,
        bootstrap_p_value(da.boot - db.boot), nan, diff.bca_low, diff.bca_high))
    tie_warning = ""
    if test in (DEFAULT_TEST, "corrected-t"):
        site_label = "" if site == "all" else f" at {site}"
        tie_warning = tied_folds_warning(
            fold_diff, n_train=n_train, n_test=n_test, alpha=alpha, test=test,
            correction=correction if test == DEFAULT_TEST else 1.0,
            label=f"{name_a} vs {name_b}, {metric}{site_label}")
    return PairComparison(metric, site, name_a, name_b, pooled, side_a, side_b, diff,
                          fold_test, corrected, analytic, higher_is_better, n, n_pos, members,
                          tuple(inferences), float(n_train), int(rare_count), da.folds,
                          db.folds, tie_warning, da.shares, db.shares)


def delong_inference(target, scores_a: np.ndarray, scores_b: np.ndarray,
                     alpha: float = 0.05) -> Inference:
    """DeLong row: each side's AUC with its DeLong CI, the paired DeLong test of A - B.

    Parameters
    ----------
    target : ndarray of bool, shape (n,)
    scores_a, scores_b : ndarray, shape (n,)
        Scores of the two sides on the same patients (repeat-averaged out-of-fold scores
        in the CV protocol; one held-out site's predictions under LOSO).
    alpha : float

    Returns
    -------
    Inference
        Test 'delong'; ``statistic`` is the paired z, ``p_value`` its two-sided p.
    """
    from neurofeat.analysis.delong import delong_auc, delong_test

    y = np.asarray(target, bool)
    a = delong_auc(y, scores_a, alpha)
    b = delong_auc(y, scores_b, alpha)
    t = delong_test(y, scores_a, scores_b, alpha=alpha)
    return Inference("delong", a.auc, a.ci_low, a.ci_high, b.auc, b.ci_low, b.ci_high,
                     t.diff, t.diff_ci_low, t.diff_ci_high, t.z, t.p_value)


def _widest(dims: Iterable[int | None]) -> int | None:
    """The largest of some input dimensions (None if any is unknown)."""
    dims = list(dims)
    return None if not dims or None in dims else max(dims)


def compare_scores(scorers: Sequence[Scorer], targets: Mapping[str, Any] | Any,
                   strata: np.ndarray, scores: Mapping[str, np.ndarray],
                   pairs: Sequence[tuple[str, str]], fold_ids: np.ndarray, *, task: str,
                   n_train: float, n_test: float, n_boot: int = 2000, seed: int = 0,
                   test: str = DEFAULT_TEST, alpha: float = 0.05, side_a: str = "",
                   side_b: str = "", site: str = "all", rows: np.ndarray | None = None,
                   n_folds: int | None = None, n_pos: int | None = None,
                   bca: bool = True, rare_count: int | None = None,
                   kind: str | None = None,
                   n_features: Mapping[str, int] | None = None) -> ComparisonResult:
    """Paired comparison of out-of-fold scores on identical folds and resamples.

    Parameters
    ----------
    scorers : sequence of Scorer
    targets : mapping scorer name -> target, or one target for all scorers
    strata : ndarray, shape (n,)
        Bootstrap strata (class for binary tasks, event for survival).
    scores : mapping backbone -> ndarray (R, n)
        Out-of-fold predictions on the same patients (same row order) and fold plan.
    pairs : sequence of (backbone_a, backbone_b)
    fold_ids : ndarray of int, shape (R, n)
        The fold plan shared by all backbones.
    task : str
        Part of the bootstrap seed derivation.
    n_train, n_test : float
        Mean training / test fold sizes (corrected t-test).
    n_boot, seed, alpha : bootstrap settings.
    test : str
        The primary test, one of :data:`~neurofeat.analysis.paired_tests.TEST_CHOICES`:
        'calibrated-t' (default) or a published procedure by name
        ('auto', 'wilcoxon', 'ttest'/'fold-t', 'corrected-t', 'delong', 'bootstrap').
        Every test is computed and tabulated; this only marks the ``primary`` row
        ('wilcoxon'/'ttest' also force the fold test, otherwise the Shapiro rule picks
        it). For pooled rows and metrics without DeLong, 'delong' falls back to the
        default.
    side_a, side_b : str
        Names used on the pooled row (default: 'A'/'B').
    site : str
        Label of the rows (e.g. a site name when ``rows`` selects that site).
    rows : ndarray of int, optional
        Restrict every statistic to these rows (per-site comparison).
    n_pos : int, optional
        Reported positives/events (default: ``strata`` sum when boolean).
    bca : bool
        Compute jackknife (BCa) intervals.
    rare_count : int, optional
        Size of the rarest outcome class (or the events) behind the rare-endpoint
        warning; default ``min(n_pos, n - n_pos)``.
    kind : {'binary', 'continuous', 'survival'}, optional
        Task kind (the probe behind the scores): selects the calibrated correction of
        the default test
        (:func:`~neurofeat.analysis.correction_factors.calibrated_correction`).
    n_features : mapping backbone -> int, optional
        Input dimension of each backbone's model: one backbone's interval takes the
        high-dimensional factor where it exceeds ``n_train``
        (:data:`~neurofeat.analysis.correction_factors.CALIBRATED_CORRECTION_HIGH_DIMENSIONAL`;
        a pooled side takes its widest member's), a difference that of its wider side
        (``CALIBRATED_CORRECTION_HIGH_DIMENSIONAL_DIFFERENCE`` of
        :mod:`~neurofeat.analysis.correction_factors`).

    Returns
    -------
    ComparisonResult
    """
    if test not in TEST_CHOICES:
        raise ValueError(f"test must be one of {', '.join(TEST_CHOICES)}, got {test!r}")
    test = "ttest" if test == "fold-t" else test
    strata = np.asarray(strata)
    n = strata.size
    rows_arr = np.arange(n) if rows is None else np.asarray(rows)
    for name, s in scores.items():
        if np.atleast_2d(s).shape[1] != n:
            raise ValueError(f"scores of {name!r} cover {np.atleast_2d(s).shape[1]} patients, "
                             f"the strata {n}; align the backbones first")
    boot_seed = derive_seed("bootstrap", task, seed, site)
    boot_index = rows_arr[stratified_bootstrap_indices(strata[rows_arr], n_boot, boot_seed)]
    if n_pos is None:
        n_pos = int(np.asarray(strata[rows_arr]).astype(bool).sum())
    if rare_count is None:
        rare_count = int(min(n_pos, rows_arr.size - n_pos))
    names = sorted({x for pair in pairs for x in pair})
    dims = dict(n_features or {})
    results: list[PairComparison] = []
    for scorer in scorers:
        target = targets.get(scorer.name) if isinstance(targets, Mapping) else targets
        draws = {name: metric_draws(scorer, target, scores[name], fold_ids, boot_index,
                                    None if rows is None else rows_arr, n_folds, bca)
                 for name in names}
        common = dict(alpha=alpha, test=test, n_train=n_train, n_test=n_test,
                      higher_is_better=scorer.higher_is_better, n=int(rows_arr.size),
                      n_pos=n_pos, n_folds=n_folds, rare_count=rare_count, kind=kind)
        for a, b in pairs:
            analytic = delong = None
            if scorer.analytic_test is not None:
                sub_a = draws[a].mean_scores[rows_arr]
                sub_b = draws[b].mean_scores[rows_arr]
                sub_target = np.asarray(target)[rows_arr] if rows is not None else target
                if scorer.analytic_test is AUC.analytic_test:
                    # the AUC's hook is the paired DeLong test: run it once, as the full
                    # inference (CIs too), and take the hook's (name, z, p) from it
                    delong = delong_inference(sub_target, sub_a, sub_b, alpha)
                    analytic = ("delong", delong.statistic, delong.p_value)
                else:
                    analytic = scorer.analytic_test(sub_target, sub_a, sub_b)
            results.append(_pair(scorer.name, site, a, b, draws[a], draws[b], pooled=False,
                                 analytic=analytic, members=((a, b),), delong=delong,
                                 n_features=(dims.get(a), dims.get(b)), **common))
        if len(pairs) > 1:
            pooled_a = MetricDraws.mean([draws[a] for a, _ in pairs])
            pooled_b = MetricDraws.mean([draws[b] for _, b in pairs])
            results.append(_pair(scorer.name, site, side_a or "A", side_b or "B", pooled_a,
                                 pooled_b, pooled=True, analytic=None,
                                 members=tuple(pairs),
                                 n_features=(_widest(dims.get(a) for a, _ in pairs),
                                             _widest(dims.get(b) for _, b in pairs)),
                                 **common))
    params = {"n_boot": n_boot, "seed": seed, "alpha": alpha, "test": test, "kind": kind,
              "n_train": n_train, "n_test": n_test, "pairs": [list(p) for p in pairs]}
    return ComparisonResult(task, side_a or "A", side_b or "B", tuple(results), test, params)


def adjust_across(frame: pd.DataFrame, across: str = "task") -> pd.DataFrame:
    """Holm and BH p-values within each family of rows that differ only in ``across``.

    Families are the groups of (metric, test, backbone_a, backbone_b, site, task) minus
    ``across`` (Wilcoxon and paired t count as one test, the Shapiro-chosen fold test);
    e.g. ``across='task'`` corrects each comparison over all tasks, ``across='site'``
    over sites.

    Returns
    -------
    DataFrame
        A copy with ``p_holm`` and ``p_bh`` filled.
    """
    frame = frame.copy()
    frame["p_holm"] = np.nan
    frame["p_bh"] = np.nan
    if frame.empty:
        return frame
    # Wilcoxon and paired t are the same "fold test" chosen per comparison by Shapiro-Wilk,
    # so they form one family.
    family = frame["test"].replace({"wilcoxon": "fold-test", "ttest": "fold-test"}) \
        if "test" in frame.columns else None
    keys = [c for c in ("task", "metric", "backbone_a", "backbone_b", "site")
            if c in frame.columns and c != across]
    by = [frame[k] for k in keys] + ([family] if family is not None else [])
    for _, group in frame.groupby(by, dropna=False, sort=False):
        frame.loc[group.index, "p_holm"] = adjust_pvalues(group["p_value"].to_numpy(), "holm")
        frame.loc[group.index, "p_bh"] = adjust_pvalues(group["p_value"].to_numpy(), "fdr_bh")
    return frame


@dataclass(frozen=True)
class ProbeSetup:
    """What a task kind fits and scores: labels, probe factory, its output, threshold."""

    y: np.ndarray
    labels: np.ndarray
    fit_y: np.ndarray
    factory: Callable[[], Any]
    output: str
    cut: float


def probe_setup(kind: str, y: np.ndarray, *, threshold: float | None, task: str,
                linear_params: dict | None = None,
                ridge_params: dict | None = None) -> ProbeSetup:
    """Binary: LinearProbe on the 0/1 labels, probabilities cut at 0.5; continuous:
    RidgeProbe on the raw value, predictions cut at ``threshold``."""
    from neurofeat.analysis.probes import LinearProbe, RidgeProbe

    y = np.asarray(y, dtype=float)
    if kind == "continuous":
        if threshold is None:
            raise ValueError(f"task {task!r} is continuous: give its threshold")
        rparams = dict(ridge_params or {})
        return ProbeSetup(y, y >= threshold, y, lambda: RidgeProbe(**rparams), "predict",
                          float(threshold))
    if kind == "binary":
        params = dict(linear_params or {})
        labels = y.astype(bool)
        return ProbeSetup(y, labels, labels, lambda: LinearProbe(**params), "proba", 0.5)
    raise ValueError(f"compare_probes handles binary and continuous tasks, not {kind!r}")


def compare_probes(embeddings: Mapping[str, np.ndarray], y: np.ndarray, *,
                   patient_ids: np.ndarray, pairs: Sequence[tuple[str, str]], task: str,
                   kind: str = "binary", threshold: float | None = None,
                   metrics: Sequence[str] = ("auc", "ba"), n_splits: int = 5,
                   n_repeats: int = 5, n_boot: int = 2000, seed: int = 0,
                   test: str = DEFAULT_TEST, side_a: str = "", side_b: str = "",
                   linear_params: dict | None = None, on_split=None,
                   ridge_params: dict | None = None, protocol: str = "cv",
                   sites: np.ndarray | None = None) -> ComparisonResult | LosoComparison:
    """Fit the probe of every backbone on the same folds, then :func:`compare_scores`.

    With ``protocol='loso'`` the folds are the sites (each held out once, the probe
    trained on the others; identical for every backbone) and the comparison is
    :func:`~neurofeat.analysis.loso.compare_loso_scores` (per-site rows, the pooled
    ``loso-z`` row and the worst site).

    Parameters
    ----------
    embeddings : mapping backbone -> ndarray (n, d)
        Rows are the same patients in the same order for every backbone.
    y : ndarray, shape (n,)
        0/1 (binary) or the raw value (continuous; binarised at ``threshold``).
    patient_ids : ndarray of str, shape (n,)
    pairs : sequence of (backbone_a, backbone_b)
    task : str
    kind : {'binary', 'continuous'}
    metrics : sequence of str
        Scorer names (auc, ba, sensitivity, specificity; continuous also spearman, mae).
    n_splits, n_repeats, n_boot, seed, test : see :func:`compare_scores`.
    linear_params : dict, optional
        Keyword arguments of :class:`~neurofeat.analysis.probes.LinearProbe`.
    ridge_params : dict, optional
        Keyword arguments of :class:`~neurofeat.analysis.probes.RidgeProbe` (continuous).
    on_split : callable, optional
        Progress callback, called once per fitted split.
    protocol : {'cv', 'loso'}
    sites : ndarray of str, shape (n,), optional
        Site of each patient (required for ``protocol='loso'``).

    Returns
    -------
    ComparisonResult, or LosoComparison for ``protocol='loso'``

    Raises
    ------
    FoldError
        LOSO with fewer than two sites or a site with one class (named).
    """
    from neurofeat.analysis.folds import leave_one_site_out_plan, stratified_kfold_plan
    from neurofeat.analysis.protocols import out_of_fold
    from neurofeat.analysis.scoring import get_scorer

    setup = probe_setup(kind, y, threshold=threshold, task=task, linear_params=linear_params,
                        ridge_params=ridge_params)
    y, labels = setup.y, setup.labels
    scorers = [get_scorer(m, setup.cut) for m in metrics]
    if kind == "binary" and any(s.name in ("spearman", "mae") for s in scorers):
        raise ValueError("spearman and mae are for continuous tasks; use auc, ba, "
                         "sensitivity or specificity")
    if protocol == "loso":
        from neurofeat.analysis.loso import LOSO_TESTS, check_loso_sites

        if sites is None:
            raise ValueError("protocol 'loso' needs the site of every patient")
        if test not in LOSO_TESTS:  # refuse before fitting anything
            raise ValueError(f"--test {test} applies to repeated cross-validation; with "
                             f"--protocol loso use {', '.join(LOSO_TESTS)}")
        check_loso_sites(sites, labels, task=task)
        plan = leave_one_site_out_plan(patient_ids, sites, task=task, seed=seed, y=labels)
    elif protocol == "cv":
        plan = stratified_kfold_plan(patient_ids, labels, n_splits=n_splits,
                                     n_repeats=n_repeats, task=task, seed=seed)
    else:
        raise ValueError(f"protocol must be 'cv' or 'loso', got {protocol!r}")
    names = sorted({x for pair in pairs for x in pair})
    scores = {}
    n_train = n_test = 0.0
    for name in names:
        oof = out_of_fold(embeddings[name], setup.fit_y, plan, setup.factory,
                          output=setup.output, strata=labels,
                          on_split=on_split)
        scores[name] = oof.scores
        n_train, n_test = oof.train_test_sizes()
    targets = {s.name: (y if s.name in ("spearman", "mae") else labels) for s in scorers}
    if protocol == "loso":
        from neurofeat.analysis.loso import compare_loso_scores

        result = compare_loso_scores(scorers, targets, labels, scores, pairs, sites,
                                     task=task, n_boot=n_boot, seed=seed, test=test,
                                     side_a=side_a, side_b=side_b, kind=kind)
        result.params.update({"kind": kind, "threshold": setup.cut, "metrics": list(metrics),
                              "n_train": n_train, "n_test": n_test})
        return result
    result = compare_scores(scorers, targets, labels, scores, pairs, plan.fold_ids, task=task,
                            n_train=n_train, n_test=n_test, n_boot=n_boot, seed=seed,
                            test=test, side_a=side_a, side_b=side_b, n_folds=plan.n_folds,
                            kind=kind)
    result.params.update({"n_splits": n_splits, "n_repeats": n_repeats, "kind": kind,
                          "threshold": setup.cut, "metrics": list(metrics)})
    return result
