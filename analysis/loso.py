"""Leave-one-site-out (LOSO) paired comparison: does A beat B at a site it never saw?

Binary and continuous tasks (probes; :func:`compare_loso_scores` on their held-out
predictions) and survival tasks (:func:`compare_survival_loso`: Harrell's and Uno's C,
Uno's weights and ``tau`` from each held-out site's own follow-up).

With LOSO the probe of held-out site ``s`` is **one** fit on the other sites, and both
sides use the same fits' plan (fold = site; identical for every backbone, so the
comparison is paired patient by patient). The table :func:`compare_loso_scores` builds
has, per pair and metric:

``site = <s>`` (one row per test, per held-out site)
    A's and B's metric at site ``s`` and ``A - B``. Estimand: the metric at site ``s``
    of the probe trained on the other sites (*that* fit; the site's patients a sample of
    its population). The paired DeLong test (AUC) and the paired bootstrap stratified by
    class over the site's patients (every metric) are valid for it, conditionally on the
    fit (simulated exact null: DeLong 5.3 % of 600 site tests). Primary: DeLong for the
    AUC, the bootstrap otherwise (and on family rows).
``site = 'all'`` (pooled)
    The mean over the K held-out sites of the per-site metric, and of ``A - B``.
    Default test ``loso-z``: ``z = mean(d_s) / se`` with
    ``se^2 = 2 sum_s v_s / K^2``, ``v_s`` the paired-bootstrap variance of site ``s``'s
    difference. Why doubled: each site's patients also train the other sites' probes,
    so the per-site differences are positively correlated even under an exact null
    (measured: r = 0.36-0.40 between sites at K = 3); to first order the error of
    ``d_s`` is a sum of terms each shared by exactly two sites, which bounds
    ``Var(sum d_s) <= 2 sum Var(d_s)``. A plain t over the K differences, the
    independent-sites z, and the site-stratified bootstrap of the mean (kept, by name
    ``bootstrap``) rejected 10-18 % of exact nulls; ``loso-z`` rejected 1.7-6.0 %
    (conservative, most for balanced accuracy; :data:`LOSO_METHODS`). What it does not
    cover: the variability of the fits themselves (a planted null where both backbones
    carry the same signal rejected 0.5-2.5 %, but nothing bounds it in general), and the
    sampling of sites: with 3-4 sites the pooled row describes these sites, not a
    population of sites.
``site = 'worst'``
    ``worst-site``: the held-out site where ``A - B`` is least favourable to A (lowest
    difference; highest for a lower-is-better metric such as MAE), with that site's
    primary test at level ``1 - alpha / K`` and ``p x K`` (Bonferroni over the K
    sites), which pays for picking the site after seeing the data.
    ``worst-group``: each side's minimum per-site metric (its own worst site; A's and
    B's may differ, ``held_out = 'S_a|S_b'``), the quantity Group-DRO optimises;
    descriptive, with a site-stratified bootstrap interval conditional on the fits and
    no p-value.

Families pool member pairs as in the CV protocol: a side's per-site metric (and
bootstrap draws) is the mean over its members.

Examples
--------
>>> import numpy as np
>>> from neurofeat.analysis.scoring import AUC
>>> rng = np.random.default_rng(0)
>>> y = np.tile([True, False], 30)
>>> sites = np.repeat(["S1", "S2", "S3"], 20)
>>> scores = {"a": y + rng.normal(size=60), "b": rng.normal(size=60)}
>>> res = compare_loso_scores([AUC], y, y, scores, [("a", "b")], sites, task="t",
...                           n_boot=200)
>>> sorted(set(res.to_frame()["site"]))
['S1', 'S2', 'S3', 'all', 'worst']
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from neurofeat.analysis.bootstrap import (
    percentile_interval,
    stratified_bootstrap_indices,
)
from neurofeat.analysis.compare import (
    ComparisonResult,
    Inference,
    bootstrap_p_value,
    delong_inference,
    rare_endpoint_warning,
)
from neurofeat.analysis.folds import FoldError, derive_seed
from neurofeat.analysis.paired_tests import DEFAULT_TEST, METRIC_BOUNDS
from neurofeat.analysis.scoring import Scorer, score_resamples
from scipy import special

__all__ = [
    "LOSO_DEFAULT_TEST",
    "LOSO_ESTIMANDS",
    "LOSO_METHODS",
    "LOSO_TESTS",
    "LosoComparison",
    "LosoPair",
    "check_loso_sites",
    "compare_loso_scores",
    "compare_survival_loso",
    "loso_pooled_test",
    "loso_survival_targets",
]

#: The pooled row's default test (see the module docstring).
LOSO_DEFAULT_TEST = "loso-z"

#: ``--test`` values that apply to LOSO: the default picks DeLong (AUC) / bootstrap per
#: site and ``loso-z`` pooled; 'delong' is the same; 'bootstrap' makes every bootstrap row
#: primary (the published BrainIAC procedure).
LOSO_TESTS = (DEFAULT_TEST, LOSO_DEFAULT_TEST, "delong", "bootstrap")

#: What each LOSO row estimates (``estimand`` column), by (scope, test).
LOSO_ESTIMANDS: dict[str, str] = {
    "site": "{metric} at held-out site {site} of the probe trained on the other {k1} "
            "site(s) (this fit; the site's patients a sample of its population)",
    "pooled": "mean over the {k} held-out sites of the per-site {metric} of the probe "
              "trained on the other sites (these fits; each site's patients a sample of "
              "its population)",
    "worst-site": "{metric} at the held-out site where A - B is least favourable to A "
                  "(selected: {site}), probe trained on the other sites; interval at level "
                  "1 - alpha/{k} and p x {k} (Bonferroni) pay for the selection",
    "worst-group": "minimum over the {k} held-out sites of each side's {metric} (A's worst "
                   "site | B's worst site: {site}); descriptive, site-stratified bootstrap "
                   "interval conditional on the fits, no test",
}

#: How each LOSO test works and its measured type-I error at alpha = 0.05 (exact nulls
#: of analysis.simulation with 3 (or 4) sites with their own embedding shifts, n = 120,
#: d = 4, prevalence 1/3, the fixed-penalty ridge probe fitted once per held-out site;
#: tests/calibration/test_loso_calibration.py, 300 binary + 150 continuous replications,
#: and a one-off sweep per metric, 150-300 replications).
LOSO_METHODS: dict[str, str] = {
    "delong": "paired DeLong on the held-out site's predictions (valid conditionally on the "
              "fit; measured type-I 5.4-5.6 % per site)",
    "bootstrap-site": "paired bootstrap of the site's patients stratified by class, "
                      "percentile CI, p = 2 min tail (conditional on the fit; measured "
                      "type-I 4.8-6.3 % per site)",
    "loso-z": "mean of per-site paired differences; z with se^2 = 2 sum v_s / K^2 (v_s: "
              "within-site paired-bootstrap variance; doubled because each site's patients "
              "also trained the other sites' probes) (default; measured type-I, K = 3: "
              "2.3-2.5 % AUC and BA together, pairs and family rows, binary and continuous; "
              "per metric AUC 3.3 %, BA 1.7 %; K = 4: AUC 4.5 %, BA 4.0 %; a planted "
              "equal-signal null 2.5 %/0.5 %; Harrell's/Uno's C 1.3-2.7 % (150): "
              "conservative, most for BA and the c-index)",
    "bootstrap": "site-stratified paired bootstrap of the mean per-site difference, "
                 "percentile CI, p = 2 min tail (ignores that sites train each other's "
                 "probes; measured type-I 10.5-15 %)",
    "worst-site": "primary per-site test of the selected site at level alpha/K, p x K "
                  "(Bonferroni over sites; measured type-I 2.5-3.8 %)",
    "worst-group": "site-stratified bootstrap percentile interval of each side's minimum "
                   "per-site metric (descriptive, no test)",
}


def check_loso_sites(sites: np.ndarray, labels: np.ndarray | None, *, task: str,
                     survival: bool = False) -> list[str]:
    """The held-out sites, after refusing designs LOSO cannot compare.

    Parameters
    ----------
    sites : ndarray of str, shape (n,)
    labels : ndarray of bool, shape (n,), optional
        Class of each patient, or the event indicator when ``survival``.
    task : str
    survival : bool
        ``labels`` are events: a site needs at least one (a c-index is undefined
        without), not both values.

    Raises
    ------
    FoldError
        Fewer than two sites, or a site whose patients are all positive or all negative
        (AUC and balanced accuracy are undefined at that held-out site), or a site
        without events (survival); the message names the site, its counts and what to do.
    """
    sites = np.asarray(sites).astype(str)
    names = sorted(set(sites.tolist()))
    if len(names) < 2:
        raise FoldError(f"task {task!r}, --protocol loso: leave-one-site-out needs at least "
                        f"2 sites, the task's patients come from {names or 'none'} only; "
                        "use --protocol cv")
    if labels is not None:
        labels = np.asarray(labels).astype(bool)
        bad, keep = [], []
        for site in names:
            in_site = labels[sites == site]
            one_class = not in_site.any() if survival else (in_site.all() or not in_site.any())
            if one_class:
                what = "events" if survival else "positive"
                bad.append(f"{site} ({in_site.size} patients, {int(in_site.sum())} {what})")
            else:
                keep.append(site)
        if bad:
            hint = (f" or leave it out with --site {','.join(keep)}" if len(keep) >= 2
                    else "")
            problem = ("without events" if survival else "with one class")
            undefined = ("a c-index is" if survival else "AUC and balanced accuracy are")
            raise FoldError(f"task {task!r}, --protocol loso: held-out site(s) {problem}: "
                            f"{'; '.join(bad)}. {undefined} undefined there; use "
                            f"--protocol cv{hint}.")
    return names


def loso_pooled_test(site_diffs: np.ndarray, site_variances: np.ndarray, *,
                     alpha: float = 0.05) -> tuple[float, float, float, float, float]:
    """The ``loso-z`` test of the mean of per-site differences.

    Parameters
    ----------
    site_diffs : ndarray, shape (K,)
        ``d_s``: A - B at each held-out site.
    site_variances : ndarray, shape (K,)
        ``v_s``: the within-site (paired-bootstrap) variance of ``d_s``.
    alpha : float

    Returns
    -------
    (mean, ci_low, ci_high, z, p)
        ``mean = sum d_s / K``, ``se = sqrt(2 sum v_s) / K``; two-sided normal p.
    """
    d = np.asarray(site_diffs, float)
    v = np.asarray(site_variances, float)
    mean = float(d.mean())
    se = float(np.sqrt(2.0 * v.sum()) / d.size)
    half = float(special.ndtri(1 - alpha / 2)) * se
    if not se > 0:
        z = 0.0 if mean == 0 else float(np.sign(mean) * np.inf)
    else:
        z = mean / se
    p = float(2 * special.ndtr(-abs(z)))
    return mean, mean - half, mean + half, z, min(1.0, p)


def _clip(low: float, high: float, bounds, diff: bool = False) -> tuple[float, float]:
    if bounds is None:
        return low, high
    lo, hi = (bounds[0] - bounds[1], bounds[1] - bounds[0]) if diff else bounds
    return float(np.clip(low, lo, hi)), float(np.clip(high, lo, hi))


@dataclass(frozen=True, eq=False)
class _SiteDraws:
    """One side's metric at every held-out site: point (K,) and bootstrap draws (K, B)."""

    point: np.ndarray
    boot: np.ndarray

    @staticmethod
    def mean(draws: Sequence[_SiteDraws]) -> _SiteDraws:
        return _SiteDraws(np.mean([d.point for d in draws], axis=0),
                          np.mean([d.boot for d in draws], axis=0))


