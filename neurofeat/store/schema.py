"""Arrow schemas of the store's tables (DESIGN.md section 3).

These schemas are the store's contract: anything that reads Hive-partitioned Parquet
(DuckDB, Polars, PyArrow, Spark) sees exactly these columns. Unknown values are NULL,
never a sentinel.
"""

from __future__ import annotations

import pyarrow as pa

__all__ = [
    "SEQUENCES",
    "BOOLEAN_MARKERS",
    "PERCENT_MARKERS",
    "CLINICAL_COLUMNS",
    "PATIENT_COLUMNS",
    "PATIENTS_SCHEMA",
    "SCANS_SCHEMA",
    "CLINICAL_SCHEMA",
    "INGEST_REJECTS_SCHEMA",
    "EXTRACT_FAILURES_SCHEMA",
    "TABLE_SCHEMAS",
    "embeddings_schema",
    "CI_LEVEL",
    "RUN_AUTO_COLUMNS",
    "METRICS_SCHEMA",
    "TESTS_SCHEMA",
    "RUN_TABLE_SCHEMAS",
    "run_table_schema",
]

SEQUENCES: tuple[str, ...] = ("t1", "t1ce", "t2", "flair")

BOOLEAN_MARKERS: tuple[str, ...] = (
    "idh1", "mgmt", "codel_1p19q", "egfr", "atrx", "tp53", "cdkn2a", "tert",
)
PERCENT_MARKERS: tuple[str, ...] = ("ki67", "p53_ihc")

_TS = pa.timestamp("us", tz="UTC")

PATIENTS_SCHEMA = pa.schema(
    [
        pa.field("patient_id", pa.string(), nullable=False),
        pa.field("site", pa.string(), nullable=False),
        pa.field("cohort", pa.string()),
        pa.field("age", pa.float64()),
        pa.field("sex", pa.string()),
        pa.field("grade", pa.int16()),
        pa.field("histology", pa.string()),
        pa.field("ingest_run_id", pa.string()),
        pa.field("ingested_at", _TS),
    ]
)

SCANS_SCHEMA = pa.schema(
    [
        pa.field("patient_id", pa.string(), nullable=False),
        pa.field("sequence", pa.string(), nullable=False),
        pa.field("path", pa.string(), nullable=False),
        pa.field("sha256", pa.string(), nullable=False),
        pa.field("shape", pa.list_(pa.int32(), 3)),
        pa.field("spacing", pa.list_(pa.float64(), 3)),
        pa.field("affine", pa.list_(pa.float64(), 16)),
        pa.field("ingest_run_id", pa.string()),
    ]
)

CLINICAL_SCHEMA = pa.schema(
    [pa.field("patient_id", pa.string(), nullable=False)]
    + [pa.field(name, pa.bool_()) for name in BOOLEAN_MARKERS]
    + [pa.field(name, pa.float64()) for name in PERCENT_MARKERS]
    + [pa.field("os_days", pa.float64()), pa.field("os_event", pa.bool_())]
)

#: Canonical clinical columns as a user sees them in the ``clinical`` view.
CLINICAL_COLUMNS: tuple[str, ...] = (
    *BOOLEAN_MARKERS, *PERCENT_MARKERS, "os_days", "os_event", "age", "sex", "grade", "histology",
)
#: Columns that live in the patients table (the rest of CLINICAL_COLUMNS live in clinical).
PATIENT_COLUMNS: tuple[str, ...] = ("site", "cohort", "age", "sex", "grade", "histology")

INGEST_REJECTS_SCHEMA = pa.schema(
    [
        pa.field("patient_id", pa.string()),
        pa.field("source", pa.string()),
        pa.field("row", pa.int32()),
        pa.field("column", pa.string()),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("ingest_run_id", pa.string()),
        pa.field("rejected_at", _TS),
    ]
)

EXTRACT_FAILURES_SCHEMA = pa.schema(
    [
        pa.field("patient_id", pa.string(), nullable=False),
        pa.field("backbone", pa.string(), nullable=False),
        pa.field("perturbation", pa.string(), nullable=False),
        pa.field("stage", pa.string()),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("checkpoint_sha256", pa.string()),
        pa.field("run_id", pa.string()),
        pa.field("failed_at", _TS),
    ]
)

#: Metadata tables written by :func:`neurofeat.store.write_tables`, by folder name.
TABLE_SCHEMAS: dict[str, pa.Schema] = {
    "patients": PATIENTS_SCHEMA,
    "scans": SCANS_SCHEMA,
    "clinical": CLINICAL_SCHEMA,
    "ingest_rejects": INGEST_REJECTS_SCHEMA,
    "extract_failures": EXTRACT_FAILURES_SCHEMA,
}


