"""Benchmark: survival comparison (`stats compare base dro --task os`) vs a naive reference.

Setting (issue 8): 4 + 4 backbones, n = 300 patients, d = 2048, 5 x 5 repeated k-fold
stratified by event, 1,000 bootstrap resamples, Harrell's and Uno's c-index.

- neurofeat: :func:`neurofeat.analysis.survival.compare.compare_survival_backbones`
  (the model refitted per split and backbone on the shared fold plan, then the
  vectorised paired bootstrap, jackknife/BCa and per-fold c-indices through the
  generic comparison engine).
- reference: per backbone and split, a plain scikit-learn/scikit-survival Pipeline
  refitted from scratch (pca-cox: StandardScaler -> PCA -> CoxPHSurvivalAnalysis;
  coxnet: the same CoxnetRisk estimator), then a Python loop over the same bootstrap
  and leave-one-out index sets calling sksurv's ``concordance_index_censored`` and
  ``concordance_index_ipcw`` for every index set, repeat and backbone, and a loop over
  folds. Same fold plan, same resample indices; the values are checked to agree.

The reference loop over index sets costs the same per set, so by default it is timed
on the first ``--ref-boot`` resamples and the first ``--ref-jack`` leave-one-out sets
and scaled linearly to the full counts (stated in the output; pass ``--ref-boot 1000
--ref-jack 300`` to run it in full). Every reference fit runs in full. BLAS is limited
to one thread on both sides. Peak memory: tracemalloc (numpy allocations included).

Run: python benchmarks/bench_survival.py [--model pca-cox|coxnet] [--ref-boot 100]
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
import warnings

import numpy as np

FAMILY_BASE = ("byol", "dino", "mae", "moco")


def make_cohort(n: int, d: int, seed: int = 0):
    """8 backbones sharing a latent prognostic signal; DRO twins a little less noisy."""
    rng = np.random.default_rng(seed)
    k = 16
    latent = rng.normal(size=(n, k))
    lp = 0.6 * latent[:, 0] + 0.3 * latent[:, 1]
    t_event = rng.exponential(450.0 * np.exp(-lp)) + 1.0
    t_cens = rng.uniform(200.0, 1600.0, n)
    time_ = np.round(np.minimum(t_event, t_cens), 1)
    event = t_event <= t_cens
    emb = {}
    for base in FAMILY_BASE:
        for name, noise in ((base, 2.5), (base + "_dro", 2.0)):
            x = latent @ rng.normal(size=(k, d)) + noise * rng.normal(size=(n, d))
            emb[name] = np.maximum(x, 0).astype(np.float32)
    ids = np.array([f"P{i:04d}" for i in range(n)])
    sites = np.array(["UCSF", "UPenn", "CUIMC"])[np.arange(n) % 3]
    return emb, time_, event, ids, sites


def reference_fit(X, y, split, model: str, n_components: int):
    from sklearn.decomposition import PCA
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sksurv.linear_model import CoxPHSurvivalAnalysis

    from neurofeat.analysis.survival import CoxnetRisk

    if model == "pca-cox":
        pipe = make_pipeline(StandardScaler(), PCA(n_components, svd_solver="full"),
                             CoxPHSurvivalAnalysis(alpha=1e-3, ties="efron", n_iter=200))
    else:
        pipe = CoxnetRisk(random_state=0)
    pipe.fit(X[split.train], y[split.train])
    return pipe.predict(X[split.test])


def reference(emb, time_, event, plan, boot_index, jack_index, tau, model, n_components):
    from sksurv.metrics import concordance_index_censored, concordance_index_ipcw
    from sksurv.util import Surv

    y = Surv.from_arrays(event, time_)
    t0 = time.perf_counter()
    risk = {}
    for name, X in emb.items():
        r = np.full((plan.n_repeats, time_.size), np.nan)
        for split in plan.splits():
            r[split.repeat, split.test] = reference_fit(X, y, split, model, n_components)
        risk[name] = r
    t_fit = time.perf_counter() - t0

    def both(idx, row):
        h = concordance_index_censored(event[idx], time_[idx], row[idx])[0]
        u = concordance_index_ipcw(y, y[idx], row[idx], tau=tau)[0]
        return h, u

    t0 = time.perf_counter()
    boot = {}
    for name in emb:
        values = np.array([[both(idx, row) for row in risk[name]] for idx in boot_index])
        boot[name] = values.mean(axis=1)  # (B, 2): mean over repeats
    t_boot = time.perf_counter() - t0
    t0 = time.perf_counter()
    for name in emb:
        for idx in jack_index:
            for row in risk[name]:
                both(idx, row)
    t_jack = time.perf_counter() - t0
    t0 = time.perf_counter()
    folds = {}
    for name in emb:
        folds[name] = [both(s.test, risk[name][s.repeat])[0] for s in plan.splits()]
    t_folds = time.perf_counter() - t0
    return risk, boot, folds, t_fit, t_boot, t_jack, t_folds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--d", type=int, default=2048)
    parser.add_argument("--boot", type=int, default=1000)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--model", default="pca-cox", choices=("pca-cox", "coxnet"))
    parser.add_argument("--n-components", type=int, default=10)
    parser.add_argument("--ref-boot", type=int, default=100,
                        help="reference resamples actually run (scaled to --boot)")
    parser.add_argument("--ref-jack", type=int, default=30,
                        help="reference leave-one-out sets actually run (scaled to n)")
    args = parser.parse_args()

    from threadpoolctl import threadpool_limits

    from neurofeat.analysis.bootstrap import jackknife_indices, stratified_bootstrap_indices
    from neurofeat.analysis.pairing import pair_backbones
    from neurofeat.analysis.folds import derive_seed
    from neurofeat.analysis.survival.compare import compare_survival_backbones
    from neurofeat.analysis.survival.protocol import survival_fold_plan

    warnings.filterwarnings("ignore")
    emb, time_, event, ids, sites = make_cohort(args.n, args.d)
    pairs = pair_backbones("base", "dro", list(emb))
    params = {"n_components": args.n_components} if args.model == "pca-cox" else \
        {"random_state": 0}
    print(f"survival comparison: {len(emb)} backbones ({len(pairs)} pairs), n={args.n}, "
          f"d={args.d}, {args.repeats}x{args.folds} CV, {args.boot} bootstraps, "
          f"model={args.model}, events={int(event.sum())}")

    with threadpool_limits(limits=1, user_api="blas"):
        tracemalloc.start()
        t0 = time.perf_counter()
        fast = compare_survival_backbones(
            emb, time_, event, patient_ids=ids, pairs=pairs, sites=None, task="os",
            model=args.model, model_params=params, n_splits=args.folds,
            n_repeats=args.repeats, n_boot=args.boot, seed=0, side_a="base", side_b="dro")
        t_fast = time.perf_counter() - t0
        _, peak_fast = tracemalloc.get_traced_memory()
        tracemalloc.stop()

        plan = survival_fold_plan(ids, event, np.full(args.n, "all"), n_splits=args.folds,
                                  n_repeats=args.repeats, task="os", seed=0)
        boot_index = stratified_bootstrap_indices(
            event, args.boot, derive_seed("bootstrap", "os", 0, "all"))
        jack_index = jackknife_indices(args.n)
        tau = fast.taus["all"]
        tracemalloc.start()
        ref = reference(emb, time_, event, plan, boot_index[:args.ref_boot],
                        jack_index[:args.ref_jack], tau, args.model, args.n_components)
        _, peak_ref = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    risk_ref, boot_ref, folds_ref, t_fit, t_boot, t_jack, t_folds = ref

    # the two sides must agree: out-of-fold risk, bootstrap distributions, fold c-indices
    max_risk_diff = max(np.nanmax(np.abs(fast.cv[k].risk - risk_ref[k])) for k in emb)
    pair = next(p for p in fast.results["all"].pairs
                if p.metric == "harrell_c" and not p.pooled)
    a = pair.backbone_a
    from neurofeat.analysis.scoring import score_resamples
    from neurofeat.analysis.survival.compare import HARRELL, UNO, survival_target

    target = survival_target(time_, event, tau=tau)
    fast_boot_h = score_resamples(HARRELL, target, fast.cv[a].risk,
                                  boot_index[:args.ref_boot]).mean(axis=1)
    fast_boot_u = score_resamples(UNO, target, fast.cv[a].risk,
                                  boot_index[:args.ref_boot]).mean(axis=1)
    max_boot_diff = max(np.abs(fast_boot_h - boot_ref[a][:, 0]).max(),
                        np.abs(fast_boot_u - boot_ref[a][:, 1]).max())
    fast_folds = fast.cv[a].splits["harrell_c"].to_numpy()
    max_fold_diff = np.abs(fast_folds - np.array(folds_ref[a])).max()

    scale_boot = args.boot / max(1, min(args.ref_boot, args.boot))
    scale_jack = args.n / max(1, min(args.ref_jack, args.n))
    t_ref = t_fit + t_boot * scale_boot + t_jack * scale_jack + t_folds
    print(f"reference: fits {t_fit:.1f} s; bootstrap loop {t_boot:.1f} s for "
          f"{min(args.ref_boot, args.boot)} resamples -> x{scale_boot:.1f} = "
          f"{t_boot * scale_boot:.1f} s; jackknife {t_jack:.1f} s for "
          f"{min(args.ref_jack, args.n)} sets -> x{scale_jack:.1f} = {t_jack * scale_jack:.1f} s;"
          f" folds {t_folds:.1f} s; total {t_ref:.1f} s")
    print(f"neurofeat: total {t_fast:.1f} s (fits included)")
    print(f"agreement: max |risk diff| {max_risk_diff:.2e}; max |bootstrap c diff| "
          f"{max_boot_diff:.2e}; max |fold c diff| {max_fold_diff:.2e}")
    print(f"speed-up: {t_ref / t_fast:.1f}x (target >= 10x)")
    print(f"peak traced memory: neurofeat {peak_fast / 2**20:.0f} MiB, reference "
          f"{peak_ref / 2**20:.0f} MiB (embeddings: "
          f"{sum(x.nbytes for x in emb.values()) / 2**20:.0f} MiB)")
    row = next(p for p in fast.results["all"].pairs if p.pooled and p.metric == "harrell_c")
    print(f"result: {row.backbone_a} {row.a.estimate:.3f} vs {row.backbone_b} "
          f"{row.b.estimate:.3f}, diff {row.diff.estimate:+.3f} "
          f"[{row.diff.ci_low:+.3f}, {row.diff.ci_high:+.3f}]")


if __name__ == "__main__":
    main()