@dataclass(frozen=True, eq=False)
class LosoPair:
    """Side A vs side B on one metric under LOSO: every row (site, test) of the pair.

    Attributes
    ----------
    metric, backbone_a, backbone_b : str
    pooled : bool
        A family row (member means).
    members : tuple of (str, str)
    rows : tuple of (site, held_out, Inference, primary, scope)
        ``scope`` is 'site', 'pooled', 'worst-site' or 'worst-group'.
    n, n_pos : dict site -> int
    site_points_a, site_points_b : ndarray, shape (K,)
    sites : tuple of str
    higher_is_better : bool
    rare_count : dict site -> int
    """

    metric: str
    backbone_a: str
    backbone_b: str
    pooled: bool
    members: tuple[tuple[str, str], ...]
    rows: tuple[tuple[str, str, Inference, bool, str], ...]
    n: dict
    n_pos: dict
    site_points_a: np.ndarray
    site_points_b: np.ndarray
    sites: tuple[str, ...]
    higher_is_better: bool
    rare_count: dict = field(default_factory=dict)

    def row(self, site: str, test: str | None = None) -> Inference | None:
        """The inference of ``site`` ('all', 'worst' or a site name): ``test``, or primary."""
        for s, _, inf, primary, _ in self.rows:
            if s == site and (inf.test == test if test else primary):
                return inf
        return None

    def worst_site(self) -> str:
        """The held-out site where ``A - B`` is least favourable to A."""
        return next(h for s, h, inf, _, scope in self.rows if scope == "worst-site")


