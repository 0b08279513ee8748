"""Calibration harness (issue 13): does every p-value and interval hold its level?

For each simulated setting (:mod:`neurofeat.analysis.simulation`) it runs the real
comparison (:func:`~neurofeat.analysis.compare.compare_probes`, or
:func:`~neurofeat.analysis.survival.compare.compare_survival_backbones`) on 4 + 4
backbones paired a1/b1 ... a4/b4 (the shape of ``stats compare base dro``), R x k
repeated CV, and tabulates for every test row of the comparisons table:

- ``null``   (all embeddings pure noise, exact null): type-I error of p < 0.05 for pairs
  and for the pooled family row; coverage of each side's 95 % interval of the true
  value 0.5 (``one`` rows: one backbone's AUC/BA/c-index);
- ``equal``  (every backbone carries the same planted signal): coverage of each side's
  interval of the expected performance of the probe trained on n (k - 1) / k patients
  (estimated by Monte Carlo: independent training sets, each scored on a 5,000-patient
  test set), and of the difference interval of the true difference 0;
- ``diff``   (A backbones carry more signal than B): power of p < 0.05 at the stated
  expected difference (Monte Carlo, printed).

Monte-Carlo standard errors are clustered by replication (the 4 pairs of one cohort
share patients and folds). Run everything with ``--probe default`` (the probes
``stats compare`` uses: LinearProbe with its inner CV, RidgeProbe, coxnet) or the
much faster ``--probe fast`` (the same models at a fixed penalty: LinearProbe(Cs=1),
RidgeProbe(alphas=(10,)), coxnet(alpha=0.1)) for large replication counts.

Runs one process per ``--workers`` (default 1: the machine is shared), each BLAS call
single-threaded; replications are seeded by (setting, replication) so any split of the
work gives the same numbers.

Metrics: AUC and BA (binary; continuous tasks also Spearman and MAE, which ``stats
compare`` reports on request), Harrell's and Uno's C and each backbone's median-split
log-rank p (survival): the published asymptotic chi-squared p (``median-split``, all 8
backbones) and, with ``--permutations B`` (default 99; 0 = skip), the permutation p of
``neurofeat survival`` (``permutation``; outcomes permuted within site, every fold of
repeat 0 refitted) for the first ``--perm-backbones`` pairs' backbones (default 1: a1
and b1; B + 1 refits of one repeat each, by far the dearest part of a survival
replication). Settings named ``(in a* only)`` put the site effects in the A
family only: an exact null whose sides are not exchangeable.

Cost: a replication of 4 + 4 backbones at 5 x 5 CV takes about 0.35-0.45 CPU-s (fast
probe, binary, n = 120, d = 16), about 1 CPU-s (survival; 2 CPU-s with the default 99
log-rank permutations of a1 and b1: 600 null replications took 26 min wall at nice 19
on the shared machine), 2-3 s with the default probe's inner CV, more at d = 512 /
n = 300 (survival, default coxnet, 5 x 5 CV: 600 replications at n = 120 took 7 min
wall with ``--workers 2``). 1,000 replications of one binary setting took 16-40 min
wall on the shared 2-core machine (load 8-18, nice 10, 2-3 workers). The full grid
(``--list``: 120 settings) at 200 replications with the fast probe is therefore about 10
CPU hours (``--workers 2``: ~5 h); at the 1,000 replications the claims need, plan a
dedicated machine or run the settings of interest with ``--only``. ``--quick`` runs 3
settings x 40 replications (a few minutes). ``--dump-folds`` keeps every replication's
per-fold metrics so that other tests can be evaluated offline; ``--needed-factors``
turns the null and equal-signal dumps into the correction factors of
``CALIBRATED_CORRECTION`` (with bootstrap intervals over replications); ``--first-rep``
starts the replication index later, for fresh cohorts. ``--conservative-z`` adds, on
the same cohorts, probes and pairs, the conservative Z on paired subsampling
(:mod:`neurofeat.analysis.subsampling`, ``stats compare --protocol subsampling``;
mlr3inferr's ``ci.con_z``) as test ``conservative-z``: 315 fits per backbone instead of
25, about 14 CPU-s per binary replication with the default probe at n = 120.

Examples
--------
python benchmarks/bench_calibration.py --quick                     # ~2 min smoke run
python benchmarks/bench_calibration.py --only "binary p=0.33 n=120 d=16 null" \\
    --reps 1000 --probe fast --out cal.csv
python benchmarks/bench_calibration.py --list                      # every setting
"""

from __future__ import annotations

import argparse
import re
import sys
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from neurofeat.analysis.simulation import (SimulationSetting, performance_draws,  # noqa: E402
                                           simulate_cohort)

A_NAMES = ("a1", "a2", "a3", "a4")
B_NAMES = ("b1", "b2", "b3", "b4")
KEEP = ["metric", "pooled", "backbone_a", "test", "primary", "estimate_a", "ci_low_a",
        "ci_high_a", "estimate_b", "ci_low_b", "ci_high_b", "diff", "diff_ci_low",
        "diff_ci_high", "p_value", "rare"]


