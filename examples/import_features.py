"""Bring your own features (radiomics, another model's embeddings) and probe them.

Any one-row-per-patient numeric table can become a backbone of the store: pyradiomics
output, embeddings from a model neurofeat cannot load, hand-made measurements. Once
imported with ``neurofeat store import``, every analysis (probe, survival, stats compare,
invariance) treats it exactly like an encoder's embeddings.

This script makes such a table itself, radiomics-style but deliberately simple: for each
patient registered in the store it reads the four scans (paths from the store's
``scans`` table, read with plain DuckDB) and computes first-order intensity statistics
inside the head (non-zero voxels) with nibabel and numpy: mean, standard deviation,
10th/50th/90th percentiles, skewness, and the fraction of voxels brighter than the
99th percentile of the head. Then::

    neurofeat store import --backbone myfeatures --table features.csv --store S
    neurofeat probe --backbone myfeatures --task idh1 --store S

Example::

    python examples/import_features.py --store S --out features.csv --task idh1
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import duckdb
import nibabel as nib
import numpy as np
import pandas as pd

SEQUENCES = ("t1", "t1ce", "t2", "flair")


def first_order_features(volume: np.ndarray) -> dict[str, float]:
    """Intensity statistics of the non-zero voxels of one volume."""
    voxels = volume[volume != 0].astype(np.float64)
    if voxels.size == 0:
        raise ValueError("empty volume (no non-zero voxel)")
    mean, std = voxels.mean(), voxels.std()
    p10, p50, p90, p99 = np.percentile(voxels, [10, 50, 90, 99])
    skew = float(((voxels - mean) ** 3).mean() / std**3) if std > 0 else 0.0
    return {"mean": mean, "std": std, "p10": p10, "p50": p50, "p90": p90, "skewness": skew,
            "bright_fraction": float((voxels > p99).mean())}


def feature_table(store: Path) -> pd.DataFrame:
    """One row per patient: ``patient_id`` + ``<sequence>_<feature>`` columns."""
    # the store is plain Parquet: no neurofeat import needed to find the scans
    scans = duckdb.sql(
        f"SELECT patient_id, sequence, path FROM read_parquet('{store}/scans/*.parquet', "
        "union_by_name = true) ORDER BY patient_id, sequence").df()
    rows = []
    for patient_id, group in scans.groupby("patient_id", sort=True):
        row: dict[str, object] = {"patient_id": patient_id}
        for sequence, path in zip(group["sequence"], group["path"]):
            stats = first_order_features(np.asanyarray(nib.load(path).dataobj))
            row.update({f"{sequence}_{name}": float(value) for name, value in stats.items()})
        rows.append(row)
    return pd.DataFrame(rows)


def neurofeat(*args: str) -> None:
    """Run one neurofeat command (the same as typing it in a shell); stop on failure."""
    print("$ neurofeat " + " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", "neurofeat", *args], check=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, default=Path("neurofeat-store"),
                        help="store holding an ingested cohort (default: neurofeat-store)")
    parser.add_argument("--out", type=Path, default=Path("features.csv"),
                        help="the feature table to write (default: features.csv)")
    parser.add_argument("--backbone", default="myfeatures",
                        help="name of the imported backbone (default: myfeatures)")
    parser.add_argument("--task", default="idh1", help="task to probe (default: idh1)")
    parser.add_argument("--repeats", type=int, default=5, help="CV repeats of the probe")
    parser.add_argument("--folds", type=int, default=5, help="CV folds of the probe")
    parser.add_argument("--bootstrap", type=int, default=2000,
                        help="bootstrap resamples of the probe's intervals")
    args = parser.parse_args(argv)

    # 1. compute the features and write them as an ordinary CSV
    table = feature_table(args.store)
    table.to_csv(args.out, index=False)
    print(f"wrote {args.out}: {len(table)} patients x {table.shape[1] - 1} features")

    # 2. import: checks ids against the registered patients and every value is numeric
    #    (--drop-columns would drop non-numeric / incomplete columns instead of failing)
    neurofeat("store", "import", "--backbone", args.backbone, "--table", str(args.out),
              "--store", str(args.store))

    # 3. probe it like any encoder (results go to the store's `results` view)
    neurofeat("probe", "--backbone", args.backbone, "--task", args.task,
              "--repeats", str(args.repeats), "--folds", str(args.folds),
              "--bootstrap", str(args.bootstrap), "--fractions", "none", "--no-knn",
              "--store", str(args.store))


if __name__ == "__main__":
    main()
