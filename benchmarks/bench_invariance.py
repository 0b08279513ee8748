"""Benchmark: site invariance of 8 backbones x 1,000 patients x 2,048-d (t-SNE included).

Target (issue 17): under 30 s on 2 cores for the whole analysis, as a ratio against a
plain scikit-learn reference in the same process.

- **neurofeat**: :func:`neurofeat.analysis.invariance.site_invariance` per backbone:
  standardise + PCA to 50 components (randomized SVD) once; silhouette and
  Davies-Bouldin on the first 10; the site probe (one-vs-rest ``LinearProbe``, C by
  inner CV, 5 folds) on the 50; PCA scatter; t-SNE = ``sklearn.manifold.TSNE``
  (Barnes-Hut, PCA init, 500 iterations) on the 50 PCs; one BLAS/OpenMP thread
  throughout (multi-threaded BLAS spin-waits on a shared machine). Also timed
  end to end through the store (``invariance_run``: reading, tables, two figures as
  PNG + SVG).
- **reference** (what one would write with scikit-learn): ``StandardScaler`` + ``PCA(50)``;
  ``silhouette_score``/``davies_bouldin_score`` on 10 PCs; ``cross_val_predict`` (5 folds)
  of ``LogisticRegressionCV`` (multinomial, 13 Cs, 3 inner folds, balanced) on the 50
  PCs; ``TSNE`` with sklearn's defaults (1,000 iterations, all threads) on the 50 PCs.
  Timed on ``--ref-backbones`` backbones (default 2) and reported per backbone.

Embeddings: 3 sites; each backbone = shared latent traits + a site shift of its own
strength + noise, float32.

Wall and CPU time are both printed: on a machine shared with other jobs the wall time
overstates what an idle 2-core machine takes, and for single-threaded work the CPU
time is the idle machine's wall time.

Run: python benchmarks/bench_invariance.py [--backbones 8 --n 1000 --dim 2048]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np


def make_embeddings(n_backbones: int, n: int, dim: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    sites = np.array(["siteA", "siteB", "siteC"])[rng.integers(0, 3, n)]
    codes = np.unique(sites, return_inverse=True)[1]
    latent = rng.normal(size=(n, 8))
    out = {}
    for b in range(n_backbones):
        brng = np.random.default_rng(100 + b)
        shift = brng.normal(size=(3, dim)) * (0.05 + 0.05 * b)
        X = latent @ brng.normal(size=(8, dim)) + shift[codes] + brng.normal(size=(n, dim))
        out[f"backbone{b}"] = X.astype(np.float32)
    ids = np.array([f"P{i:05d}" for i in range(n)])
    return ids, sites, out


def reference(X: np.ndarray, sites: np.ndarray, seed: int = 0) -> dict:
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.manifold import TSNE
    from sklearn.metrics import (
        balanced_accuracy_score,
        davies_bouldin_score,
        silhouette_score,
    )
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.preprocessing import StandardScaler

    Z = PCA(50, random_state=seed).fit_transform(StandardScaler().fit_transform(X))
    sil = silhouette_score(Z[:, :10], sites)
    db = davies_bouldin_score(Z[:, :10], sites)
    model = LogisticRegressionCV(Cs=np.logspace(-5, 1, 13), cv=3, class_weight="balanced",
                                 max_iter=1000)
    predicted = cross_val_predict(model, Z, sites, cv=StratifiedKFold(5, shuffle=True,
                                                                      random_state=seed))
    ba = balanced_accuracy_score(sites, predicted)
    TSNE(2, init="pca", random_state=seed).fit_transform(Z)
    return {"silhouette": sil, "davies_bouldin": db, "ba": ba}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", type=int, default=8)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--ref-backbones", type=int, default=2)
    parser.add_argument("--no-store", action="store_true", help="skip the end-to-end run")
    args = parser.parse_args()

    from neurofeat.analysis.invariance import site_invariance

    ids, sites, embeddings = make_embeddings(args.backbones, args.n, args.dim)
    names = list(embeddings)
    site_invariance(embeddings[names[0]][:100, :64], sites[:100], ids[:100], n_boot=50,
                    tsne=True)  # warm-up: imports, first calls

    t0, c0 = time.perf_counter(), time.process_time()
    ours = {b: site_invariance(X, sites, ids, backbone=b) for b, X in embeddings.items()}
    t_ours, c_ours = time.perf_counter() - t0, time.process_time() - c0

    t0, c0 = time.perf_counter(), time.process_time()
    ref = {b: reference(embeddings[b], sites) for b in names[:args.ref_backbones]}
    t_ref = (time.perf_counter() - t0) / max(1, len(ref))
    c_ref = (time.process_time() - c0) / max(1, len(ref))

    print(f"{args.backbones} backbones x {args.n} patients x {args.dim}-d, 3 sites "
          f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
    print(f"neurofeat analysis (t-SNE: sklearn TSNE Barnes-Hut, 500 it.; 1 BLAS/OpenMP "
          f"thread): {t_ours:.1f} s wall, {c_ours:.1f} s CPU total; {t_ours / len(ours):.2f} s "
          "wall per backbone")
    print(f"sklearn reference (TSNE defaults, LogisticRegressionCV): {t_ref:.2f} s wall, "
          f"{c_ref:.2f} s CPU per backbone (timed on {len(ref)}) -> {t_ref * len(ours):.1f} s "
          f"wall for {len(ours)}")
    print(f"ratio neurofeat / reference: {t_ours / (t_ref * len(ours)):.2f} (wall), "
          f"{c_ours / (c_ref * len(ours)):.2f} (CPU)")
    for b, r in ref.items():
        o = ours[b]
        print(f"  {b}: silhouette {o.silhouette:.3f} (ref {r['silhouette']:.3f}), DB "
              f"{o.davies_bouldin:.2f} (ref {r['davies_bouldin']:.2f}), site BA "
              f"{o.probe.balanced_accuracy:.3f} (ref {r['ba']:.3f})")

    if not args.no_store:
        import pyarrow as pa

        from neurofeat.runs import invariance_run
        from neurofeat.store import Store, append_embeddings, write_tables

        with tempfile.TemporaryDirectory() as tmp:
            store = Store.open(os.path.join(tmp, "store"), create=True)
            write_tables(store, {"patients": pa.table({"patient_id": ids, "site": sites})})
            for b, (name, X) in enumerate(embeddings.items()):
                append_embeddings(store, name, ids, X, checkpoint_sha256=f"{b:064x}",
                                  preprocess_sha256="ab" * 32)
            t0, c0 = time.perf_counter(), time.process_time()
            run = invariance_run(store)
            t_run, c_run = time.perf_counter() - t0, time.process_time() - c0
            print(f"end to end (invariance_run: read, analyse, 2 figures PNG+SVG, write): "
                  f"{t_run:.1f} s wall, {c_run:.1f} s CPU; run {run.info.run_id}")


if __name__ == "__main__":
    main()