@dataclass(frozen=True)
class Spec:
    """One calibration setting: a population, a scenario and signal strengths."""

    sim: SimulationSetting
    scenario: str          # null | equal | diff
    signal_a: float = 0.0
    signal_b: float = 0.0

    @property
    def name(self) -> str:
        weak = (f" signal={self.signal_a:g}" if self.scenario == "equal"
                and self.signal_a != EQUAL_SIGNAL else "")
        return f"{self.sim.label()} {self.scenario}{weak}"

    def signals(self) -> dict[str, float]:
        out = {a: self.signal_a for a in A_NAMES}
        out.update({b: self.signal_b for b in B_NAMES})
        return out


#: Planted signal strengths (x_1 = s z + noise): 'equal' gives an expected AUC of the
#: fast probe near 0.70-0.75 at n = 120, d = 16; 'diff' plants about +0.05-0.08 AUC.
EQUAL_SIGNAL = 0.6
DIFF_SIGNALS = (0.9, 0.5)
#: A weaker equal signal (expected AUC about 0.55 at n = 120): between the exact null,
#: where the inner-CV probes shrink to a constant, and EQUAL_SIGNAL.
WEAK_SIGNAL = 0.3
#: Between WEAK_SIGNAL and EQUAL_SIGNAL for survival at n = 120 and n = 300 (expected C
#: about 0.55 at n = 120): a check that no signal between the two needs a larger c-index
#: factor than they do.
MID_SIGNAL = 0.45
#: Below WEAK_SIGNAL for survival at n = 300 (expected C about 0.52), where WEAK_SIGNAL
#: needed the largest c-index factor of the grid: a check that a signal nearer the exact
#: null does not need more.
FAINT_SIGNAL = 0.2
#: Above EQUAL_SIGNAL for survival at d = 512, n = 120, where EQUAL_SIGNAL leaves an
#: expected C of only 0.53: a moderate signal there (expected C nearer the 0.59 that
#: EQUAL_SIGNAL gives at n = 300, d = 512, where one backbone's c-index interval
#: under-covered, stop 34).
STRONG_SIGNAL = 1.0


def all_specs() -> list[Spec]:
    """The full grid of issue 13."""
    specs = []
    kinds = [SimulationSetting(kind="binary", prevalence=0.5),
             SimulationSetting(kind="binary", prevalence=1 / 3),
             SimulationSetting(kind="binary", prevalence=0.1),
             SimulationSetting(kind="continuous"),
             SimulationSetting(kind="survival", event_rate=0.6)]
    for base in kinds:
        for n in (80, 120, 300):
            for d in (16, 512):
                sim = replace(base, n=n, d=d)
                specs.append(Spec(sim, "null"))
                specs.append(Spec(sim, "equal", EQUAL_SIGNAL, EQUAL_SIGNAL))
                specs.append(Spec(sim, "diff", *DIFF_SIGNALS))
        specs.append(Spec(replace(base, n=120, d=16, n_sites=3), "null"))
    # survival that differs by site, embeddings that encode the site: a null for "no
    # information beyond the site" (the log-rank permutation test permutes within site)
    specs.append(Spec(replace(kinds[4], n=120, d=16, n_sites=3, site_shift=1.0,
                              site_hazard=1.0), "null"))
    # below the grid's smallest size: where the small-sample factors are extrapolated
    for n in (48, 60):
        sim = replace(kinds[0], n=n, d=16)
        specs.append(Spec(sim, "null"))
        specs.append(Spec(sim, "equal", EQUAL_SIGNAL, EQUAL_SIGNAL))
    # a weaker equal signal: the regime between the exact null and EQUAL_SIGNAL
    for base in (kinds[0], kinds[3], kinds[4]):
        specs.append(Spec(replace(base, n=120, d=16), "equal", WEAK_SIGNAL, WEAK_SIGNAL))
    # ... and at n = 300 for continuous and survival tasks, where EQUAL_SIGNAL needs less
    # than at n = 120 but a weaker signal needs as much or more (BA, the c-index)
    for base in (kinds[3], kinds[4]):
        specs.append(Spec(replace(base, n=300, d=16), "equal", WEAK_SIGNAL, WEAK_SIGNAL))
    specs.append(Spec(replace(kinds[4], n=120, d=16), "equal", MID_SIGNAL, MID_SIGNAL))
    # survival at n = 300: the c-index's need peaks between the exact null and
    # EQUAL_SIGNAL, so the grid brackets WEAK_SIGNAL from both sides
    for signal in (FAINT_SIGNAL, MID_SIGNAL):
        specs.append(Spec(replace(kinds[4], n=300, d=16), "equal", signal, signal))
    # a rare survival endpoint (about 24 events at n = 120: fewer than RARE_ENDPOINT)
    rare_survival = replace(kinds[4], event_rate=0.2, n=120, d=16)
    specs.append(Spec(rare_survival, "null"))
    specs.append(Spec(rare_survival, "equal", EQUAL_SIGNAL, EQUAL_SIGNAL))
    # site effects in the A family only (a base family against site-invariant twins)
    specs.append(Spec(replace(kinds[1], n_sites=3, site_prefix="a"), "null"))
    specs.append(Spec(replace(kinds[1], n_sites=3, site_prefix="a", site_shift=1.0), "null"))
    # site structure beyond n = 120, d = 16: the larger cohort (binary, continuous,
    # survival) and the wide embedding (binary), each an exact null and an equal signal
    for base, n, d in ((kinds[1], 300, 16), (kinds[3], 300, 16), (kinds[4], 300, 16),
                       (kinds[1], 120, 512)):
        sim = replace(base, n=n, d=d, n_sites=3)
        specs.append(Spec(sim, "null"))
        specs.append(Spec(sim, "equal", EQUAL_SIGNAL, EQUAL_SIGNAL))
    # survival with more features than training patients (stop 34: one backbone's
    # c-index interval covered 87-90 % at n = 300, d = 512 with EQUAL_SIGNAL): does the
    # need follow the dimension (d = 128, below the 240 training patients; d = 2048), or
    # the signal (a moderate one at n = 120, d = 512)?
    for d in (128, 2048):
        sim = replace(kinds[4], n=300, d=d)
        specs.append(Spec(sim, "null"))
        specs.append(Spec(sim, "equal", EQUAL_SIGNAL, EQUAL_SIGNAL))
    specs.append(Spec(replace(kinds[4], n=120, d=512), "equal", STRONG_SIGNAL, STRONG_SIGNAL))
    # the high-dimensional c-index factor's boundary: 128 features > 96 training patients
    specs.append(Spec(replace(kinds[4], n=120, d=128), "equal", STRONG_SIGNAL, STRONG_SIGNAL))
    # beyond the range the high-dimensional factors were set on (8.5 features per
    # training patient at n = 300, d = 2048): 21 per patient
    specs.append(Spec(replace(kinds[4], n=120, d=2048), "equal", STRONG_SIGNAL, STRONG_SIGNAL))
    # between 16 and 128 features at n = 300 (0.07 and 0.53 per training patient): where
    # the difference's high-dimensional step (from 0.5) starts
    specs.append(Spec(replace(kinds[4], n=300, d=64), "equal", EQUAL_SIGNAL, EQUAL_SIGNAL))
    return specs