def embeddings_schema(dim: int) -> pa.Schema:
    """Schema of one embeddings part file with ``dim``-dimensional vectors.

    ``backbone`` and ``perturbation`` are not columns: they come from the Hive
    partition path ``embeddings/backbone=<b>/perturbation=<p>/``.
    """
    if dim < 1:
        raise ValueError(f"embedding dimension must be >= 1, got {dim}")
    return pa.schema(
        [
            pa.field("patient_id", pa.string(), nullable=False),
            pa.field("site", pa.string(), nullable=False),
            pa.field("embedding", pa.list_(pa.float32(), dim), nullable=False),
            pa.field("checkpoint_sha256", pa.string(), nullable=False),
            pa.field("preprocess_sha256", pa.string(), nullable=False),
            pa.field("neurofeat_version", pa.string(), nullable=False),
            pa.field("seed", pa.int64()),
            pa.field("extracted_at", _TS, nullable=False),
            pa.field("run_id", pa.string(), nullable=False),
        ]
    )


# ----------------------------------------------------------------------------- run tables
#: Level of every interval stored in a run table unless its ``ci_level`` column says
#: otherwise: ``ci_low``/``ci_high`` (and ``*_ci_low``/``*_ci_high``, ``bca_*``) are the
#: bounds of a two-sided interval at this level.
CI_LEVEL: float = 0.95

#: Columns that :func:`neurofeat.store.write_run` adds to every run table itself.
RUN_AUTO_COLUMNS: tuple[pa.Field, ...] = (
    pa.field("run_id", pa.string(), nullable=False),
    pa.field("neurofeat_version", pa.string(), nullable=False),
    pa.field("created_at", _TS, nullable=False),
)

_STR, _F64, _I64, _BOOL = pa.string(), pa.float64(), pa.int64(), pa.bool_()


def _run_schema(fields: list[tuple[str, pa.DataType]], doc: str) -> pa.Schema:
    schema = pa.schema([pa.field(name, kind) for name, kind in fields] + list(RUN_AUTO_COLUMNS))
    return schema.with_metadata({"doc": doc, "ci_level_default": str(CI_LEVEL)})


#: What a row's inference is: ``primary`` marks the calibrated default (the other rows
#: are published procedures kept by name), ``estimand`` states the quantity the estimate,
#: interval and test refer to, ``rare``/``warning`` flag endpoints with < 30 positives.
_INFERENCE = [("primary", _BOOL), ("estimand", _STR), ("rare", _BOOL), ("warning", _STR)]

#: Provenance of one backbone's numbers (DESIGN.md: every stored number traces to them).
_PROVENANCE = [("seed", _I64), ("checkpoint_sha256", _STR), ("preprocess_sha256", _STR)]

#: ``runs/*/metrics.parquet`` -> the ``results`` view: one row per backbone x task x
#: (probe or model) x site x metric x interval method. Probe runs fill ``probe`` and
#: ``fraction``; survival runs fill ``model``, ``tau``, ``horizon`` and ``bca_*``.
METRICS_SCHEMA = _run_schema(
    [("command", _STR), ("backbone", _STR), ("perturbation", _STR), ("task", _STR),
     ("protocol", _STR), ("probe", _STR), ("model", _STR), ("site", _STR), ("metric", _STR),
     ("n", _I64), ("n_pos", _I64), ("fraction", _F64), ("tau", _F64), ("horizon", _F64),
     ("estimate", _F64), ("ci_low", _F64), ("ci_high", _F64), ("bca_low", _F64),
     ("bca_high", _F64), ("ci_method", _STR), ("ci_level", _F64), *_INFERENCE,
     ("cohort_sites", _STR), *_PROVENANCE],
    "Performance of one backbone: estimate and two-sided interval at ci_level. Rows with "
    "primary = true carry neurofeat's calibrated default; estimand says what each row's "
    "estimate and interval refer to.")