def _warning(count: int) -> str:
    return rare_endpoint_warning(count, where=" at this held-out site",
                                 consequence="its estimates are noisy and intervals wide")


@dataclass(frozen=True, eq=False)
class LosoComparison:
    """All pairs and metrics of a LOSO comparison on one task.

    ``to_frame`` has the columns of :attr:`ComparisonResult.COLUMNS` plus ``held_out``;
    ``summary_frame`` has the columns the CLI shows for a CV comparison.
    """

    task: str
    side_a: str
    side_b: str
    pairs: tuple[LosoPair, ...]
    sites: tuple[str, ...]
    primary_test: str = LOSO_DEFAULT_TEST
    params: dict = field(default_factory=dict)

    COLUMNS = ComparisonResult.COLUMNS + ("held_out",)

    def _estimand(self, pair: LosoPair, scope: str, site: str, held_out: str) -> str:
        key = "pooled" if scope == "pooled" else scope
        return LOSO_ESTIMANDS[key].format(metric=pair.metric, site=held_out if scope in (
            "worst-site", "worst-group") else site, k=len(self.sites), k1=len(self.sites) - 1)

    def _method(self, pair: LosoPair, scope: str, inf: Inference) -> str:
        if scope == "site":
            key = "delong" if inf.test == "delong" else "bootstrap-site"
        elif scope == "pooled":
            key = inf.test
        else:
            key = scope
        method = LOSO_METHODS[key]
        if pair.pooled:
            method += f"; pooled over {len(pair.members)} pairs (member means)"
        return method

    def to_frame(self) -> pd.DataFrame:
        """Long ``tests`` table: one row per pair x metric x (held-out site, test)."""
        level = 1.0 - float(self.params.get("alpha", 0.05))
        k = len(self.sites)
        out = []
        for pair in self.pairs:
            total_n = int(sum(pair.n.values()))
            total_pos = int(sum(pair.n_pos.values()))
            for site, held_out, inf, primary, scope in pair.rows:
                per_site = scope in ("site", "worst-site")
                n = pair.n[held_out] if per_site else total_n
                n_pos = pair.n_pos[held_out] if per_site else total_pos
                rare = pair.rare_count.get(held_out, -1) if per_site else \
                    min(pair.rare_count.values())
                warning = _warning(rare)
                row_level = 1.0 - (1.0 - level) / k if scope == "worst-site" else level
                out.append({
                    "task": self.task, "metric": pair.metric, "site": site,
                    "backbone_a": pair.backbone_a, "backbone_b": pair.backbone_b,
                    "pooled": pair.pooled, "test": inf.test, "primary": primary,
                    "estimand": self._estimand(pair, scope, site, held_out),
                    "method": self._method(pair, scope, inf), "level": row_level,
                    "estimate_a": inf.estimate_a, "ci_low_a": inf.ci_low_a,
                    "ci_high_a": inf.ci_high_a, "estimate_b": inf.estimate_b,
                    "ci_low_b": inf.ci_low_b, "ci_high_b": inf.ci_high_b,
                    "diff": inf.diff, "diff_ci_low": inf.diff_ci_low,
                    "diff_ci_high": inf.diff_ci_high, "diff_bca_low": inf.diff_bca_low,
                    "diff_bca_high": inf.diff_bca_high, "statistic": inf.statistic,
                    "df": inf.df, "p_value": inf.p_value, "p_holm": inf.p_value,
                    "p_bh": inf.p_value, "n": n, "n_pos": n_pos,
                    "n_train": float(total_n - n) if per_site else float("nan"),
                    "rare": bool(warning), "warning": warning, "held_out": held_out,
                })
        frame = pd.DataFrame(out, columns=list(self.COLUMNS))
        taus = self.params.get("taus")
        if taus:  # survival: Uno's truncation time of each held-out site
            frame["tau"] = [taus.get(h, np.nan) if m == "uno_c" and s not in ("all", "worst")
                            else np.nan for m, s, h in zip(frame["metric"], frame["site"],
                                                           frame["held_out"])]
        return frame

    def summary_frame(self) -> pd.DataFrame:
        """One row per pair x metric x site ('all', each held-out site, 'worst'): the
        primary test's estimates, intervals and p (worst-group rows are descriptive)."""
        rows = []
        for pair in self.pairs:
            for site, held_out, inf, primary, scope in pair.rows:
                if not primary and scope != "worst-group":
                    continue
                label = site if scope in ("site", "pooled") else f"{scope} ({held_out})"
                rows.append({
                    "metric": pair.metric, "site": label, "a": pair.backbone_a,
                    "b": pair.backbone_b, "estimate_a": inf.estimate_a,
                    "ci_a": f"{inf.ci_low_a:.3f}-{inf.ci_high_a:.3f}",
                    "estimate_b": inf.estimate_b,
                    "ci_b": f"{inf.ci_low_b:.3f}-{inf.ci_high_b:.3f}",
                    "diff": inf.diff,
                    "diff_ci": f"{inf.diff_ci_low:+.3f} to {inf.diff_ci_high:+.3f}",
                    "test": inf.test, "p": inf.p_value, "p_corrected_t": float("nan"),
                    "p_delong": float("nan"),
                    "estimand": LOSO_ESTIMANDS[scope].format(
                        metric="metric", site="s" if scope == "site" else "see site",
                        k=len(self.sites), k1=len(self.sites) - 1),
                    "warning": _warning(min(pair.rare_count.values())),
                })
        order = {"all": 0}
        frame = pd.DataFrame(rows)
        if not frame.empty:
            frame["_o"] = [order.get(s, 2 if s.startswith("worst") else 1)
                           for s in frame["site"]]
            frame = frame.sort_values(["metric", "a", "_o"], kind="stable").drop(columns="_o")
        return frame.reset_index(drop=True)

    def summary(self) -> str:
        """Readable lines: pooled and worst-site rows per pair x metric."""
        lines = [f"{self.side_a} vs {self.side_b} on {self.task} (leave-one-site-out, "
                 f"{len(self.sites)} sites):"]
        for pair in self.pairs:
            for site in ("all", "worst"):
                inf = pair.row(site)
                where = "pooled" if site == "all" else f"worst site {pair.worst_site()}"
                lines.append(f"  {pair.metric:<6} {pair.backbone_a} {inf.estimate_a:.3f} vs "
                             f"{pair.backbone_b} {inf.estimate_b:.3f} ({where}): diff "
                             f"{inf.diff:+.3f} [{inf.diff_ci_low:+.3f}, "
                             f"{inf.diff_ci_high:+.3f}], {inf.test} p={inf.p_value:.3g}")
        return "\n".join(lines)