#: Metrics compared per task kind: what ``stats compare`` reports by default (auc, ba)
#: plus, for continuous tasks, the spearman and mae it reports on request.
METRICS = {"binary": ("auc", "ba"), "continuous": ("auc", "ba", "spearman", "mae")}

#: The value of a metric when the embedding carries no signal (exact null); metrics
#: without a known null value (mae) get no one-backbone coverage row.
NULL_VALUE = {"auc": 0.5, "ba": 0.5, "harrell_c": 0.5, "uno_c": 0.5, "spearman": 0.0}

QUICK = ["binary p=0.33 n=120 d=16 null", "binary p=0.5 n=120 d=16 equal",
         "survival events=0.6 n=120 d=16 null"]


def _model_kwargs(kind: str, probe: str) -> dict:
    if kind == "survival":
        return {"model": "coxnet",
                "model_params": {"alpha": 0.1} if probe == "fast" else {}}
    if kind == "continuous":
        return {"ridge_params": {"alphas": (10.0,)} if probe == "fast" else {}}
    return {"linear_params": {"Cs": 1.0} if probe == "fast" else {}}


def replicate(spec: Spec, rep: int, *, probe: str, n_splits: int, n_repeats: int,
              n_boot: int, permutations: int = 0, perm_pairs: int = 1,
              conservative_z: bool = False) -> pd.DataFrame:
    """One simulated cohort through the real comparison; the tests table's rows."""
    from neurofeat.analysis.compare import compare_probes
    from neurofeat.analysis.survival.compare import compare_survival_backbones

    seed = _seed(spec.name, rep)
    cohort = simulate_cohort(spec.sim, spec.signals(), np.random.default_rng(seed))
    pairs = list(zip(A_NAMES, B_NAMES))
    task = f"cal{rep}"
    kwargs = _model_kwargs(spec.sim.kind, probe)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if spec.sim.kind == "survival":
            res = compare_survival_backbones(
                cohort.embeddings, cohort.time, cohort.event, patient_ids=cohort.patient_ids,
                pairs=pairs, task=task, n_splits=n_splits, n_repeats=n_repeats,
                n_boot=n_boot, seed=rep, side_a="A", side_b="B", by_site=False, **kwargs)
            permuted = [x for pair in pairs[:perm_pairs] for x in pair] if permutations else []
            frame = pd.concat([res.to_frame(), _logrank_rows(
                res, cohort, permuted=permuted, permutations=permutations, task=task,
                seed=rep, n_splits=n_splits, model_kwargs=kwargs)], ignore_index=True)
        else:
            res = compare_probes(
                cohort.embeddings, cohort.y, patient_ids=cohort.patient_ids, pairs=pairs,
                task=task, kind=spec.sim.kind, threshold=spec.sim.threshold,
                metrics=METRICS[spec.sim.kind], n_splits=n_splits, n_repeats=n_repeats,
                n_boot=n_boot, seed=rep, side_a="A", side_b="B", **kwargs)
            frame = res.to_frame()
    frame = frame[KEEP].copy()
    if conservative_z:
        frame = pd.concat([frame, _conservative_z_rows(spec, cohort, pairs, task, rep, kwargs)],
                          ignore_index=True)
    frame["rep"] = rep
    results = res.results.values() if spec.sim.kind == "survival" else [res]
    folds = [{"rep": rep, "metric": pc.metric, "pooled": pc.pooled, "a": pc.folds_a,
              "b": pc.folds_b, "n_train": pc.n_train,
              "shares_a": pc.shares_a, "shares_b": pc.shares_b, "n": pc.n, "n_pos": pc.n_pos}
             for r in results for pc in r.pairs if pc.site == "all"]
    frame.attrs["folds"] = folds
    return frame


