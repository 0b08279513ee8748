"""Cohort ingest: NIfTI scans (manifest or BraTS-style folders) + a clinical table.

Modules, one concept each:

- :mod:`~neurofeat.ingest.normalise`  value rules for the canonical clinical columns
- :mod:`~neurofeat.ingest.mapping`    column/value mapping (default TOML + user TOML)
- :mod:`~neurofeat.ingest.nifti`      inspect one scan (shape, spacing, affine, sha256)
- :mod:`~neurofeat.ingest.discover`   find scans in BraTS 2020/21/23-style folders
- :mod:`~neurofeat.ingest.sources`    read the manifest and clinical tables
- :mod:`~neurofeat.ingest.validate`   per-patient checks
- :mod:`~neurofeat.ingest.ingest`     orchestration, all-or-nothing write to the store
"""

from neurofeat.ingest.discover import DiscoveredPatient, DiscoveryError, discover_scans
from neurofeat.ingest.ingest import IngestError, IngestReport, ingest
from neurofeat.ingest.mapping import ColumnMapping, MappingError, load_mapping
from neurofeat.ingest.nifti import ScanError, ScanInfo, inspect_nifti
from neurofeat.ingest.normalise import (
    ClinicalValueError,
    ValueNormalisationError,
    normalise_value,
)
from neurofeat.ingest.sources import InputTableError, read_clinical, read_manifest
from neurofeat.ingest.validate import Problem

__all__ = [
    "ClinicalValueError",
    "ColumnMapping",
    "DiscoveredPatient",
    "DiscoveryError",
    "IngestError",
    "IngestReport",
    "InputTableError",
    "MappingError",
    "Problem",
    "ScanError",
    "ScanInfo",
    "ValueNormalisationError",
    "discover_scans",
    "ingest",
    "inspect_nifti",
    "load_mapping",
    "normalise_value",
    "read_clinical",
    "read_manifest",
]
