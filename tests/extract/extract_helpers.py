"""Helpers of the extraction tests: a tiny NIfTI cohort registered in a store, and
tiny checkpoints (MONAI resnet10, widen 0.25, 32^3), all built here (nothing is
downloaded, nothing is read from ../shared)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

SEQUENCES = ("t1", "t1ce", "t2", "flair")
SIZE = 32


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_patient(folder: Path, patient_id: str, seed: int, shape=(36, 40, 30), spacing=(1.2, 1.0, 1.5)) -> dict:
    """Four skull-stripped-looking volumes (ellipsoid brain, zero background)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij"))
    centre = rng.uniform(-0.1, 0.1, 3)[:, None, None, None]
    radius = np.array([0.8, 0.75, 0.7])[:, None, None, None]
    brain = (((grid - centre) / radius) ** 2).sum(0) <= 1.0
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = [-10.0, -20.0, -5.0]
    paths = {}
    for k, seq in enumerate(SEQUENCES):
        vol = np.zeros(shape, np.float32)
        vol[brain] = (100 + 30 * k + rng.normal(0, 15, brain.sum())).astype(np.float32)
        path = folder / f"{patient_id}_{seq}.nii.gz"
        nib.save(nib.Nifti1Image(vol, affine), str(path))
        paths[seq] = path
    return paths


def make_store(root: Path, n: int = 6, sites=("A", "B")) -> tuple:
    """A store with ``n`` patients and their scans (via the store's write_tables)."""
    import pyarrow as pa

    from neurofeat.store import Store, write_tables

    store = Store.open(root / "store", create=True)
    patients, scans = [], []
    for i in range(n):
        pid = f"P{i:03d}"
        paths = write_patient(root / "images" / pid, pid, seed=i)
        patients.append({"patient_id": pid, "site": sites[i % len(sites)]})
        for seq, path in paths.items():
            img = nib.load(str(path))
            scans.append({
                "patient_id": pid, "sequence": seq, "path": str(path.absolute()), "sha256": _sha256(path),
                "shape": list(img.shape), "spacing": [float(z) for z in img.header.get_zooms()],
            })
    write_tables(store, {"patients": pa.Table.from_pylist(patients), "scans": pa.Table.from_pylist(scans)})
    return store, [p["patient_id"] for p in patients]


def make_backbone(models_dir: Path, name: str = "tiny", seed: int = 0, **pre_changes) -> Path:
    """A resnet10 (widen 0.25, 32^3) checkpoint with a card holding its preprocessing."""
    from neurofeat.extract.checkpoint import save_checkpoint
    from neurofeat.extract.encoders import EncoderConfig, build_encoder
    from neurofeat.extract.preprocess import PreprocessConfig

    torch.manual_seed(seed)
    cfg = EncoderConfig(arch="resnet10", widen_factor=0.25, input_size=SIZE, spacing=(2.0, 2.0, 2.0))
    encoder = build_encoder(cfg)
    # give BatchNorm non-trivial running statistics so that eval-mode outputs differ per input
    with torch.no_grad():
        for module in encoder.modules():
            if isinstance(module, torch.nn.BatchNorm3d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    pre = PreprocessConfig(spacing=(2.0, 2.0, 2.0), input_size=SIZE, **pre_changes)
    card = {"method": "simclr", "dro": False, "seed": seed, "preprocessing": pre.to_dict(),
            "preprocess_sha256": pre.sha256()}
    return save_checkpoint(models_dir / name, encoder, card)
