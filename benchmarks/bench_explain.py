"""Benchmark: ``neurofeat explain`` of one patient with a ResNet50 at 128^3 on CPU.

Target (issue 17): under a minute on CPU for one patient (Grad-CAM), as a ratio against
plain MONAI: ``monai.visualize.GradCAM`` on the same encoder + linear head and the same
already-preprocessed input (one forward and one backward pass, nothing else).

neurofeat's side is the whole run: load and hash the checkpoint, fit the probe on the
stored embeddings, read and preprocess the patient's four NIfTI files (1 mm, ~150 x 180
x 150), embed it (checked against the stored embedding), Grad-CAM, resample the map
onto the scan grid, the share inside the tumour against 200 random maps at 128^3, a
montage figure (PNG + SVG) and the NIfTI heatmap. Occlusion (default boxes: 32^3, no
overlap, brain box only) is timed separately.

Run: python benchmarks/bench_explain.py [--occlusion] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def write_patient(folder: Path, patient_id: str, shape=(150, 180, 150)) -> None:
    import nibabel as nib

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij"))
    brain = (grid ** 2).sum(0) <= 0.85
    tumour = ((grid - np.array([0.3, -0.2, 0.1])[:, None, None, None]) ** 2).sum(0) <= 0.03
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    affine[:3, 3] = [-75, -90, -75]
    for k, seq in enumerate(("t1", "t1ce", "t2", "flair")):
        vol = (brain * (400 + 50 * k + rng.normal(0, 20, shape))).astype(np.float32)
        vol[tumour] += 300 if seq in ("t1ce", "flair") else 0
        nib.save(nib.Nifti1Image(vol.astype(np.int16), affine),
                 str(folder / f"{patient_id}_{seq}.nii.gz"))
    nib.save(nib.Nifti1Image(tumour.astype(np.uint8), affine),
             str(folder / f"{patient_id}_seg.nii.gz"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--occlusion", action="store_true", help="also time occlusion")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    args = parser.parse_args()

    import hashlib

    import pyarrow as pa
    import torch
    from neurofeat.extract.checkpoint import save_checkpoint
    from neurofeat.extract.encoders import EncoderConfig, build_encoder
    from neurofeat.extract.preprocess import PreprocessConfig

    from neurofeat.runs import explain_run
    from neurofeat.store import Store, append_embeddings, new_run_id, write_tables

    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_patient(root / "images" / "P000", "P000")
        torch.manual_seed(0)
        cfg = EncoderConfig(arch="resnet50", input_size=128, spacing=(1.0, 1.0, 1.0))
        encoder = build_encoder(cfg).eval()
        pre = PreprocessConfig(spacing=(1.0, 1.0, 1.0), input_size=128)
        card = {"method": "simclr", "dro": False, "preprocessing": pre.to_dict(),
                "preprocess_sha256": pre.sha256()}
        save_checkpoint(root / "models" / "r50", encoder, card)
        checkpoint_sha = hashlib.sha256((root / "models" / "r50" / "model.safetensors")
                                        .read_bytes()).hexdigest()
        store = Store.open(root / "store", create=True)
        ids = [f"P{i:03d}" for i in range(40)]
        scans = []
        for seq in ("t1", "t1ce", "t2", "flair"):
            path = root / "images" / "P000" / f"P000_{seq}.nii.gz"
            scans.append({"patient_id": "P000", "sequence": seq, "path": str(path),
                          "sha256": hashlib.sha256(path.read_bytes()).hexdigest()})
        write_tables(store, {
            "patients": pa.table({"patient_id": ids, "site": ["A"] * 40}),
            "scans": pa.Table.from_pylist(scans),
            "clinical": pa.table({"patient_id": ids, "idh1": [i % 2 == 0 for i in range(40)]})})
        X = np.random.default_rng(0).normal(size=(40, 2048)).astype(np.float32)
        append_embeddings(store, "r50", ids, X, checkpoint_sha256=checkpoint_sha,
                          preprocess_sha256=pre.sha256(), run_id=new_run_id("extract"))

        t0 = time.perf_counter()
        run = explain_run(store, "r50", "idh1", "P000", models_dir=root / "models")
        t_ours = time.perf_counter() - t0
        result = run.results["gradcam"]

        # plain MONAI: GradCAM on the same encoder + head and the same preprocessed input
        from monai.visualize import GradCAM
        from neurofeat.extract.dataset import load_patient_records
        from neurofeat.extract.explain import ProbeHead, prepare_input

        record = load_patient_records(store, pre.sequences, ["P000"])[0]
        image = prepare_input(record, pre).image
        head = ProbeHead(encoder, np.random.default_rng(1).normal(size=2048) * 1e-3, 0.0)
        t0 = time.perf_counter()
        GradCAM(nn_module=head, target_layers="encoder.layer4")(image, class_idx=1)
        t_ref = time.perf_counter() - t0

        print(f"ResNet50 at 128^3, one patient, CPU ({torch.get_num_threads()} torch threads; "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
        print(f"neurofeat explain (gradcam, whole run): {t_ours:.1f} s "
              f"(attribution step {result.seconds:.1f} s, layer {result.layer}, map "
              f"{result.native_shape})")
        print(f"plain MONAI GradCAM (forward + backward only): {t_ref:.1f} s; ratio "
              f"{t_ours / t_ref:.2f}")
        print(f"  {result.overlap.summary() if result.overlap else 'no mask'}")
        if args.occlusion:
            t0 = time.perf_counter()
            occ = explain_run(store, "r50", "idh1", "P000", models_dir=root / "models",
                              methods=["occlusion"], write=False)
            print(f"neurofeat explain --method occlusion (32^3 boxes, brain box): "
                  f"{time.perf_counter() - t0:.1f} s; "
                  f"{occ.results['occlusion'].params}")


if __name__ == "__main__":
    main()