def _site_bootstrap_inference(test: str, a: _SiteDraws, b: _SiteDraws, s: int,
                              alpha: float) -> Inference:
    da, db = a.boot[s], b.boot[s]
    la, ha = percentile_interval(da, alpha)
    lb, hb = percentile_interval(db, alpha)
    ld, hd = percentile_interval(da - db, alpha)
    nan = float("nan")
    return Inference(test, float(a.point[s]), float(la), float(ha), float(b.point[s]),
                     float(lb), float(hb), float(a.point[s] - b.point[s]), float(ld), float(hd),
                     nan, bootstrap_p_value(da - db))


def _pair_rows(metric: str, a: _SiteDraws, b: _SiteDraws, sites: Sequence[str], *,
               delongs: Sequence[Inference] | None, higher_is_better: bool, alpha: float,
               test: str) -> tuple[tuple[str, str, Inference, bool, str], ...]:
    k = len(sites)
    bounds = METRIC_BOUNDS.get(metric)
    nan = float("nan")
    use_delong = delongs is not None and test != "bootstrap"
    rows = []
    site_primary: list[Inference] = []
    for s, site in enumerate(sites):
        boot_inf = _site_bootstrap_inference("bootstrap", a, b, s, alpha)
        if delongs is not None:
            rows.append((site, site, delongs[s], use_delong, "site"))
        rows.append((site, site, boot_inf, not use_delong, "site"))
        site_primary.append(delongs[s] if use_delong else boot_inf)
    # pooled over sites
    diffs = a.point - b.point
    boot_diff = a.boot - b.boot  # (K, B): independent resamples per site
    v = np.var(boot_diff, axis=1, ddof=1)
    mean, lo, hi, z, p = loso_pooled_test(diffs, v, alpha=alpha)
    za = float(special.ndtri(1 - alpha / 2))
    side = []
    for d in (a, b):
        est = float(d.point.mean())
        half = za * float(np.sqrt(2.0 * np.var(d.boot, axis=1, ddof=1).sum()) / k)
        side.extend([est, *_clip(est - half, est + half, bounds)])
    lo, hi = _clip(lo, hi, bounds, diff=True)
    rows.append(("all", "all", Inference(LOSO_DEFAULT_TEST, *side, mean, lo, hi, z, p),
                 test != "bootstrap", "pooled"))
    mean_a, mean_b = a.boot.mean(axis=0), b.boot.mean(axis=0)
    la, ha = percentile_interval(mean_a, alpha)
    lb, hb = percentile_interval(mean_b, alpha)
    ld, hd = percentile_interval(mean_a - mean_b, alpha)
    rows.append(("all", "all", Inference(
        "bootstrap", float(a.point.mean()), float(la), float(ha), float(b.point.mean()),
        float(lb), float(hb), mean, float(ld), float(hd), nan,
        bootstrap_p_value(mean_a - mean_b)), test == "bootstrap", "pooled"))
    # worst site: the site where A - B is least favourable to A
    oriented = diffs if higher_is_better else -diffs
    w = int(np.argmin(oriented))
    chosen = site_primary[w]
    worst = _worst_site_inference(chosen, a, b, w, alpha, bounds, k)
    rows.append(("worst", sites[w], worst, True, "worst-site"))
    # worst group: each side's minimum (maximum for lower-is-better) per-site metric
    pick = np.argmin if higher_is_better else np.argmax
    wa, wb = int(pick(a.point)), int(pick(b.point))
    ext = np.min if higher_is_better else np.max
    ga, gb = ext(a.boot, axis=0), ext(b.boot, axis=0)
    la, ha = percentile_interval(ga, alpha)
    lb, hb = percentile_interval(gb, alpha)
    ld, hd = percentile_interval(ga - gb, alpha)
    rows.append(("worst", f"{sites[wa]}|{sites[wb]}", Inference(
        "worst-group", float(a.point[wa]), float(la), float(ha), float(b.point[wb]),
        float(lb), float(hb), float(a.point[wa] - b.point[wb]), float(ld), float(hd), nan,
        nan), False, "worst-group"))
    return tuple(rows)


