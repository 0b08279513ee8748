"""The application layer: one run function per analysis, between the CLI and the stages.

A run function takes a store and options, resolves the task once, reads through
:mod:`neurofeat.store`, calls :mod:`neurofeat.analysis` (or :mod:`neurofeat.extract`),
shapes each result table against its declared schema
(:data:`neurofeat.store.schema.RUN_TABLE_SCHEMAS`), writes the run and returns a frozen
result whose tables are exactly the stored ones. The CLI parses, calls one run
function and prints; tests call the run functions directly.

=================  =========================================================
probe_run          linear/ridge + kNN probes of one backbone on one task
compare_run        ``stats compare``: backbones or families A vs B
survival_run       Cox model, c-index, KM/log-rank of one backbone
invariance_run     site separability of backbones (silhouette, DB, site probe)
stability_run      probe performance on perturbed embeddings, embedding drift
calibrate_run      calibration slope/intercept, Brier, reliability, net benefit
explain_run        Grad-CAM / occlusion through the encoder and the probe
report_run         one self-contained HTML page of what the store holds
extract_run        embeddings of a backbone into the store (torch)
pretrain_run       SSL pretraining with or without Group-DRO (torch)
=================  =========================================================

``extract_run``, ``pretrain_run`` and their companions live in
:mod:`neurofeat.runs.extract` and :mod:`neurofeat.runs.pretrain`; they are exported
here lazily, so that importing the analyses' runs never imports torch.
"""

from __future__ import annotations

import importlib
from typing import Any

from neurofeat.analysis.folds import FoldError
from neurofeat.analysis.paired_tests import DEFAULT_TEST, TEST_CHOICES
from neurofeat.analysis.protocols import PROTOCOLS as PROBE_PROTOCOLS
from neurofeat.analysis.protocols import json_records
from neurofeat.analysis.survival import SurvivalDataError
from neurofeat.runs.calibrate import CalibrateRun, calibrate_run
from neurofeat.runs.compare import CLASSIFICATION_METRICS, CompareRun, TaskComparison, compare_run
from neurofeat.runs.explain import (EXPLAIN_METHODS, ExplainRun, PatientImagesError,
                                    explain_errors, explain_run)
from neurofeat.runs.inputs import AlignedData, PatientSetMismatch, load_aligned
from neurofeat.runs.invariance import FAMILY_CHOICES, InvarianceRun, invariance_run
from neurofeat.runs.probe import ProbeRun, probe_run
from neurofeat.runs.report import ReportRun, report_run
from neurofeat.runs.stability import NoPerturbationsError, StabilityRun, stability_run
from neurofeat.runs.survival import SURVIVAL_PROTOCOLS, SurvivalRun, km_by_label, survival_run

_LAZY = {
    "extract": ("BackboneSource", "EXTRACT_ERRORS", "ExtractRun", "extract_dry_run",
                "extract_run"),
    "pretrain": ("PRETRAIN_ERRORS", "SAMPLING", "PretrainPlan", "PretrainRun",
                 "available_backbones", "backbone_card", "pretrain_config", "pretrain_run"),
}

__all__ = [
    # what the CLI needs of the stages to parse options and report errors
    "DEFAULT_TEST",
    "FoldError",
    "PROBE_PROTOCOLS",
    "SurvivalDataError",
    "TEST_CHOICES",
    "json_records",
    # inputs
    "AlignedData",
    "PatientSetMismatch",
    "load_aligned",
    # runs
    "CLASSIFICATION_METRICS",
    "SURVIVAL_PROTOCOLS",
    "CompareRun",
    "ProbeRun",
    "SurvivalRun",
    "TaskComparison",
    "compare_run",
    "km_by_label",
    "probe_run",
    "survival_run",
    # trust analyses
    "FAMILY_CHOICES",
    "InvarianceRun",
    "invariance_run",
    "CalibrateRun",
    "calibrate_run",
    "NoPerturbationsError",
    "StabilityRun",
    "stability_run",
    "EXPLAIN_METHODS",
    "ExplainRun",
    "PatientImagesError",
    "explain_errors",
    "explain_run",
    # the page
    "ReportRun",
    "report_run",
    # the GPU stage (lazy)
    *(name for names in _LAZY.values() for name in names),
]


def __getattr__(name: str) -> Any:
    for module, names in _LAZY.items():
        if name in names:
            return getattr(importlib.import_module(f"neurofeat.runs.{module}"), name)
    raise AttributeError(f"module 'neurofeat.runs' has no attribute {name!r}")