#: ``runs/*/tests.parquet`` -> the ``comparisons`` view: one row per task x metric x site x
#: pair (or pooled family row) x test. ``*_a``/``*_b`` are the two sides, ``diff`` = A - B;
#: provenance of a pooled row joins its members' hashes with commas.
TESTS_SCHEMA = _run_schema(
    [("task", _STR), ("metric", _STR), ("site", _STR), ("protocol", _STR),
     ("backbone_a", _STR), ("backbone_b", _STR), ("pooled", _BOOL),
     ("estimate_a", _F64), ("ci_low_a", _F64), ("ci_high_a", _F64),
     ("estimate_b", _F64), ("ci_low_b", _F64), ("ci_high_b", _F64),
     ("diff", _F64), ("diff_ci_low", _F64), ("diff_ci_high", _F64),
     ("diff_bca_low", _F64), ("diff_bca_high", _F64), ("ci_level", _F64),
     ("test", _STR), ("method", _STR), ("statistic", _F64), ("df", _F64), ("p_value", _F64),
     ("p_holm", _F64), ("p_bh", _F64), *_INFERENCE, ("n_train", _F64),
     ("n", _I64), ("n_pos", _I64), ("tau", _F64), ("perturbation", _STR), ("cohort_sites", _STR),
     ("seed", _I64), ("checkpoint_sha256_a", _STR), ("checkpoint_sha256_b", _STR),
     ("preprocess_sha256_a", _STR), ("preprocess_sha256_b", _STR),
     ("comparison", _STR), ("held_out", _STR)],
    "Paired comparison of backbones A and B; p_holm/p_bh adjust p_value across tasks "
    "(several tasks) or sites (survival, one task). Rows with primary = true hold the "
    "calibrated default test; the others are published procedures kept by name. "
    "comparison: 'requested' (A vs B) or 'seed-reference' (A vs the same recipe trained "
    "with another seed, stats compare --seed-reference). held_out (protocol loso): the "
    "held-out site a row refers to ('all' pooled; on site = 'worst' rows the selected "
    "site(s)).")

_PROBE_KEYS = [("backbone", _STR), ("task", _STR), ("probe", _STR), ("fraction", _F64)]
_SURVIVAL_KEYS = [("backbone", _STR), ("task", _STR), ("model", _STR)]
_KM = [("group", _STR), ("time", _F64), ("n_at_risk", _I64), ("n_events", _I64),
       ("n_censored", _I64), ("survival", _F64), ("std_err", _F64), ("ci_low_95", _F64),
       ("ci_high_95", _F64)]

#: Every table a command writes into ``runs/<run_id>/``, by command and table name.
#: :func:`neurofeat.store.write_run` refuses a table that is not declared here, or whose
#: columns differ from its schema.
RUN_TABLE_SCHEMAS: dict[str, dict[str, pa.Schema]] = {
    "probe": {
        "metrics": METRICS_SCHEMA,
        "predictions": _run_schema(
            [("patient_id", _STR), ("site", _STR), ("label", _F64), ("repeat", _I64),
             ("fold", _I64), ("fold_name", _STR), ("score", _F64), *_PROBE_KEYS, *_PROVENANCE],
            "Out-of-fold score of every patient, repeat and probe."),
        "folds": _run_schema(
            [("metric", _STR), ("repeat", _I64), ("fold", _I64), ("fold_name", _STR),
             ("value", _F64), *_PROBE_KEYS, *_PROVENANCE],
            "The metric on each test fold."),
        "fitted": _run_schema(
            [("repeat", _I64), ("fold", _I64), ("fold_name", _STR), ("n_train", _I64),
             ("n_test", _I64), ("C", _F64), ("alpha", _F64), *_PROBE_KEYS, *_PROVENANCE],
            "Hyperparameters chosen by the inner CV of each outer fold (C: logistic, "
            "alpha: ridge)."),
    },
    "stats-compare": {"tests": TESTS_SCHEMA},
    "survival": {
        "metrics": METRICS_SCHEMA,
        "predictions": _run_schema(
            [("patient_id", _STR), ("site", _STR), ("repeat", _I64), ("fold", _I64),
             ("time", _F64), ("event", _BOOL), ("risk", _F64), ("risk_group", _STR),
             *_SURVIVAL_KEYS, *_PROVENANCE],
            "Out-of-fold risk score and training-fold-median risk group of every patient."),
        "folds": _run_schema(
            [("repeat", _I64), ("fold", _I64), ("fold_name", _STR), ("n_train", _I64),
             ("n_test", _I64), ("n_events_test", _I64), ("threshold", _F64),
             ("harrell_c", _F64), *_SURVIVAL_KEYS, *_PROVENANCE],
            "Each outer fold: sizes, the training-median risk threshold, Harrell's C."),
        "km": _run_schema(
            _KM + [("site", _STR), *_SURVIVAL_KEYS, *_PROVENANCE],
            "Kaplan-Meier curves of the median-split risk groups, pooled and per site."),
        "km_by": _run_schema(
            _KM + [("label", _STR), *_SURVIVAL_KEYS, *_PROVENANCE],
            "Kaplan-Meier curves by a clinical label (survival --by)."),
    },
    "extract": {
        "extraction": _run_schema(
            [("backbone", _STR), ("perturbation", _STR), ("n_patients", _I64),
             ("n_already_done", _I64), ("n_written", _I64), ("n_failed", _I64),
             ("n_zero_filled", _I64), ("n_cached", _I64), ("seconds", _F64),
             ("patients_per_s", _F64)],
            "One row per perturbation of an extraction run (provenance in run.json)."),
    },
    "pretrain": {
        "pretrain_history": _run_schema(
            [("backbone", _STR), ("epoch", _I64), ("group", _STR), ("n_patients", _I64),
             ("loss", _F64), ("q", _F64), *_PROVENANCE],
            "Loss and Group-DRO weight q of every group at every epoch."),
        "pretrain_curve": _run_schema(
            [("backbone", _STR), ("epoch", _I64), ("task", _STR), ("metric", _STR), ("estimate", _F64),
             ("chance", _F64), ("n", _I64), ("n_folds", _I64), *_PROVENANCE],
            "Learning curve (pretrain --curve-every): the encoder's in-memory embeddings of the cohort "
            "after epoch k (0 = untrained) scored by one quick stratified K-fold linear probe per metric: "
            "'auc' of the task (out-of-fold AUC) and 'site_ba' (site classifier's balanced accuracy, "
            "chance 1/#sites). A trend, not a test: no interval; use stats compare on extracted embeddings. "
            "checkpoint_sha256 is the final checkpoint's."),
    },
}

