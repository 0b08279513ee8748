"""The application layer: one run function per analysis, between the CLI and the stages.

A run function takes a store and options, resolves the task once, reads through
:mod:`neurofeat.store`, calls :mod:`neurofeat.analysis` (or :mod:`neurofeat.extract`),
shapes each result table against its declared schema
(:data:`neurofeat.store.schema.RUN_TABLE_SCHEMAS`), writes the run and returns a frozen
result whose tables are exactly the stored ones. The CLI parses, calls one run
function and prints; tests call the run functions directly.

=================  =====================================================
probe_run          linear/ridge + kNN probes of one backbone on one task
compare_run        ``stats compare``: backbones or families A vs B
survival_run       Cox model, c-index, KM/log-rank of one backbone
=================  =====================================================
"""

from neurofeat.analysis.folds import FoldError
from neurofeat.analysis.paired_tests import TEST_CHOICES
from neurofeat.analysis.protocols import PROTOCOLS as PROBE_PROTOCOLS
from neurofeat.analysis.protocols import json_records
from neurofeat.analysis.survival import SurvivalDataError
from neurofeat.runs.compare import CLASSIFICATION_METRICS, CompareRun, TaskComparison, compare_run
from neurofeat.runs.inputs import AlignedData, PatientSetMismatch, load_aligned
from neurofeat.runs.probe import ProbeRun, probe_run
from neurofeat.runs.survival import SURVIVAL_PROTOCOLS, SurvivalRun, km_by_label, survival_run

__all__ = [
    # what the CLI needs of the stages to parse options and report errors
    "FoldError",
    "PROBE_PROTOCOLS",
    "SurvivalDataError",
    "TEST_CHOICES",
    "json_records",
    # runs
    "CLASSIFICATION_METRICS",
    "SURVIVAL_PROTOCOLS",
    "AlignedData",
    "CompareRun",
    "PatientSetMismatch",
    "ProbeRun",
    "SurvivalRun",
    "TaskComparison",
    "compare_run",
    "km_by_label",
    "load_aligned",
    "probe_run",
    "survival_run",
]

# trust analyses (issue 17)
from neurofeat.runs.invariance import FAMILY_CHOICES, InvarianceRun, invariance_run  # noqa: E402

__all__ += ["FAMILY_CHOICES", "InvarianceRun", "invariance_run"]
from neurofeat.runs.calibrate import CalibrateRun, calibrate_run  # noqa: E402

__all__ += ["CalibrateRun", "calibrate_run"]
from neurofeat.runs.stability import NoPerturbationsError, StabilityRun, stability_run  # noqa: E402

__all__ += ["NoPerturbationsError", "StabilityRun", "stability_run"]
from neurofeat.runs.explain import (EXPLAIN_METHODS, ExplainRun, PatientImagesError,  # noqa: E402
                                    explain_errors, explain_run)

__all__ += ["EXPLAIN_METHODS", "ExplainRun", "PatientImagesError", "explain_errors",
            "explain_run"]