def _worst_site_inference(chosen: Inference, a: _SiteDraws, b: _SiteDraws, s: int,
                          alpha: float, bounds, k: int) -> Inference:
    """The selected site's primary test at level 1 - alpha/K, p x K."""
    alpha_k = alpha / k
    if chosen.test == "delong":
        # DeLong intervals are symmetric normal: rescale the half-widths to alpha/K
        scale = float(special.ndtri(1 - alpha_k / 2) / special.ndtri(1 - alpha / 2))

        def widen(est, lo, hi, diff=False):
            return _clip(est - (est - lo) * scale, est + (hi - est) * scale, bounds, diff)

        la, ha = widen(chosen.estimate_a, chosen.ci_low_a, chosen.ci_high_a)
        lb, hb = widen(chosen.estimate_b, chosen.ci_low_b, chosen.ci_high_b)
        ld, hd = widen(chosen.diff, chosen.diff_ci_low, chosen.diff_ci_high, diff=True)
        inf = Inference("worst-site", chosen.estimate_a, la, ha, chosen.estimate_b, lb, hb,
                        chosen.diff, ld, hd, chosen.statistic, chosen.p_value)
    else:
        inf = _site_bootstrap_inference("worst-site", a, b, s, alpha_k)
    return Inference(inf.test, inf.estimate_a, inf.ci_low_a, inf.ci_high_a, inf.estimate_b,
                     inf.ci_low_b, inf.ci_high_b, inf.diff, inf.diff_ci_low, inf.diff_ci_high,
                     inf.statistic, float(min(1.0, k * chosen.p_value)))