# ------------------------------------------------------------------ trust analyses (issue 17)
_CI = [("estimate", _F64), ("ci_low", _F64), ("ci_high", _F64), ("ci_method", _STR),
       ("ci_level", _F64)]

RUN_TABLE_SCHEMAS["invariance"] = {
    "metrics": METRICS_SCHEMA,
    "invariance": _run_schema(
        [("backbone", _STR), ("family", _STR), ("by", _STR), ("metric", _STR), *_CI,
         ("chance", _F64), ("better", _STR), ("n", _I64), ("n_groups", _I64),
         ("n_components", _I64), ("explained_variance", _F64), ("perturbation", _STR),
         *_PROVENANCE],
        "Site separability of one backbone: PCA-silhouette and Davies-Bouldin in the first "
        "n_components principal components of the standardised embedding, and the "
        "site-classifier probe's balanced accuracy against chance (1/n_groups). better says "
        "which direction reads as more site-invariant."),
    "coordinates": _run_schema(
        [("backbone", _STR), ("by", _STR), ("patient_id", _STR), ("group", _STR),
         ("label", _STR), ("method", _STR), ("x", _F64), ("y", _F64), *_PROVENANCE],
        "PCA (first two components) and t-SNE coordinates of every patient, with its group "
        "(site) and the --label value used to colour the figures."),
    "confusion": _run_schema(
        [("backbone", _STR), ("by", _STR), ("group", _STR), ("predicted", _STR),
         ("count", _I64), *_PROVENANCE],
        "Out-of-fold confusion matrix of the site-classifier probe (counts over repeats)."),
}

RUN_TABLE_SCHEMAS["stability"] = {
    "metrics": METRICS_SCHEMA,
    "stability": _run_schema(
        [("backbone", _STR), ("task", _STR), ("perturbation", _STR), ("kind", _STR),
         ("strength", _F64), ("metric", _STR), ("n", _I64), ("n_pos", _I64), *_CI,
         ("delta", _F64), ("delta_ci_low", _F64), ("delta_ci_high", _F64), *_PROVENANCE],
        "Probe trained on clean embeddings, evaluated on each stored perturbation: the "
        "metric (mean over test folds, corrected-t interval) and its change from clean "
        "(delta = perturbed - clean, paired per fold, corrected-t interval)."),
    "drift": _run_schema(
        [("backbone", _STR), ("perturbation", _STR), ("kind", _STR), ("strength", _F64),
         ("patient_id", _STR), ("site", _STR), ("cosine_distance", _F64), *_PROVENANCE],
        "Per patient: 1 - cosine similarity of the clean and the perturbed embedding."),
}

