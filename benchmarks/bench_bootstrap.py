"""Benchmark: vectorised stratified bootstrap of AUC + balanced accuracy vs an sklearn loop.

Target (issue 7): 2,000 stratified resamples of AUC and balanced accuracy for n = 300
at least 100x faster than a Python loop over sklearn's roc_auc_score /
balanced_accuracy_score on the same indices, with identical values.

Both sides use the same (2000, 300) index matrix from
:func:`neurofeat.analysis.bootstrap.stratified_bootstrap_indices`; the vectorised side
includes generating nothing else (indices are shared, as in a paired comparison).
Also timed: the BCa jackknife (300 leave-one-out AUCs). Peak memory by tracemalloc.

Run: python benchmarks/bench_bootstrap.py
"""

from __future__ import annotations

import time
import tracemalloc

import numpy as np


def main(n: int = 300, n_boot: int = 2000, seed: int = 0) -> None:
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    from neurofeat.analysis.bootstrap import stratified_bootstrap_indices
    from neurofeat.analysis.scoring import (AUC, balanced_accuracy_scorer, score_jackknife,
                                            score_resamples)

    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.3
    scores = np.round(1 / (1 + np.exp(-(1.2 * y + rng.normal(size=n)))), 3)  # with ties
    idx = stratified_bootstrap_indices(y, n_boot, seed)
    ba = balanced_accuracy_scorer(0.5)

    # warm-up (imports, first-call allocations) for both sides
    score_resamples(AUC, y, scores, idx[:10])
    roc_auc_score(y[idx[0]], scores[idx[0]])

    tracemalloc.start()
    t0 = time.perf_counter()
    auc_vec = score_resamples(AUC, y, scores, idx)[:, 0]
    ba_vec = score_resamples(ba, y, scores, idx)[:, 0]
    t_vec = time.perf_counter() - t0
    peak_vec = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()

    t0 = time.perf_counter()
    jack = score_jackknife(AUC, y, scores)
    t_jack = time.perf_counter() - t0

    tracemalloc.start()
    t0 = time.perf_counter()
    auc_ref = np.array([roc_auc_score(y[i], scores[i]) for i in idx])
    ba_ref = np.array([balanced_accuracy_score(y[i], scores[i] >= 0.5) for i in idx])
    t_ref = time.perf_counter() - t0
    peak_ref = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()

    print(f"n = {n}, {n_boot} stratified resamples, AUC + balanced accuracy")
    print(f"vectorised (neurofeat) : {t_vec * 1e3:9.1f} ms   peak {peak_vec / 2**20:6.1f} MiB")
    print(f"sklearn loop           : {t_ref * 1e3:9.1f} ms   peak {peak_ref / 2**20:6.1f} MiB")
    print(f"speed-up               : {t_ref / t_vec:9.1f}x  (target >= 100x)")
    print(f"max |AUC diff|         : {np.abs(auc_vec - auc_ref).max():.1e}")
    print(f"max |BA diff|          : {np.abs(ba_vec - ba_ref).max():.1e}")
    print(f"BCa jackknife (n AUCs) : {t_jack * 1e3:9.1f} ms  ({jack.shape[0]} leave-one-out sets)")


if __name__ == "__main__":
    main()