def compare_loso_scores(scorers: Sequence[Scorer], targets: Mapping[str, Any] | Any,
                        labels: np.ndarray, scores: Mapping[str, np.ndarray],
                        pairs: Sequence[tuple[str, str]], sites: np.ndarray, *, task: str,
                        n_boot: int = 2000, seed: int = 0, test: str = LOSO_DEFAULT_TEST,
                        alpha: float = 0.05, side_a: str = "", side_b: str = "",
                        kind: str | None = None) -> LosoComparison:
    """Paired LOSO comparison of held-out-site predictions.

    Parameters
    ----------
    scorers : sequence of Scorer
    targets : mapping scorer name -> target, or one target for all scorers
    labels : ndarray of bool, shape (n,)
        Class of each patient: bootstrap strata within each site.
    scores : mapping backbone -> ndarray (n,) or (1, n)
        Prediction of each patient by the probe trained on the other sites (one LOSO
        fit per site), same patients and order for every backbone.
    pairs : sequence of (backbone_a, backbone_b)
    sites : ndarray of str, shape (n,)
        The held-out site of each patient (= its fold).
    task : str
        Part of the bootstrap seed (identical resamples for every backbone).
    n_boot, seed, alpha : bootstrap settings.
    test : str
        One of :data:`LOSO_TESTS`: the default ('calibrated-t' or 'loso-z': DeLong/
        bootstrap per site, ``loso-z`` pooled), 'delong' (the same) or 'bootstrap'
        (every bootstrap row primary).
    side_a, side_b : str
        Names on the family rows.
    kind : str, optional
        Recorded in ``params``.

    Returns
    -------
    LosoComparison

    Raises
    ------
    FoldError
        Fewer than two sites or a one-class site (:func:`check_loso_sites`).
    ValueError
        A test that does not apply to LOSO, or misaligned scores.
    """
    if test not in LOSO_TESTS:
        raise ValueError(f"--test {test} applies to repeated cross-validation; with "
                         f"--protocol loso use {', '.join(LOSO_TESTS)} (per site: DeLong for "
                         "AUC, paired bootstrap otherwise; pooled: loso-z)")
    labels = np.asarray(labels).astype(bool)
    sites = np.asarray(sites).astype(str)
    names = check_loso_sites(sites, labels, task=task, survival=kind == "survival")
    n = labels.size
    flat = {}
    for name, s in scores.items():
        s = np.atleast_2d(np.asarray(s, float))
        if s.shape != (1, n):
            raise ValueError(f"LOSO scores of {name!r} have shape {s.shape}; expected (1, {n}) "
                             "(one held-out prediction per patient)")
        if not np.isfinite(s).all():
            raise ValueError(f"LOSO scores of {name!r} are missing for "
                             f"{int((~np.isfinite(s)).sum())} patient(s)")
        flat[name] = s
    rows_of = [np.flatnonzero(sites == site) for site in names]
    index_of = [rows[stratified_bootstrap_indices(labels[rows], n_boot,
                                                  derive_seed("bootstrap", task, seed, "loso",
                                                              site))]
                for site, rows in zip(names, rows_of)]
    counts = {site: int(rows.size) for site, rows in zip(names, rows_of)}
    positives = {site: int(labels[rows].sum()) for site, rows in zip(names, rows_of)}
    rare = {site: (positives[site] if kind == "survival" else
                   int(min(positives[site], counts[site] - positives[site]))) for site in names}
    members = sorted({x for pair in pairs for x in pair})
    results: list[LosoPair] = []
    for scorer in scorers:
        target = targets.get(scorer.name) if isinstance(targets, Mapping) else targets
        draws = {}
        for name in members:
            point = np.array([scorer(target, flat[name], rows[None])[0, 0] for rows in rows_of])
            boot = np.stack([score_resamples(scorer, target, flat[name], idx)[:, 0]
                             for idx in index_of])
            draws[name] = _SiteDraws(point, boot)
        common = dict(higher_is_better=scorer.higher_is_better, alpha=alpha, test=test)
        for a, b in pairs:
            delongs = None
            if scorer.name == "auc":
                y = np.asarray(target, bool)
                delongs = [delong_inference(y[rows], flat[a][0, rows], flat[b][0, rows], alpha)
                           for rows in rows_of]
            results.append(LosoPair(scorer.name, a, b, False, ((a, b),),
                                    _pair_rows(scorer.name, draws[a], draws[b], names,
                                               delongs=delongs, **common),
                                    counts, positives, draws[a].point, draws[b].point,
                                    tuple(names), scorer.higher_is_better, rare))
        if len(pairs) > 1:
            pa = _SiteDraws.mean([draws[a] for a, _ in pairs])
            pb = _SiteDraws.mean([draws[b] for _, b in pairs])
            results.append(LosoPair(scorer.name, side_a or "A", side_b or "B", True,
                                    tuple(pairs), _pair_rows(scorer.name, pa, pb, names,
                                                             delongs=None, **common),
                                    counts, positives, pa.point, pb.point, tuple(names),
                                    scorer.higher_is_better, rare))
    params = {"n_boot": n_boot, "seed": seed, "alpha": alpha, "test": test, "kind": kind,
              "protocol": "loso", "sites": list(names), "pairs": [list(p) for p in pairs]}
    return LosoComparison(task, side_a or "A", side_b or "B", tuple(results), tuple(names),
                          test, params)


