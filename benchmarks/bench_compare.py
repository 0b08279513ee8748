"""Benchmark: `stats compare base dro --task idh1` machinery vs a naive reference.

Setting (issue 7): 4 + 4 backbones, n = 300 patients, d = 2048, 5 x 5 repeated
stratified CV, 2,000 stratified bootstrap resamples of AUC and balanced accuracy.

- neurofeat: :func:`neurofeat.analysis.compare.compare_probes` (Gram-space Newton
  logistic probe with C by 3-fold inner CV on the pooled class-weighted log-loss over
  the 13-point half-decade grid, vectorised paired bootstrap + BCa jackknife, DeLong,
  fold tests).
- reference: per backbone and split, an sklearn Pipeline(StandardScaler,
  LogisticRegressionCV(same Cs, same inner folds, class_weight='balanced',
  scoring='neg_log_loss')) refitted from scratch (sklearn averages the unweighted
  log-loss over the inner folds where the probe pools the class-weighted one, so the
  chosen C, and the AUC, can differ a little); then a Python loop over the same bootstrap
  indices calling roc_auc_score / balanced_accuracy_score for every resample, repeat
  and backbone. Both use the same fold plan. The reference does strictly less work
  (no jackknife/BCa, no DeLong).

The reference bootstrap loop costs the same per resample, so it is timed on the first
``--ref-boot`` resamples and scaled linearly to 2,000 (stated in the output); every
reference fit is run in full. BLAS is limited to one thread for both sides (the
problems are small; thread contention would only add noise). Peak memory is measured
with tracemalloc (numpy allocations included) for each side.

Run: python benchmarks/bench_compare.py [--ref-boot 100]
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
import warnings

import numpy as np


def make_embeddings(n: int, d: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    k = 16
    latent = rng.normal(size=(n, k))
    y = ((latent[:, 0] + 0.7 * rng.normal(size=n)) > 0.3).astype(float)
    names = ["byol", "dino", "mae", "moco"]
    names += [m + "_dro" for m in names]
    emb = {}
    for name in names:
        noise = 2.0 if name.endswith("_dro") else 2.5
        x = latent @ rng.normal(size=(k, d)) + noise * rng.normal(size=(n, d))
        emb[name] = np.maximum(x, 0).astype(np.float32)
    ids = np.array([f"P{i:04d}" for i in range(n)])
    return emb, y, ids, names


def reference(emb, y, plan, n_boot_ref, boot_index, cs):
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    labels = y.astype(bool)
    scores = {}
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, X in emb.items():
            s = np.full(plan.fold_ids.shape, np.nan)
            for split in plan.splits():
                pipe = Pipeline([
                    ("scale", StandardScaler()),
                    ("logreg", LogisticRegressionCV(
                        Cs=list(cs), cv=StratifiedKFold(3, shuffle=True, random_state=0),
                        scoring="neg_log_loss", class_weight="balanced")),
                ])
                pipe.fit(X[split.train], labels[split.train])
                s[split.repeat, split.test] = pipe.predict_proba(X[split.test])[:, 1]
            scores[name] = s
    t_fit = time.perf_counter() - t0
    t0 = time.perf_counter()
    boot = {}
    for name, s in scores.items():
        vals = np.empty((n_boot_ref, 2))
        for b in range(n_boot_ref):
            idx = boot_index[b]
            vals[b, 0] = np.mean([roc_auc_score(labels[idx], s[r, idx]) for r in range(s.shape[0])])
            vals[b, 1] = np.mean([balanced_accuracy_score(labels[idx], s[r, idx] >= 0.5)
                                  for r in range(s.shape[0])])
        boot[name] = vals
    t_boot = time.perf_counter() - t0
    return scores, boot, t_fit, t_boot


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--d", type=int, default=2048)
    parser.add_argument("--n-boot", type=int, default=2000)
    parser.add_argument("--ref-boot", type=int, default=100,
                        help="resamples the reference loop is timed on (scaled to --n-boot)")
    args = parser.parse_args()

    from threadpoolctl import threadpool_limits

    from neurofeat.analysis.bootstrap import stratified_bootstrap_indices
    from neurofeat.analysis.compare import compare_probes
    from neurofeat.analysis.pairing import pair_backbones
    from neurofeat.analysis.folds import derive_seed, stratified_kfold_plan
    from neurofeat.analysis.probes import DEFAULT_CS
    from neurofeat.analysis.scoring import AUC, balanced_accuracy_scorer, score_resamples

    emb, y, ids, names = make_embeddings(args.n, args.d)
    pairs = pair_backbones("base", "dro", names)
    with threadpool_limits(1):
        tracemalloc.start()
        t0 = time.perf_counter()
        result = compare_probes(emb, y, patient_ids=ids, pairs=pairs, task="idh1",
                                n_boot=args.n_boot, seed=0, side_a="base", side_b="dro")
        t_ours = time.perf_counter() - t0
        peak_ours = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()

        plan = stratified_kfold_plan(ids, y.astype(bool), n_splits=5, n_repeats=5,
                                     task="idh1", seed=0)
        boot_index = stratified_bootstrap_indices(
            y.astype(bool), args.n_boot, derive_seed("bootstrap", "idh1", 0, "all"))
        tracemalloc.start()
        ref_scores, ref_boot, t_fit, t_boot = reference(emb, y, plan, args.ref_boot,
                                                        boot_index, DEFAULT_CS)
        peak_ref = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    t_ref = t_fit + t_boot * args.n_boot / args.ref_boot

    # agreement: our vectorised bootstrap on the reference predictions == the loop
    ba = balanced_accuracy_scorer(0.5)
    max_boot_diff = 0.0
    for name in names:
        ours_auc = score_resamples(AUC, y.astype(bool), ref_scores[name],
                                   boot_index[: args.ref_boot]).mean(axis=1)
        ours_ba = score_resamples(ba, y.astype(bool), ref_scores[name],
                                  boot_index[: args.ref_boot]).mean(axis=1)
        max_boot_diff = max(max_boot_diff, np.abs(ours_auc - ref_boot[name][:, 0]).max(),
                            np.abs(ours_ba - ref_boot[name][:, 1]).max())
    # cost of the inference stage alone, on fixed predictions: every row (the calibrated
    # default plus the published procedures: B bootstraps, BCa jackknife, DeLong, fold
    # tests) vs what the calibrated default needs (per-fold metrics, corrected t).
    from neurofeat.analysis.compare import compare_scores
    from neurofeat.analysis.scoring import get_scorer

    scorers = [get_scorer("auc"), get_scorer("ba", 0.5)]
    labels = y.astype(bool)
    n_train, n_test = plan.mean_train_test_sizes()
    common = dict(task="idh1", n_train=n_train, n_test=n_test, seed=0, side_a="base",
                  side_b="dro", n_folds=5)
    with threadpool_limits(1):
        t0 = time.perf_counter()
        compare_scores(scorers, labels, labels, ref_scores, pairs, plan.fold_ids,
                       n_boot=args.n_boot, test="auto", **common)
        t_all_rows = time.perf_counter() - t0
        t0 = time.perf_counter()
        compare_scores(scorers, labels, labels, ref_scores, pairs, plan.fold_ids, n_boot=1,
                       bca=False, **common)
        t_default_only = time.perf_counter() - t0
    frame = result.to_frame()
    ours_auc = {r.backbone_a: r.a.estimate for r in result.pairs
                if r.metric == "auc" and not r.pooled}
    ours_auc.update({r.backbone_b: r.b.estimate for r in result.pairs
                     if r.metric == "auc" and not r.pooled})
    from neurofeat.analysis.scoring import score_point
    auc_diffs = [abs(ours_auc[n] - score_point(AUC, y.astype(bool), ref_scores[n]).mean())
                 for n in names]
    print(f"setting: {len(names)} backbones, n={args.n}, d={args.d}, 5x5 CV, "
          f"{args.n_boot} bootstraps, {len(frame)} test rows")
    print(f"neurofeat compare      : {t_ours:8.2f} s   peak traced memory {peak_ours / 2**20:7.1f} MiB")
    print(f"reference fits         : {t_fit:8.2f} s (200 LogisticRegressionCV pipelines)")
    print(f"reference bootstrap    : {t_boot:8.2f} s for {args.ref_boot} resamples "
          f"-> {t_boot * args.n_boot / args.ref_boot:8.2f} s scaled to {args.n_boot}")
    print(f"reference total        : {t_ref:8.2f} s   peak traced memory {peak_ref / 2**20:7.1f} MiB")
    print(f"speed-up               : {t_ref / t_ours:8.1f}x   (target >= 10x)")
    print("inference on fixed predictions (fits excluded):")
    print(f"  old default ('auto' primary) with every row (B={args.n_boot}, BCa, DeLong): "
          f"{t_all_rows:8.2f} s")
    print(f"  calibrated default alone (per-fold metrics + calibrated corrected t)   : "
          f"{t_default_only:8.2f} s")
    print("  (stats compare computes both in one pass; the calibrated default adds no fits)")
    print(f"max |AUC ours - AUC ref| over backbones (solver tolerance and the pooled "
          f"class-weighted vs per-fold log-loss): {max(auc_diffs):.2e}")
    print(f"max |bootstrap value vectorised - sklearn loop| (same predictions, same indices): "
          f"{max_boot_diff:.2e}")


if __name__ == "__main__":
    main()