def _conservative_z_rows(spec: Spec, cohort, pairs, task: str, rep: int,
                         kwargs: dict) -> pd.DataFrame:
    """The conservative-Z rows (:mod:`neurofeat.analysis.subsampling`, mlr3inferr's
    ``ci.con_z`` at its default 15 x (1 + 2 x 10) subsamples, test size n / 5) of the
    same cohort, probes and pairs."""
    from neurofeat.analysis.subsampling import subsample_probes, subsample_survival

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if spec.sim.kind == "survival":
            res = subsample_survival(cohort.embeddings, cohort.time, cohort.event,
                                     patient_ids=cohort.patient_ids, pairs=pairs, task=task,
                                     seed=rep, **kwargs)
        else:
            res = subsample_probes(cohort.embeddings, cohort.y, patient_ids=cohort.patient_ids,
                                   pairs=pairs, task=task, kind=spec.sim.kind,
                                   threshold=spec.sim.threshold, metrics=METRICS[spec.sim.kind],
                                   seed=rep, **kwargs)
    return res.to_frame()[KEEP]


def _logrank_rows(res, cohort, *, permuted=(), permutations=0, task="", seed=0,
                  n_splits=5, model_kwargs=None) -> pd.DataFrame:
    """The median-split log-rank p of every backbone (``neurofeat survival``'s test).

    As :func:`~neurofeat.analysis.survival.evaluation.evaluate_survival`: high/low risk
    at each training fold's median risk, first repeat, log-rank test of the two groups.
    One row per backbone (``backbone_a``), pair rows only: ``test = 'median-split'``
    (asymptotic chi-squared, the published p) for every backbone, and ``test =
    'permutation'`` (:func:`~neurofeat.analysis.survival.permutation.permutation_logrank_test`
    with ``permutations`` permutations, the calibrated default of ``neurofeat
    survival``) for the backbones in ``permuted``, on the same fold plan (task, seed),
    model and, with sites, permuted within site.
    """
    from neurofeat.analysis.survival.cox import make_cox_model
    from neurofeat.analysis.survival.logrank import logrank_test
    from neurofeat.analysis.survival.permutation import permutation_logrank_test
    from neurofeat.analysis.survival.risk_groups import RISK_GROUP_LABELS

    rows = []
    for name, cv in sorted(res.cv.items()):
        high = cv.high_risk[0]
        tested = high >= 0
        groups = np.where(high[tested] == 1, RISK_GROUP_LABELS[1], RISK_GROUP_LABELS[0])
        p = float("nan")
        if np.unique(groups).size == 2:
            p = logrank_test(cohort.time[tested], cohort.event[tested], groups).p_value
        rows.append({"metric": "logrank", "pooled": False, "backbone_a": name,
                     "test": "median-split", "primary": False, "p_value": p, "rare": False})
        if name in permuted:
            sites = cohort.sites if np.unique(cohort.sites).size > 1 else None
            perm = permutation_logrank_test(
                cohort.embeddings[name], cohort.time, cohort.event,
                patient_ids=cohort.patient_ids, sites=sites,
                model=make_cox_model(model_kwargs["model"], **model_kwargs["model_params"]),
                n_splits=n_splits, task=task, seed=seed, n_permutations=permutations)
            rows.append({"metric": "logrank", "pooled": False, "backbone_a": name,
                         "test": "permutation", "primary": True,
                         "p_value": perm.p_value["all"], "rare": False})
    return pd.DataFrame(rows)


def _seed(name: str, rep: int) -> int:
    from neurofeat.analysis.folds import derive_seed

    return derive_seed("calibration", name, rep) % (2 ** 32)