def compare_survival_loso(embeddings: Mapping[str, np.ndarray], time: np.ndarray,
                          event: np.ndarray, *, patient_ids: np.ndarray,
                          pairs: Sequence[tuple[str, str]], sites: np.ndarray,
                          task: str = "os", model: str = "coxnet",
                          model_params: dict | None = None, n_boot: int = 1000, seed: int = 0,
                          test: str = LOSO_DEFAULT_TEST, side_a: str = "", side_b: str = "",
                          on_split=None) -> LosoComparison:
    """LOSO comparison of survival models: Harrell's and Uno's C at each held-out site.

    Every backbone's Cox model is fitted once per held-out site on the other sites (the
    same plan for every backbone); the per-site rows bootstrap the site's patients
    stratified by event, Uno's censoring distribution and truncation time ``tau`` are
    the held-out site's own (``tau`` column), and the pooled and worst rows are those of
    :func:`compare_loso_scores`.

    Raises
    ------
    FoldError
        Fewer than two sites, or a site without events (named).
    """
    from neurofeat.analysis.survival.compare import HARRELL, UNO
    from neurofeat.analysis.survival.cox import make_cox_model
    from neurofeat.analysis.survival.protocol import (
        cross_validated_risk,
        survival_fold_plan,
    )
    from neurofeat.analysis.survival.validation import check_survival_data

    time, event = check_survival_data(time, event, patient_ids=patient_ids)
    sites = np.asarray(sites).astype(str)
    names = check_loso_sites(sites, event, task=task, survival=True)
    if test not in LOSO_TESTS:
        raise ValueError(f"--test {test} applies to repeated cross-validation; with "
                         f"--protocol loso use {', '.join(LOSO_TESTS)}")
    plan = survival_fold_plan(np.asarray(patient_ids).astype(str), event, sites,
                              protocol="loso", task=task, seed=seed)
    estimator = make_cox_model(model, **(model_params or {}))
    members = sorted({x for pair in pairs for x in pair})
    risk = {name: cross_validated_risk(embeddings[name], time, event, plan, model=estimator,
                                       model_name=model, sites=sites, backbone=name,
                                       progress=on_split).risk for name in members}
    targets, taus = loso_survival_targets(time, event, sites)
    result = compare_loso_scores([HARRELL, UNO], targets, event, risk, pairs, sites,
                                 task=task, n_boot=n_boot, seed=seed, test=test,
                                 side_a=side_a, side_b=side_b, kind="survival")
    n_train = float(np.mean([(sites != s).sum() for s in names]))
    result.params.update({"model": model, "model_params": model_params or {}, "taus": taus,
                          "n_train": n_train})
    return result


def loso_survival_targets(time: np.ndarray, event: np.ndarray, sites: np.ndarray
                          ) -> tuple[dict[str, Any], dict[str, float]]:
    """Targets of Harrell's and Uno's C for per-site LOSO scoring, and each site's tau.

    Uno's weight of each patient comes from its own site's Kaplan-Meier censoring
    distribution, truncated at its site's ``tau``: every index set the LOSO engine
    scores lies inside one site, so one combined weight vector equals per-site targets.

    Returns
    -------
    targets : dict {'harrell_c': SurvivalTarget, 'uno_c': SurvivalTarget}
    taus : dict site -> float
    """
    from neurofeat.analysis.survival.compare import survival_target

    sites = np.asarray(sites).astype(str)
    harrell = survival_target(time, event)
    weight = np.zeros(harrell.time.size)
    taus = {}
    for site in sorted(set(sites.tolist())):
        rows = np.flatnonzero(sites == site)
        site_target = survival_target(time, event, rows=rows)
        weight[rows] = site_target.uno_weight[rows]
        taus[site] = float(site_target.tau)
    uno = dataclasses.replace(harrell, uno_weight=weight, tau=float("nan"))
    return {"harrell_c": harrell, "uno_c": uno}, taus
