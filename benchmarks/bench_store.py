"""Store benchmark (issue 3): (X, y) fetch and write speed as ratios in one run.

Targets, with 10,000 patients x 8 backbones x 2048-d in the store:
- read_xy for one backbone and task <= 1.5x a bare pyarrow.dataset filtered read of
  the same column into numpy, and >= 8x faster than pandas.read_parquet of the
  embeddings folder + filtering + np.stack;
- writing the store >= 50 % of the speed of a bare pyarrow write of the same arrays;
- peak memory of read_xy <= 2x the bytes of X (measured in a fresh subprocess).

Usage: python benchmarks/bench_store.py [--patients 10000] [--backbones 8] [--dim 2048]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from neurofeat.store import Store, append_embeddings, read_xy, write_tables


def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


MEMORY_PROBE = """
import sys, json
import numpy as np
from neurofeat.store import Store, read_labels, read_xy
store = Store.open(sys.argv[1])
import pyarrow as pa, tracemalloc
read_labels(store, "idh1")          # warm imports and the label path, without embeddings
pool = pa.default_memory_pool()
arrow_before = pool.max_memory()
tracemalloc.start()
data = read_xy(store, "bb0", "idh1")
_, numpy_peak = tracemalloc.get_traced_memory()   # numpy/Python allocations (X)
arrow_peak = pool.max_memory() - arrow_before     # Arrow buffers (parquet pages, columns)
# Upper bound: both peaks counted as if simultaneous.
print(json.dumps({"peak_increase": numpy_peak + arrow_peak, "x_bytes": data.X.nbytes}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=10_000)
    parser.add_argument("--backbones", type=int, default=8)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    n, n_backbones, dim = args.patients, args.backbones, args.dim
    rng = np.random.default_rng(0)
    work = Path(tempfile.mkdtemp(prefix="nf-bench-"))
    try:
        store = Store.open(work / "store", create=True)
        ids = np.array([f"P{i:06d}" for i in range(n)])
        sites = np.array(["siteA", "siteB", "siteC"])[rng.integers(0, 3, n)]
        write_tables(
            store,
            {
                "patients": pa.table({"patient_id": ids, "site": sites}),
                "clinical": pa.table({"patient_id": ids, "idh1": rng.random(n) < 0.3}),
            },
        )
        matrices = [rng.standard_normal((n, dim), dtype=np.float32) for _ in range(n_backbones)]

        # --- write: ours vs bare pyarrow of the same arrays ------------------------
        start = time.perf_counter()
        for b, matrix in enumerate(matrices):
            append_embeddings(store, f"bb{b}", ids, matrix, checkpoint_sha256=f"{b:064d}", preprocess_sha256="p" * 64)
        ours_write = time.perf_counter() - start
        bare_dir = work / "bare"
        start = time.perf_counter()
        for b, matrix in enumerate(matrices):
            table = pa.table(
                {"patient_id": ids, "embedding": pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1)), dim)}
            )
            target = bare_dir / f"backbone=bb{b}" / "perturbation=none"
            target.mkdir(parents=True)
            pq.write_table(table, target / "part-0.parquet")
        bare_write = time.perf_counter() - start
        del matrices

        # --- read one backbone --------------------------------------------------------
        def ours() -> np.ndarray:
            return read_xy(store, "bb0", "idh1").X

        def bare() -> np.ndarray:
            dataset = ds.dataset(store.embeddings_dir, format="parquet", partitioning="hive")
            table = dataset.to_table(
                columns=["embedding"], filter=(ds.field("backbone") == "bb0") & (ds.field("perturbation") == "none")
            )
            column = table["embedding"].combine_chunks()
            return column.flatten().to_numpy().reshape(-1, dim)

        def naive_pandas() -> np.ndarray:
            frame = pd.read_parquet(store.embeddings_dir)
            frame = frame[(frame["backbone"] == "bb0") & (frame["perturbation"] == "none")]
            return np.stack(frame["embedding"].to_numpy())

        assert ours().shape == (n, dim) and bare().shape == (n, dim)
        t_ours = best_of(args.repeats, ours)
        t_bare = best_of(args.repeats, bare)
        t_pandas = best_of(1, naive_pandas)

        probe = subprocess.run(
            [sys.executable, "-c", MEMORY_PROBE, str(store.root)], capture_output=True, text=True, check=True
        )
        memory = json.loads(probe.stdout.strip().splitlines()[-1])
        peak_ratio = memory["peak_increase"] / memory["x_bytes"]

        rows = [
            ("read_xy / bare pyarrow filtered read", t_ours / t_bare, "<= 1.5", t_ours / t_bare <= 1.5),
            ("pandas read+filter+stack / read_xy", t_pandas / t_ours, ">= 8", t_pandas / t_ours >= 8),
            ("write speed ours / bare pyarrow", bare_write / ours_write, ">= 0.5", bare_write / ours_write >= 0.5),
            ("read_xy peak memory / X bytes", peak_ratio, "<= 2", peak_ratio <= 2.0),
        ]
        print(f"store benchmark: {n} patients x {n_backbones} backbones x {dim}-d "
              f"(X = {memory['x_bytes'] / 1e6:.0f} MB per backbone)")
        print(f"  read_xy {t_ours * 1e3:.0f} ms | bare pyarrow {t_bare * 1e3:.0f} ms | pandas {t_pandas * 1e3:.0f} ms")
        print(f"  write ours {ours_write:.2f} s | bare pyarrow {bare_write:.2f} s")
        for name, ratio, target, ok in rows:
            print(f"  {name:42s} {ratio:8.2f}   target {target:7s} {'OK' if ok else 'MISSED'}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