RUN_TABLE_SCHEMAS["calibrate"] = {
    "calibration": _run_schema(
        [("backbone", _STR), ("task", _STR), ("probe", _STR), ("site", _STR), ("n", _I64),
         ("n_pos", _I64), ("prevalence", _F64), ("mean_predicted", _F64),
         ("slope", _F64), ("slope_ci_low", _F64), ("slope_ci_high", _F64),
         ("intercept", _F64), ("intercept_ci_low", _F64), ("intercept_ci_high", _F64),
         ("brier", _F64), ("brier_ci_low", _F64), ("brier_ci_high", _F64),
         ("brier_null", _F64), ("brier_scaled", _F64), ("ci_level", _F64), *_PROVENANCE],
        "Calibration of the out-of-fold probabilities (mean over repeats), pooled (site "
        "'all') and per site: slope and calibration-in-the-large intercept from logistic "
        "recalibration (Wald intervals), Brier score (bootstrap interval), the Brier score "
        "of predicting the prevalence (brier_null) and 1 - brier/brier_null."),
    "reliability": _run_schema(
        [("backbone", _STR), ("task", _STR), ("site", _STR), ("bin", _I64), ("n", _I64),
         ("bin_low", _F64), ("bin_high", _F64), ("mean_predicted", _F64), ("observed", _F64),
         ("observed_ci_low", _F64), ("observed_ci_high", _F64), ("ci_level", _F64),
         *_PROVENANCE],
        "Reliability diagram: observed fraction (Wilson interval) against mean predicted "
        "probability in bins of predicted probability."),
    "decision_curve": _run_schema(
        [("backbone", _STR), ("task", _STR), ("site", _STR), ("threshold", _F64),
         ("n", _I64), ("true_positives", _I64), ("false_positives", _I64),
         ("net_benefit", _F64), ("net_benefit_all", _F64), ("net_benefit_none", _F64),
         *_PROVENANCE],
        "Decision curve: net benefit TP/n - FP/n * t/(1-t) of the model, of treating all "
        "and of treating none, at each threshold probability t."),
    "predictions": _run_schema(
        [("backbone", _STR), ("task", _STR), ("patient_id", _STR), ("site", _STR),
         ("label", _F64), ("probability", _F64), *_PROVENANCE],
        "Out-of-fold probability of every patient (mean over CV repeats)."),
}

RUN_TABLE_SCHEMAS["explain"] = {
    "attribution": _run_schema(
        [("backbone", _STR), ("task", _STR), ("patient_id", _STR), ("method", _STR),
         ("layer", _STR), ("target_class", _STR), ("probability", _F64),
         ("fraction_inside", _F64), ("baseline_mean", _F64), ("baseline_ci_low", _F64),
         ("baseline_ci_high", _F64), ("enrichment", _F64), ("p_value", _F64),
         ("n_random", _I64), ("mask_source", _STR), ("mask_voxels", _I64),
         ("brain_voxels", _I64), ("heatmap_file", _STR), ("seconds", _F64), *_PROVENANCE],
        "One row per attribution map: the probe's probability for the patient, the share "
        "of the attribution inside the tumour mask (NULL without a mask) against random "
        "smooth maps over the brain (mean and central interval; p = share of random maps "
        "at least as concentrated), and the NIfTI heatmap's file in the run folder."),
}


# ------------------------------------------------------------------ reference backbones (issue 14)
RUN_TABLE_SCHEMAS["extract"]["radiomics"] = _run_schema(
    [("backbone", _STR), ("patient_id", _STR), ("site", _STR), ("mask", _STR), ("mask_file", _STR),
     ("mask_voxels", _I64), ("mask_ml", _F64), ("n_features", _I64), *_PROVENANCE],
    "Radiomics backbone: the region each patient's features were computed in (mask = "
    "'tumour': the registered segmentation's non-zero labels; 'brain': voxels above 0 in "
    "any sequence, no segmentation registered), its file(s), size, and the feature count.")


# ------------------------------------------------------------------ the demo's summary (issue 18)
RUN_TABLE_SCHEMAS["demo"] = {
    "summary": _run_schema(
        [("position", _I64), ("topic", _STR), ("sentence", _STR), ("seed", _I64)],
        "neurofeat demo's closing summary, one sentence per row in reading order: what the "
        "synthetic cohort planted against what the stored analyses found (topic: cohort, "
        "headline, shortcut, separability, difference, survival, stability). Every number in "
        "a sentence is a stored number of the runs before it (results, comparisons, "
        "run_invariance, run_stability) or of the cohort card."),
}


def run_table_schema(command: str, table: str) -> pa.Schema:
    """The declared schema of ``table`` written by ``command``.

    Raises
    ------
    KeyError
        When the command or the table has no declared schema; the message lists those
        that do.
    """
    tables = RUN_TABLE_SCHEMAS.get(command)
    if tables is None:
        raise KeyError(f"command {command!r} has no declared run tables; declared: "
                       f"{', '.join(sorted(RUN_TABLE_SCHEMAS))}")
    if table not in tables:
        raise KeyError(f"command {command!r} declares no run table {table!r}; it declares "
                       f"{', '.join(sorted(tables))} (neurofeat/store/schema.py)")
    return tables[table]
