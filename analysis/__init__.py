"""neurofeat.analysis: pure statistics on embeddings (numpy/pandas/sklearn/scipy/statsmodels).

No torch, no store access, no printing: arrays and DataFrames in, frozen dataclasses out.

Modules
-------
metrics         AUC, balanced accuracy, sensitivity, specificity, Spearman/MAE (batched)
folds           fold plans from task + seed + patient ids (cv, loso, per-site, fractions)
bootstrap       stratified bootstrap indices, percentile and BCa intervals
delong          DeLong variance/CI and paired test (Sun & Xu midrank algorithm)
paired_tests    corrected t (J-1 df) and its interval, Shapiro -> paired t / Wilcoxon
                (published), Holm/BH
correction_factors  the calibrated default's measured factors and one backbone's variance
                terms
probes          LinearProbe (L2 logistic, C by inner CV), RidgeProbe, KNNProbe
scoring         Scorer: one metric over out-of-fold predictions, all resamples at once
protocols       out-of-fold predictions per plan, probe reports (ProbeResult)
compare         paired comparison of backbones/families over any Scorer (one row per test)
simulation      exact-null and planted-effect cohorts for the calibration harness
survival        Cox models, c-indices, Kaplan-Meier, log-rank (subpackage)
"""

from neurofeat.analysis.bootstrap import BootstrapCI, bootstrap_ci, stratified_bootstrap_indices
from neurofeat.analysis.compare import ComparisonResult, Inference, compare_probes, compare_scores
from neurofeat.analysis.pairing import FAMILIES, pair_backbones
from neurofeat.analysis.delong import delong_auc, delong_test
from neurofeat.analysis.folds import FoldError, FoldPlan, stratified_kfold_plan
from neurofeat.analysis.paired_tests import (DEFAULT_TEST, TEST_CHOICES, adjust_pvalues,
                                             corrected_resampled_interval,
                                             corrected_resampled_ttest, paired_test)
from neurofeat.analysis.probes import KNNProbe, LinearProbe, RidgeProbe
from neurofeat.analysis.protocols import OutOfFold, ProbeResult, out_of_fold, run_probe
from neurofeat.analysis.scoring import AUC, Scorer
from neurofeat.analysis.simulation import (SimulationSetting, expected_performance,
                                           simulate_cohort)

__all__ = [
    "AUC", "BootstrapCI", "ComparisonResult", "DEFAULT_TEST", "FAMILIES", "FoldError",
    "FoldPlan", "Inference", "KNNProbe", "SimulationSetting", "TEST_CHOICES",
    "corrected_resampled_interval", "expected_performance", "simulate_cohort",
    "LinearProbe", "OutOfFold", "ProbeResult", "RidgeProbe", "Scorer", "adjust_pvalues",
    "bootstrap_ci", "compare_probes", "compare_scores", "corrected_resampled_ttest",
    "delong_auc", "delong_test", "out_of_fold", "pair_backbones", "paired_test", "run_probe",
    "stratified_bootstrap_indices", "stratified_kfold_plan",
]