#: Training draws per truth chunk: the expected performance is estimated in chunks of
#: this many draws, each seeded from (setting, chunk), so that the pool can share them
#: out and the estimate does not depend on the number of workers.
TRUTH_CHUNK = 5


def truth_chunks(spec: Spec, *, probe: str, n_splits: int, n_draws: int,
                 n_test: int) -> list[tuple]:
    """The jobs (for :func:`_truth_job`) that together draw ``n_draws`` training sets."""
    sizes = [TRUTH_CHUNK] * (n_draws // TRUTH_CHUNK)
    if n_draws % TRUTH_CHUNK:
        sizes.append(n_draws % TRUTH_CHUNK)
    return [(spec, dict(probe=probe, n_splits=n_splits, n_draws=size, n_test=n_test,
                        seed=_seed("truth:" + spec.name, i)))
            for i, size in enumerate(sizes)]


def _truth_job(args):
    spec, kw = args
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        return truth_values(spec, **kw)


def combine_truth(chunks: list[dict[str, dict[str, np.ndarray]]]) -> dict:
    """Expected performance per side and metric, with its Monte-Carlo standard error, from
    the per-draw values of the chunks (:func:`truth_values`)."""
    if not chunks or not chunks[0]:
        return {"A": {}, "B": {}}
    out: dict = {"A": {}, "B": {}, "mcse": {}}
    for side, per in chunks[0].items():
        for m in per:
            v = np.concatenate([c[side][m] for c in chunks])
            out[side][m] = float(v.mean())
            out["mcse"][f"{side}:{m}"] = float(v.std(ddof=1) / np.sqrt(v.size))
    return out


def truth_values(spec: Spec, *, probe: str, n_splits: int, n_draws: int, n_test: int,
                 seed: int) -> dict[str, dict[str, np.ndarray]]:
    """Per-draw performance of each side's probe trained on n (k - 1) / k patients, over
    ``n_draws`` training sets drawn from ``seed`` (empty at the exact null)."""
    from sklearn.metrics import roc_auc_score

    kind = spec.sim.kind
    n_train = int(round(spec.sim.n * (n_splits - 1) / n_splits))
    if spec.scenario == "null":
        return {}
    # each side as its first backbone, so that a site_prefix ('a') reaches it as in the
    # cohorts; returned under "A" / "B"
    sides = {A_NAMES[0]: "A", B_NAMES[0]: "B"}
    signals = {A_NAMES[0]: spec.signal_a, B_NAMES[0]: spec.signal_b}
    kwargs = _model_kwargs(kind, probe)

    def ba(labels, pred):
        labels = labels.astype(bool)
        return 0.5 * (pred[labels].mean() + (~pred[~labels]).mean())

    if kind == "survival":
        from sksurv.metrics import concordance_index_censored, concordance_index_ipcw
        from sksurv.util import Surv

        from neurofeat.analysis.survival.concordance import default_tau
        from neurofeat.analysis.survival.cox import make_cox_model

        def fit_predict(X, _y, X_test, train):
            model = make_cox_model(kwargs["model"], **kwargs["model_params"])
            model.fit(X, Surv.from_arrays(train.event, train.time))
            fit_predict.train = train
            return model.predict(X_test)

        def harrell(test, s):
            return concordance_index_censored(test.event, test.time, s)[0]

        def uno(test, s):
            tr = fit_predict.train
            tau = min(default_tau(test.time), tr.time.max() * 0.999)
            keep = test.time < tr.time.max()
            return concordance_index_ipcw(Surv.from_arrays(tr.event, tr.time),
                                          Surv.from_arrays(test.event[keep],
                                                           test.time[keep]),
                                          s[keep], tau=tau)[0]

        metrics = {"harrell_c": harrell, "uno_c": uno}
    else:
        from neurofeat.analysis.probes import LinearProbe, RidgeProbe

        if kind == "binary":
            def fit_predict(X, y, X_test, _train):
                return LinearProbe(**kwargs["linear_params"]).fit(X, y.astype(bool)) \
                    .predict_proba(X_test)[:, 1]
            cut = 0.5
        else:
            def fit_predict(X, y, X_test, _train):
                return RidgeProbe(**kwargs["ridge_params"]).fit(X, y).predict(X_test)
            cut = spec.sim.threshold

        def labels_of(test):
            return test.y >= 0.5 if kind == "binary" else test.y >= spec.sim.threshold

        metrics = {"auc": lambda test, s: roc_auc_score(labels_of(test), s),
                   "ba": lambda test, s: ba(labels_of(test), s >= cut)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = performance_draws(spec.sim, signals, fit_predict, metrics, n_train=n_train,
                                n_draws=n_draws, n_test=n_test, seed=seed)
    return {sides[b]: per for b, per in out.items()}


def _rate(indicator: pd.Series, reps: pd.Series) -> tuple[float, float]:
    """Rate and Monte-Carlo s.e. clustered by replication."""
    per_rep = indicator.astype(float).groupby(reps).mean()
    rate = float(indicator.mean())
    se = float(per_rep.std(ddof=1) / np.sqrt(per_rep.size)) if per_rep.size > 1 else np.nan
    return rate, se


def summarise(spec: Spec, rows: pd.DataFrame, true: dict) -> pd.DataFrame:
    """Type-I error / coverage / power per (row kind, metric, test)."""
    out = []
    n_reps = rows["rep"].nunique()
    rows = rows.assign(test=rows["test"].replace({"ttest": "auto", "wilcoxon": "auto"}))
    for (metric, test, pooled), g in rows.groupby(["metric", "test", "pooled"], sort=False):
        kind = "pooled" if pooled else "pair"
        base = {"setting": spec.sim.label(), "scenario": spec.scenario, "metric": metric,
                "test": test, "reps": n_reps, "rare_flag": float(g["rare"].mean())}
        sig = g["p_value"] < 0.05
        # survival that differs by site, embeddings that encode it: a null only for the
        # paired comparisons and the within-site permutation test
        by_site_survival = bool(spec.sim.site_hazard) and spec.sim.n_sites > 1
        if metric == "logrank":  # one backbone's test of no association
            r, se = _rate(sig, g["rep"])
            what = "type-I error" if spec.scenario == "null" else "power"
            if by_site_survival and test == "median-split":
                # the risk groups do predict survival (through the site): not a null
                what = "rejection rate (site effect on survival is real)"
            how = "median split, chi-squared" if test == "median-split" else \
                "median split, permutation" + (" within site" if spec.sim.n_sites > 1 else "")
            out.append({**base, "row": "one", "quantity": f"{what} ({how})", "rate": r,
                        "mcse": se})
            continue
        if spec.scenario == "null":
            r, se = _rate(sig, g["rep"])
            out.append({**base, "row": kind, "quantity": "type-I error", "rate": r, "mcse": se})
            if not pooled and metric in NULL_VALUE:
                v = NULL_VALUE[metric]
                cov_a = (g["ci_low_a"] <= v) & (v <= g["ci_high_a"])
                cov_b = (g["ci_low_b"] <= v) & (v <= g["ci_high_b"])
                r, se = _rate(pd.concat([cov_a, cov_b]), pd.concat([g["rep"], g["rep"]]))
                note = " (not the truth: survival differs by site)" if by_site_survival else ""
                out.append({**base, "row": "one", "quantity": f"coverage of {v:g}{note}",
                            "rate": r,
                            "mcse": se})
        elif spec.scenario == "equal":
            cov_d = (g["diff_ci_low"] <= 0) & (0 <= g["diff_ci_high"])
            r, se = _rate(cov_d, g["rep"])
            out.append({**base, "row": kind, "quantity": "diff coverage of 0", "rate": r,
                        "mcse": se})
            if not pooled and metric in true["A"]:
                ta, tb = true["A"][metric], true["B"][metric]
                if spec.signal_a == spec.signal_b and not spec.sim.site_prefix:
                    ta = tb = 0.5 * (ta + tb)   # the same population: average the estimates
                cov_a = (g["ci_low_a"] <= ta) & (ta <= g["ci_high_a"])
                cov_b = (g["ci_low_b"] <= tb) & (tb <= g["ci_high_b"])
                r, se = _rate(pd.concat([cov_a, cov_b]), pd.concat([g["rep"], g["rep"]]))
                out.append({**base, "row": "one",
                            "quantity": f"coverage of E[{metric}]={ta:.3f}", "rate": r,
                            "mcse": se})
        else:
            r, se = _rate(sig, g["rep"])
            planted = ""
            if metric in true["A"]:
                planted = f" at {true['A'][metric] - true['B'][metric]:+.3f}"
            out.append({**base, "row": kind, "quantity": "power" + planted, "rate": r,
                        "mcse": se})
    return pd.DataFrame(out)


def _job(args):
    spec, rep, kw = args
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        return replicate(spec, rep, **kw)


def run_spec(spec: Spec, *, reps: int, probe: str, n_splits: int, n_repeats: int,
             n_boot: int, workers: int, truth_draws: int, truth_test: int,
             fold_dump: Path | None = None, permutations: int = 0,
             perm_pairs: int = 1, first_rep: int = 0,
             conservative_z: bool = False) -> pd.DataFrame:
    kw = dict(probe=probe, n_splits=n_splits, n_repeats=n_repeats, n_boot=n_boot,
              permutations=permutations, perm_pairs=perm_pairs, conservative_z=conservative_z)
    jobs = [(spec, rep, kw) for rep in range(first_rep, first_rep + reps)]
    truth_jobs = truth_chunks(spec, probe=probe, n_splits=n_splits, n_draws=truth_draws,
                              n_test=truth_test)
    t0 = time.perf_counter()
    if workers > 1:
        import multiprocessing as mp

        with mp.get_context("fork").Pool(workers) as pool:
            # truth chunks first (the pool takes jobs in order), in parallel with the reps
            pending = pool.map_async(_truth_job, truth_jobs, chunksize=1)
            frames = pool.map(_job, jobs, chunksize=4)
            chunks = pending.get()
    else:
        frames = [_job(j) for j in jobs]
        chunks = [_truth_job(j) for j in truth_jobs]
    rows = pd.concat(frames, ignore_index=True)
    true = combine_truth(chunks)
    if fold_dump is not None:
        import pickle

        fold_dump.parent.mkdir(parents=True, exist_ok=True)
        with open(fold_dump, "wb") as fh:
            pickle.dump({"spec": spec.name, "n_splits": n_splits, "n_repeats": n_repeats,
                         "folds": [f for fr in frames for f in fr.attrs["folds"]]}, fh)
        with open(fold_dump.with_suffix(".truth.pkl"), "wb") as fh:
            pickle.dump(true, fh)
    table = summarise(spec, rows, true)
    table["probe"] = probe
    table["cv"] = f"{n_repeats}x{n_splits}"
    table["seconds"] = round(time.perf_counter() - t0, 1)
    return table


def _factor(diffs: np.ndarray, k: int) -> float:
    """``c`` solving Var(mean of the J fold values) = (1/J + c/(k-1)) E[s^2]."""
    j = diffs.shape[1]
    factor = diffs.mean(axis=1).var() / diffs.var(axis=1, ddof=1).mean()
    return (factor - 1 / j) * (k - 1)


def _rejection_rate(diffs: np.ndarray, c: float, k: int) -> float:
    from scipy import special

    j = diffs.shape[1]
    t = diffs.mean(axis=1) / np.sqrt((1 / j + c / (k - 1)) * diffs.var(axis=1, ddof=1))
    return float((2 * special.stdtr(j - 1, -np.abs(t)) < 0.05).mean())


def _factor_at_level(diffs: np.ndarray, k: int) -> float:
    """The ``c`` at which the calibrated t rejects exactly 5 % of these nulls."""
    from scipy import optimize

    try:
        return float(optimize.brentq(lambda c: _rejection_rate(diffs, c, k) - 0.05, 0.05, 8.0,
                                     xtol=1e-3))
    except ValueError:
        return float("nan")


def needed_factors(dump_dir: Path, n_boot: int = 200, seed: int = 0) -> pd.DataFrame:
    """How :data:`~neurofeat.analysis.correction_factors.CALIBRATED_CORRECTION` was derived.

    For every dump of a setting whose difference is null (``--dump-folds`` of an exact
    null, or of the same signal in both families; not ``diff``, nor the ``.truth.pkl``
    files): the variance over replications of the
    mean of the R x k per-fold differences, divided by the mean within-replication
    variance of those fold values, is the factor the corrected variance
    ``(1/J + c n_test/n_train) s^2`` must reach; ``c`` solves it. ``c_5`` is the factor at
    which the calibrated t rejects exactly 5 % of the dump's nulls (it also absorbs the
    fold values' tails: with rare positives it can differ from ``c`` by 0.1-0.3).
    ``c_low``/``c_high`` and ``c_5_low``/``c_5_high``: 95 % percentile intervals of a
    bootstrap over replications (the pairs of one replication resampled together).
    ``tied``: the share of folds in which both sides score exactly 0.5 (both probes
    collapsed to a constant: BA, c-indices), where the difference is a structural zero.
    Such folds cap the t statistic: with ``m`` of ``J`` folds not tied, ``|t|`` over
    folds is at most ``sqrt(m (J - 1) / (J - m))``, so at 5 x 5 CV a pair with fewer than
    19 untied folds can never reach p < 0.05 at the c-index factor 2.3 (16 at continuous
    BA's 1.4): the main reason the exact nulls of those metrics reject far less than 5 %.
    """
    import pickle

    from neurofeat.analysis.correction_factors import degenerate_folds

    rng = np.random.default_rng(seed)
    out = []
    for path in sorted(Path(dump_dir).glob("*.pkl")):
        if path.name.endswith(".truth.pkl"):
            continue
        with open(path, "rb") as fh:
            dump = pickle.load(fh)
        if re.search(r" diff$", dump["spec"]):  # a planted difference: not a null
            continue
        k = dump["n_splits"]
        for metric in sorted({r["metric"] for r in dump["folds"]}):
            for pooled in (False, True):
                recs = [r for r in dump["folds"] if r["metric"] == metric
                        and r["pooled"] == pooled]
                if len(recs) < 20:
                    continue
                diffs = np.array([r["a"] - r["b"] for r in recs]).reshape(len(recs), -1)
                tied = np.array([degenerate_folds(np.ravel(r["a"]))
                                 & degenerate_folds(np.ravel(r["b"])) for r in recs])
                reps = np.array([r["rep"] for r in recs])
                ok = np.isfinite(diffs).all(axis=1)
                diffs, reps, tied = diffs[ok], reps[ok], tied[ok]
                j = diffs.shape[1]
                n_ratio = 1.0 / (k - 1)  # n_test / n_train of k-fold CV
                ids = np.unique(reps)
                members = [np.flatnonzero(reps == i) for i in ids]
                boot_c, boot_c5 = [], []
                for b in range(n_boot):
                    rows = np.concatenate([members[i] for i in
                                           rng.integers(0, ids.size, ids.size)])
                    boot_c.append(_factor(diffs[rows], k))
                    if b < min(n_boot, 100):   # the root search is the slow part
                        boot_c5.append(_factor_at_level(diffs[rows], k))
                c = _factor(diffs, k)
                out.append({"setting": dump["spec"], "metric": metric,
                            "row": "pooled" if pooled else "pair", "reps": ids.size,
                            "rows": len(diffs), "needed_factor": 1 / j + c * n_ratio,
                            "nadeau_bengio": 1 / j + n_ratio, "c": c,
                            "c_low": np.nanpercentile(boot_c, 2.5),
                            "c_high": np.nanpercentile(boot_c, 97.5),
                            "c_5": _factor_at_level(diffs, k),
                            "c_5_low": np.nanpercentile(boot_c5, 2.5),
                            "c_5_high": np.nanpercentile(boot_c5, 97.5),
                            "tied": float(tied.mean())})
    return pd.DataFrame(out)


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default=None,
                        help="regex on setting names (see --list)")
    parser.add_argument("--reps", type=int, default=1000, help="replications per setting")
    parser.add_argument("--first-rep", type=int, default=0,
                        help="index of the first replication (replications are seeded by "
                             "setting and index: a later index gives fresh cohorts, e.g. to "
                             "validate a factor on data it was not measured on)")
    parser.add_argument("--probe", choices=("default", "fast"), default="default")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--bootstrap", type=int, default=500,
                        help="bootstrap resamples per comparison (published rows)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--permutations", type=int, default=99,
                        help="survival: permutations of the log-rank test (0 = skip)")
    parser.add_argument("--perm-backbones", type=int, default=1, metavar="PAIRS",
                        help="survival: permutation test for the backbones of the first "
                             "PAIRS pairs (1: a1 and b1)")
    parser.add_argument("--conservative-z", action="store_true",
                        help="also run the conservative Z on paired subsampling (mlr3inferr's "
                             "ci.con_z; 315 fits per backbone) on every cohort")
    parser.add_argument("--truth-draws", type=int, default=200)
    parser.add_argument("--truth-test", type=int, default=5000)
    parser.add_argument("--quick", action="store_true",
                        help=f"{', '.join(QUICK)} with 40 replications, fast probe, 5x2 CV")
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--needed-factors", type=Path, default=None, metavar="DUMP_DIR",
                        help="print the correction factor each dumped null (or "
                             "equal-signal) setting needs")
    parser.add_argument("--out", type=Path, default=None, help="append the table to a CSV")
    parser.add_argument("--dump-folds", type=Path, default=None,
                        help="folder: per-fold metrics of every replication (pickle per "
                             "setting), to evaluate other tests offline")
    args = parser.parse_args(argv)
    if args.needed_factors is not None:
        table = needed_factors(args.needed_factors)
        print(table.round(3).to_string(index=False))
        return table
    specs = all_specs()
    if args.list:
        for spec in specs:
            print(spec.name)
        return pd.DataFrame()
    if args.quick:
        specs = [s for s in specs if s.name in QUICK]
        args.reps, args.probe, args.repeats, args.truth_draws = 40, "fast", 2, 40
        args.permutations = min(args.permutations, 19)
    elif args.only:
        specs = [s for s in specs if re.search(args.only, s.name)]
    tables = []
    for spec in specs:
        table = run_spec(spec, reps=args.reps, probe=args.probe, n_splits=args.folds,
                         n_repeats=args.repeats, n_boot=args.bootstrap,
                         workers=args.workers, truth_draws=args.truth_draws,
                         truth_test=args.truth_test, permutations=args.permutations,
                         perm_pairs=args.perm_backbones, first_rep=args.first_rep,
                         conservative_z=args.conservative_z,
                         fold_dump=None if args.dump_folds is None else
                         args.dump_folds / (re.sub(r"[^A-Za-z0-9.]+", "_", spec.name) + ".pkl"))
        tables.append(table)
        show = table.assign(rate=table["rate"].map("{:.3f}".format),
                            mcse=table["mcse"].map("{:.3f}".format))
        print(f"\n== {spec.name} ({args.reps} reps, {args.probe} probe, "
              f"{args.repeats}x{args.folds} CV, {table['seconds'].iloc[0]} s)")
        print(show[["row", "metric", "test", "quantity", "rate", "mcse"]]
              .to_string(index=False), flush=True)
        if args.out is not None:
            table.to_csv(args.out, mode="a", header=not args.out.exists(), index=False)
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()


if __name__ == "__main__":
    main()
