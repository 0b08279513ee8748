"""Stores for the report tests, built without torch: imported embeddings (the probe-store
of tests/analysis) plus the runs each test needs, with small folds and bootstraps."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "analysis"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runs"))
from probe_store_helpers import make_probe_store  # noqa: E402
from test_run_stability import add_perturbations  # noqa: E402

from neurofeat.store import write_run, write_tables  # noqa: E402
from neurofeat.store.schema import SEQUENCES  # noqa: E402

FAST = dict(n_repeats=1, n_splits=3, n_boot=30)
SCAN_FOLDER = "/secret/hospital/scans"


def add_scans(store, n: int) -> None:
    """Scan rows whose paths must never reach a report."""
    ids = [f"P{i:03d}" for i in range(n)]
    rows = [(pid, seq) for pid in ids for seq in SEQUENCES]
    write_tables(store, {"scans": pa.table({
        "patient_id": [pid for pid, _ in rows],
        "sequence": [seq for _, seq in rows],
        "path": [f"{SCAN_FOLDER}/{pid}/{pid}_{seq}.nii.gz" for pid, seq in rows],
        "sha256": ["cd" * 32] * len(rows),
        "shape": pa.array([[8, 8, 8]] * len(rows), pa.list_(pa.int32(), 3)),
        "spacing": pa.array([[1.0, 1.0, 1.0]] * len(rows), pa.list_(pa.float64(), 3)),
        "affine": pa.array([list(np.eye(4).ravel())] * len(rows), pa.list_(pa.float64(), 16)),
    })})


def add_explain_run(store, patient: str = "P007") -> None:
    """An explain run as `neurofeat explain` stores it (attribution row + montage), made
    without an encoder: the table through its declared schema, the montage from noise."""
    from neurofeat.analysis.plots_trust import attribution_montage
    from neurofeat.runs.tables import shape

    row = pd.DataFrame([{
        "patient_id": patient, "method": "gradcam", "layer": "layer4",
        "target_class": "positive", "probability": 0.71, "fraction_inside": 0.42,
        "baseline_mean": 0.12, "baseline_ci_low": 0.05, "baseline_ci_high": 0.2,
        "enrichment": 3.5, "p_value": 0.01, "n_random": 100, "mask_source": "seg",
        "mask_voxels": 50, "brain_voxels": 400, "heatmap_file": f"gradcam_{patient}.nii.gz",
        "seconds": 1.0}])
    # dino's hashes as make_probe_store stored them
    table = shape(row, "explain", "attribution", backbone="dino", task="idh1", seed=0,
                  checkpoint_sha256=f"{1:064x}", preprocess_sha256="ab" * 32)
    rng = np.random.default_rng(0)
    montage = attribution_montage({"T1ce": rng.random((8, 8, 8))}, rng.random((8, 8, 8)),
                                  title=f"dino / idh1 / {patient}: gradcam")
    write_run(store, "explain", {"attribution": table},
              params={"backbone": "dino", "task": "idh1", "patient": patient},
              figures={"gradcam_montage": montage})


def make_full_store(root, n: int = 60):
    """A store with every analysis the report shows."""
    from neurofeat.runs import (calibrate_run, compare_run, invariance_run, probe_run,
                                stability_run, survival_run)

    store = make_probe_store(root, n=n, dim=8)
    add_scans(store, n)
    for backbone in ("dino", "dino_dro"):
        probe_run(store, backbone, "idh1", fractions=(0.5, 1.0), **FAST)
    probe_run(store, "dino", "ki67", knn=False, fractions=(), **FAST)
    probe_run(store, "dino", "idh1", protocol="loso", knn=False, fractions=(), **FAST)
    compare_run(store, "base", "dro", "idh1", **FAST)
    survival_run(store, "dino", "os", **FAST)
    invariance_run(store, ["dino", "dino_dro"], label="idh1", n_boot=30, n_splits=3,
                   tsne=False)
    add_perturbations(store, "dino")
    stability_run(store, ["dino"], "idh1", **FAST)
    calibrate_run(store, "dino", "idh1", **FAST)
    add_explain_run(store)
    return store


_DATA_URI = re.compile(r"data:image/png;base64,[A-Za-z0-9+/=]+")


def visible_text(page: str) -> str:
    """The page without its inlined images (base64 can spell anything by chance)."""
    return _DATA_URI.sub("data:image/png;base64,", page)
