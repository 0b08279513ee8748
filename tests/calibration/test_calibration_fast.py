"""Fast calibration checks of the default tests (issue 13), a few hundred exact nulls each.

The full harness (``benchmarks/bench_calibration.py``) runs the real probes; here a
closed-form fixed-penalty ridge probe on d = 4 keeps each check to seconds. The test
statistics only see per-fold metrics, so what is checked is the inference over repeated
CV, not the probe. Each rejection rate at alpha = 0.05 must fall inside a binomial band
(+- 3 s.e. around 0.05, s.e. from the number of replications: the four pairs of one
cohort share patients, so replications, not rows, are the unit). The published fold-t
is shown to be far outside it (its documented defect).
"""

from __future__ import annotations

import numpy as np
import pytest

from neurofeat.analysis.compare import compare_scores
from neurofeat.analysis.folds import stratified_kfold_plan, survival_kfold_plan
from neurofeat.analysis.paired_tests import DEFAULT_TEST
from neurofeat.analysis.scoring import get_scorer
from neurofeat.analysis.simulation import SimulationSetting, simulate_cohort
from neurofeat.analysis.survival.compare import compare_survival_scores

A = ("a1", "a2", "a3", "a4")
B = ("b1", "b2", "b3", "b4")
PAIRS = list(zip(A, B))


def ridge_oof(X: np.ndarray, target: np.ndarray, fold_ids: np.ndarray,
              penalty: float = 10.0) -> np.ndarray:
    """Out-of-fold predictions of a standardised fixed-penalty ridge, shape (R, n)."""
    scores = np.full(fold_ids.shape, np.nan)
    for r in range(fold_ids.shape[0]):
        for f in np.unique(fold_ids[r]):
            test = fold_ids[r] == f
            Xtr, ytr = X[~test], target[~test]
            mu, sd = Xtr.mean(0), Xtr.std(0)
            Z = (Xtr - mu) / sd
            w = np.linalg.solve(Z.T @ Z + penalty * np.eye(Z.shape[1]), Z.T @ (ytr - ytr.mean()))
            scores[r, test] = ((X[test] - mu) / sd) @ w + ytr.mean()
    return scores


def band(reps: int, rate: float = 0.05) -> tuple[float, float]:
    se = np.sqrt(rate * (1 - rate) / reps)
    return rate - 3 * se, rate + 3 * se


def _null_rates(kind: str, reps: int, n_repeats: int = 3,
                n_sites: int = 1) -> dict[tuple[str, bool], float]:
    setting = SimulationSetting(kind=kind, n=60, d=4, prevalence=1 / 3, event_rate=0.7,
                                n_sites=n_sites, site_shift=1.0)
    signals = {name: 0.0 for name in A + B}
    hits: dict[tuple[str, bool], list[float]] = {}
    for rep in range(reps):
        cohort = simulate_cohort(setting, signals, np.random.default_rng(1000 + rep))
        if kind == "survival":
            plan = survival_kfold_plan(cohort.patient_ids, cohort.event, n_splits=5,
                                       n_repeats=n_repeats, task=f"c{rep}")
            target = np.log(cohort.time)
            scores = {b: -ridge_oof(X, target, plan.fold_ids)
                      for b, X in cohort.embeddings.items()}
            _, frame, _ = compare_survival_scores(
                scores, cohort.time, cohort.event, plan.fold_ids, PAIRS, task="os",
                n_train=48.0, n_test=12.0, n_folds=5, n_boot=10, seed=rep, side_a="A",
                side_b="B", by_site=False)
            frame = frame[frame["metric"] == "harrell_c"]
        else:
            labels = cohort.y.astype(bool) if kind == "binary" else cohort.y >= 0
            plan = stratified_kfold_plan(cohort.patient_ids, labels, n_splits=5,
                                         n_repeats=n_repeats, task=f"c{rep}")
            target = cohort.y.astype(float)
            scores = {b: ridge_oof(X, target, plan.fold_ids)
                      for b, X in cohort.embeddings.items()}
            cut = float(np.mean(target)) if kind == "binary" else 0.0
            frame = compare_scores([get_scorer("auc"), get_scorer("ba", cut)], labels,
                                   labels, scores, PAIRS, plan.fold_ids, task=f"c{rep}",
                                   n_train=48.0, n_test=12.0, n_boot=10, seed=rep,
                                   side_a="A", side_b="B", n_folds=5, bca=False).to_frame()
        frame = frame.assign(test=frame["test"].replace({"wilcoxon": "auto", "ttest": "auto"}))
        for (test, pooled), g in frame.groupby(["test", "pooled"]):
            hits.setdefault((test, pooled), []).append(float((g["p_value"] < 0.05).mean()))
    return {key: float(np.mean(v)) for key, v in hits.items()}


@pytest.fixture(scope="module")
def binary_rates():
    return _null_rates("binary", 160)


@pytest.mark.slow
@pytest.mark.parametrize("pooled", [False, True], ids=["pairs", "pooled"])
def test_default_holds_its_level_binary(binary_rates, pooled):
    low, high = band(160)
    assert low <= binary_rates[(DEFAULT_TEST, pooled)] <= high, binary_rates


@pytest.mark.slow
def test_default_holds_its_level_with_shared_site_effects():
    """All eight backbones carry the same site shifts (3 sites): the pooled family row
    averages four pairs that share patients, folds and site structure. Its s^2 comes
    from the pooled per-fold series, which carries the members' correlation (measured
    at 1,000 replications with the real probe: 4.1 % for AUC and BA)."""
    rates = _null_rates("binary", 160, n_sites=3)
    low, high = band(160)
    assert low <= rates[(DEFAULT_TEST, True)] <= high, rates
    assert low <= rates[(DEFAULT_TEST, False)] <= high, rates


@pytest.mark.slow
def test_published_fold_test_is_anticonservative(binary_rates):
    """The NeuroRAD-FM rule (Shapiro -> t / Wilcoxon over folds) rejects far too often."""
    assert binary_rates[("auto", False)] > 0.15


@pytest.mark.slow
def test_default_holds_its_level_continuous():
    rates = _null_rates("continuous", 100)
    low, high = band(100)
    assert low <= rates[(DEFAULT_TEST, False)] <= high, rates
    assert low <= rates[(DEFAULT_TEST, True)] <= high, rates


@pytest.mark.slow
def test_default_holds_its_level_survival():
    rates = _null_rates("survival", 60)
    low, high = band(60)
    assert low <= rates[(DEFAULT_TEST, False)] <= high, rates


def test_calibrated_intervals_stay_in_the_metric_range():
    """A t interval of a bounded metric is clipped to [0, 1] (and a difference to
    [-1, 1]); the unclipped bound is what the clip replaced."""
    import numpy as np

    from neurofeat.analysis.paired_tests import METRIC_BOUNDS, corrected_resampled_interval

    folds = np.array([[0.99, 0.6, 1.0], [1.0, 0.7, 0.98]])
    raw = corrected_resampled_interval(folds, n_train=20, n_test=10, metric="auc")
    clipped = corrected_resampled_interval(folds, n_train=20, n_test=10, metric="auc",
                                           bounds=METRIC_BOUNDS["auc"])
    assert raw.ci_high > 1.0 and clipped.ci_high == 1.0
    assert clipped.ci_low == raw.ci_low and clipped.estimate == raw.estimate
