"""Embed a cohort with an external (downloaded) checkpoint through a named adapter.

neurofeat reads other people's encoders through adapters (``--adapter``) that map a
published checkpoint layout onto a MONAI network, strictly: a tensor the network lacks,
or one it needs and the file does not hold, stops the run and is listed by name.

=============  ============================================================
monai-resnet   a state dict of ``monai.networks.nets.ResNet`` (any depth/width)
medicalnet     Tencent MedicalNet ResNets (``resnet_50.pth``)
brainiac       BrainIAC's SimCLR ResNet50 (Lightning ``.ckpt``)
swinunetr      MONAI SwinUNETR / its self-supervised ``model_swinvit.pt``
=============  ============================================================

Files are read with safetensors, or ``torch.load(weights_only=True)``: never unpickled.

Without ``--checkpoint`` this script first builds a stand-in for a download: a MONAI
ResNet10 (width 0.25, 4 input channels = T1, T1ce, T2, FLAIR) with random weights saved
in safetensors. With your own file, pass ``--checkpoint PATH --adapter NAME``.
Then it runs, on a store that holds an ingested cohort::

    neurofeat extract --backbone NAME --checkpoint PATH --adapter ADAPTER \
        --input-size 32 --spacing 4 --store S

and shows the stored provenance: every embedding row carries the sha256 of the
checkpoint file's bytes, so each number in a later analysis is traceable to it.

Example (after `neurofeat synth` + `neurofeat ingest` into S)::

    python examples/external_checkpoint.py --store S --input-size 16 --spacing 8
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
from pathlib import Path


def build_standin_checkpoint(path: Path, *, depth: int = 10, widen_factor: float = 0.25,
                             seed: int = 0) -> Path:
    """Save a randomly initialised MONAI 3D ResNet as safetensors (a stand-in download)."""
    import torch  # heavy imports here, so that --help stays fast
    from monai.networks import nets
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    net = getattr(nets, f"resnet{depth}")(spatial_dims=3, n_input_channels=4,
                                          widen_factor=widen_factor, num_classes=2)
    # safetensors wants contiguous tensors; the fc head is ignored by the adapter
    state = {key: value.contiguous() for key, value in net.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata={"note": "random weights: a stand-in for a download"})
    return path


def neurofeat(*args: str) -> None:
    """Run one neurofeat command (the same as typing it in a shell); stop on failure."""
    command = [sys.executable, "-m", "neurofeat", *args]
    print("$ neurofeat " + " ".join(args), flush=True)
    subprocess.run(command, check=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", default="neurofeat-store",
                        help="store holding an ingested cohort (default: neurofeat-store)")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="your checkpoint file; default: build a stand-in MONAI ResNet10 "
                             "at --standin-path")
    parser.add_argument("--standin-path", type=Path, default=Path("monai_resnet10.safetensors"),
                        help="where the stand-in checkpoint is written "
                             "(default: monai_resnet10.safetensors)")
    parser.add_argument("--adapter", default="monai-resnet",
                        choices=["monai-resnet", "medicalnet", "brainiac", "swinunetr"],
                        help="layout of the checkpoint (default: monai-resnet)")
    parser.add_argument("--backbone", default="monai_resnet10",
                        help="name the embeddings get in the store (default: monai_resnet10)")
    parser.add_argument("--input-size", type=int, default=32,
                        help="input edge in voxels; the checkpoint's own size for real use "
                             "(default: 32)")
    parser.add_argument("--spacing", type=float, default=4.0,
                        help="voxel spacing in mm the volumes are resampled to (default: 4)")
    parser.add_argument("--batch-size", type=int, default=4, help="volumes per forward pass")
    args = parser.parse_args(argv)

    checkpoint = args.checkpoint
    if checkpoint is None:
        checkpoint = build_standin_checkpoint(args.standin_path)
        print(f"built a stand-in checkpoint: {checkpoint}")

    # 1. a dry run reads the checkpoint through the adapter and checks scans and shapes
    common = ["--backbone", args.backbone, "--checkpoint", str(checkpoint),
              "--adapter", args.adapter, "--input-size", str(args.input_size),
              "--spacing", str(args.spacing), "--store", str(args.store)]
    neurofeat("extract", *common, "--dry-run")
    # 2. the real extraction: one embedding per patient, written to
    #    <store>/embeddings/backbone=<name>/perturbation=none/part-<uuid>.parquet
    neurofeat("extract", *common, "--batch-size", str(args.batch_size), "--no-progress")

    # 3. provenance: the stored checkpoint hash is the sha256 of the file's bytes
    sha = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    print(f"sha256 of {checkpoint}: {sha}")
    neurofeat("sql", f"SELECT backbone, count(*) AS patients, len(any_value(embedding)) AS dim, "
                     f"any_value(checkpoint_sha256) = '{sha}' AS hash_matches "
                     f"FROM embeddings WHERE backbone = '{args.backbone}' GROUP BY backbone",
              "--store", str(args.store))


if __name__ == "__main__":
    main()
