"""Survival analysis on embeddings: Cox models, c-indices, Kaplan–Meier, log-rank.

Pure computation (numpy/pandas/scikit-survival); no store access, no printing.

Modules
-------
validation      input checks (times > 0, events present, minimum cohort size)
kaplan_meier    KM estimator with Greenwood CIs and numbers at risk
logrank         (multi-group) log-rank test; bare two-group chi-squared statistic
permutation     permutation log-rank test of cross-validated risk groups (exact)
cox             Coxnet and PCA+Cox estimators (standardised within fold)
concordance     Harrell's and Uno's C, vectorised paired bootstrap
time_auc        cumulative/dynamic AUC at horizons, integrated Brier score
risk_groups     median split at the training fold's median risk
protocol        out-of-fold risk under cv / loso / per-site plans
evaluation      pooled and per-site scoring of out-of-fold predictions
compare         paired comparison of backbones on a survival task
plots           KM figures (censoring ticks, numbers at risk, log-rank p)
"""

from neurofeat.analysis.survival.concordance import (
    ConcordancePairs,
    bootstrap_concordance,
    concordance_null_variance,
    concordance_pairs,
    default_tau,
    harrell_c,
    uno_c,
)
from neurofeat.analysis.survival.cox import COX_MODELS, CoxnetRisk, PCACoxRisk, make_cox_model
from neurofeat.analysis.survival.evaluation import (
    SurvivalEvaluation,
    evaluate_survival,
    site_subsets,
)
from neurofeat.analysis.survival.kaplan_meier import (
    KaplanMeierResult,
    kaplan_meier,
    number_at_risk,
)
from neurofeat.analysis.survival.logrank import LogRankResult, logrank_chisq, logrank_test
from neurofeat.analysis.survival.permutation import (
    DEFAULT_PERMUTATIONS,
    PermutationLogRankResult,
    permutation_logrank_test,
)
from neurofeat.analysis.survival.protocol import (
    SurvivalCVResult,
    cross_validated_risk,
    survival_fold_plan,
)
from neurofeat.analysis.survival.risk_groups import MedianSplit, median_split
from neurofeat.analysis.survival.time_auc import (
    BrierResult,
    TimeAUCResult,
    integrated_brier,
    time_dependent_auc,
)
from neurofeat.analysis.survival.validation import (
    SurvivalDataError,
    check_min_patients,
    check_survival_data,
)

__all__ = [
    "BrierResult",
    "COX_MODELS",
    "DEFAULT_PERMUTATIONS",
    "ConcordancePairs",
    "CoxnetRisk",
    "KaplanMeierResult",
    "LogRankResult",
    "MedianSplit",
    "PermutationLogRankResult",
    "PCACoxRisk",
    "SurvivalCVResult",
    "SurvivalDataError",
    "SurvivalEvaluation",
    "TimeAUCResult",
    "bootstrap_concordance",
    "check_min_patients",
    "check_survival_data",
    "concordance_null_variance",
    "concordance_pairs",
    "cross_validated_risk",
    "default_tau",
    "evaluate_survival",
    "harrell_c",
    "integrated_brier",
    "kaplan_meier",
    "logrank_chisq",
    "logrank_test",
    "make_cox_model",
    "median_split",
    "number_at_risk",
    "permutation_logrank_test",
    "site_subsets",
    "survival_fold_plan",
    "time_dependent_auc",
    "uno_c",
]
