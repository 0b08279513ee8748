"""Site invariance of an embedding: PCA-silhouette, Davies-Bouldin, a site-classifier probe.

An encoder that "knows" which scanner an image came from is a shortcut waiting to
happen. Three measures of how well the embeddings separate the sites (or any other
grouping, e.g. cohorts), all computed on the same principal components of the
standardised embeddings (:func:`principal_components`):

- **PCA-silhouette** (NeuroRAD-FM): the mean silhouette width of the sites in the
  first ``n_components`` principal components (Euclidean). 1 = sites form tight,
  separate clusters; 0 = overlapping; < 0 = mixed. **Lower reads as better.**
- **Davies-Bouldin index** (BrainIAC) in the same space: mean over sites of the worst
  ratio (within-site scatter of two sites) / (distance between their centroids).
  Small = well separated. **Higher reads as better** (sites overlap).
- **Site-classifier probe**: the project's :class:`~neurofeat.analysis.probes.LinearProbe`
  (class-balanced L2 logistic, C by inner CV), one-vs-rest over the sites and the
  most probable site predicted, on the first ``probe_components`` principal
  components, evaluated by stratified k-fold (fold plan from
  :func:`~neurofeat.analysis.folds.stratified_kfold_plan`, strata = site).
  Balanced accuracy (mean per-site recall) against chance ``1/k``, with the
  Nadeau-Bengio corrected interval over the test folds (the calibrated
  ``corrected-t-kdf`` interval of the probe reports) and a stratified-bootstrap
  percentile interval of the pooled out-of-fold accuracy. **Closer to chance reads as
  better.**

The principal components are computed once on all patients (no label enters them),
so the probe's folds share one basis; the probe standardises within each fold.

Scatter coordinates for the figures: the first two principal components, and t-SNE
(:class:`sklearn.manifold.TSNE`, Barnes-Hut, PCA initialisation) of the first 50
principal components.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> sites = np.repeat(["A", "B", "C"], 30)
>>> X = rng.normal(size=(90, 20)) + 2.0 * (sites == "A")[:, None]
>>> result = site_invariance(X, sites, n_boot=100, tsne=False)
>>> result.silhouette > 0.1, result.probe.balanced_accuracy > 1 / 3
(True, True)

References
----------
.. [1] Rousseeuw PJ. Silhouettes. J Comput Appl Math 1987;20:53-65.
.. [2] Davies DL, Bouldin DW. A cluster separation measure. IEEE TPAMI 1979;1:224-227.
.. [3] Nadeau C, Bengio Y. Inference for the generalization error. Mach Learn 2003;52:239-281.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from neurofeat.analysis.bootstrap import percentile_interval, stratified_bootstrap_indices
from neurofeat.analysis.folds import FoldPlan, derive_seed, stratified_kfold_plan
from neurofeat.analysis.paired_tests import corrected_resampled_interval
from neurofeat.analysis.probes import standardise

__all__ = [
    "DEFAULT_COMPONENTS",
    "PROBE_COMPONENTS",
    "TSNE_COMPONENTS",
    "BETTER",
    "SITE_PROBE_CI",
    "principal_components",
    "site_separability",
    "SiteProbeResult",
    "site_probe",
    "balanced_accuracy_multiclass",
    "embedding_coordinates",
    "InvarianceResult",
    "site_invariance",
]

#: Principal components in which silhouette and Davies-Bouldin are computed.
DEFAULT_COMPONENTS: int = 10
#: Principal components the site-classifier probe sees.
PROBE_COMPONENTS: int = 50
#: Principal components t-SNE starts from.
TSNE_COMPONENTS: int = 50

#: Interval of the site probe's accuracy: Nadeau-Bengio corrected t on k - 1 df (the
#: per-metric calibration of issue 9 was measured for binary AUC/BA, not for a k-site
#: balanced accuracy; k - 1 df is the conservative choice there).
SITE_PROBE_CI: str = "corrected-t-kdf"

#: Which direction reads as *more site-invariant* for each measure.
BETTER: dict[str, str] = {
    "silhouette": "lower",
    "davies_bouldin": "higher",
    "site_probe_ba": "lower (towards chance)",
}


def principal_components(X: np.ndarray, n_components: int, *, seed: int = 0
                         ) -> tuple[np.ndarray, np.ndarray]:
    """Scores on the leading principal components of the column-standardised ``X``.

    Parameters
    ----------
    X : ndarray, shape (n_patients, n_dims)
    n_components : int
        Requested number; capped at ``min(n_patients - 1, n_dims)``.
    seed : int
        Seed of the randomized SVD (used when it is faster than the full one).

    Returns
    -------
    scores : ndarray, shape (n_patients, m)
    explained_variance_ratio : ndarray, shape (m,)
    """
    from sklearn.decomposition import PCA

    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] < 3:
        raise ValueError(f"need an (n, d) matrix with n >= 3 patients, got shape {X.shape}")
    mean, scale = standardise(X)
    Z = (X - mean) / scale
    m = int(max(1, min(n_components, X.shape[0] - 1, X.shape[1])))
    solver = "randomized" if m < 0.5 * min(X.shape) and min(X.shape) > 200 else "full"
    pca = PCA(n_components=m, svd_solver=solver, random_state=seed)
    scores = pca.fit_transform(Z)
    return scores, pca.explained_variance_ratio_


def _check_groups(groups: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    groups = np.asarray(groups).astype(str)
    if groups.shape != (n,):
        raise ValueError(f"groups has shape {groups.shape}; expected ({n},), one per patient")
    names, codes = np.unique(groups, return_inverse=True)
    if names.size < 2:
        raise ValueError(f"site invariance needs at least 2 groups; every patient is in "
                         f"'{names[0] if names.size else '?'}'")
    return names, codes


def site_separability(scores: np.ndarray, groups: np.ndarray) -> tuple[float, float]:
    """Silhouette and Davies-Bouldin index of ``groups`` in the space of ``scores``.

    Parameters
    ----------
    scores : ndarray, shape (n_patients, m)
        Principal-component scores (see :func:`principal_components`).
    groups : ndarray of str, shape (n_patients,)

    Returns
    -------
    silhouette, davies_bouldin : float
        As :func:`sklearn.metrics.silhouette_score` (Euclidean) and
        :func:`sklearn.metrics.davies_bouldin_score`.
    """
    from sklearn.metrics import davies_bouldin_score, silhouette_score

    _, codes = _check_groups(groups, scores.shape[0])
    return float(silhouette_score(scores, codes)), float(davies_bouldin_score(scores, codes))


def balanced_accuracy_multiclass(codes: np.ndarray, predicted: np.ndarray, n_classes: int,
                                 index: np.ndarray | None = None) -> np.ndarray:
    """Balanced accuracy (mean per-class recall) of each row of ``index``.

    Parameters
    ----------
    codes, predicted : ndarray of int, shape (n,)
        True and predicted class codes in ``0..n_classes-1``.
    n_classes : int
    index : ndarray of int, shape (B, m), optional
        Resamples (default: one set, every row).

    Returns
    -------
    ndarray, shape (B,)
        Classes absent from a resample are left out of its mean.
    """
    codes = np.asarray(codes, np.int64)
    predicted = np.asarray(predicted, np.int64)
    if index is None:
        index = np.arange(codes.size)[None]
    rows = np.arange(index.shape[0])[:, None]
    c = codes[index]
    hit = (predicted[index] == c).astype(np.float64)
    flat = (rows * n_classes + c).reshape(-1)
    total = np.bincount(flat, minlength=index.shape[0] * n_classes).reshape(-1, n_classes)
    correct = np.bincount(flat, weights=hit.reshape(-1),
                          minlength=index.shape[0] * n_classes).reshape(-1, n_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(total > 0, correct / np.maximum(total, 1), np.nan)
    return np.nanmean(recall, axis=1)


@dataclass(frozen=True, eq=False)
class SiteProbeResult:
    """How well a linear probe tells the sites apart.

    Attributes
    ----------
    balanced_accuracy : float
        Mean over test folds of the per-fold balanced accuracy (estimand: expected
        balanced accuracy of the probe trained on ``n_train`` patients).
    ci_low, ci_high : float
        Nadeau-Bengio corrected interval (``corrected-t-kdf``) at ``level``.
    pooled_balanced_accuracy : float
        Balanced accuracy of all out-of-fold predictions, averaged over repeats.
    boot_low, boot_high : float
        Stratified-bootstrap percentile interval of the pooled accuracy (predictions
        held fixed; narrower than it should be, as for the published probes).
    chance : float
        ``1 / n_sites``.
    n_sites, n, n_components : int
    level : float
    fold_values : ndarray, shape (n_repeats, n_splits)
    predicted : ndarray of str, shape (n_repeats, n)
        Out-of-fold predicted site of every patient in every repeat.
    confusion : DataFrame
        True site (rows) x predicted site (columns), counts over repeats.
    n_train, n_test : float
        Mean training and test fold sizes.
    """

    balanced_accuracy: float
    ci_low: float
    ci_high: float
    pooled_balanced_accuracy: float
    boot_low: float
    boot_high: float
    chance: float
    n_sites: int
    n: int
    n_components: int
    level: float
    fold_values: np.ndarray
    predicted: np.ndarray
    confusion: pd.DataFrame
    n_train: float
    n_test: float

    def summary(self) -> str:
        """One line: balanced accuracy, its interval and chance."""
        pct = int(round(100 * self.level))
        return (f"site probe balanced accuracy {self.balanced_accuracy:.3f} "
                f"[{self.ci_low:.3f}, {self.ci_high:.3f}] ({pct}% corrected-t) vs chance "
                f"{self.chance:.3f} ({self.n_sites} sites, n={self.n}, "
                f"{self.n_components} PCs)")

    def to_frame(self) -> pd.DataFrame:
        """Two rows: corrected-t interval (primary) and bootstrap percentile interval."""
        return pd.DataFrame([
            {"metric": "site_probe_ba", "estimate": self.balanced_accuracy, "ci_low": self.ci_low,
             "ci_high": self.ci_high, "ci_method": SITE_PROBE_CI, "chance": self.chance},
            {"metric": "site_probe_ba", "estimate": self.pooled_balanced_accuracy,
             "ci_low": self.boot_low, "ci_high": self.boot_high, "ci_method": "percentile",
             "chance": self.chance},
        ])


def site_probe(scores: np.ndarray, groups: np.ndarray, patient_ids: np.ndarray | None = None,
               *, n_splits: int = 5, n_repeats: int = 1, seed: int = 0, n_boot: int = 2000,
               level: float = 0.95, plan_name: str = "site",
               on_split: Callable[[], None] | None = None) -> SiteProbeResult:
    """Cross-validated site-classifier probe (one-vs-rest :class:`LinearProbe`).

    Parameters
    ----------
    scores : ndarray, shape (n_patients, m)
        Features the probe sees (principal-component scores).
    groups : ndarray of str, shape (n_patients,)
        Site (or cohort) of each patient.
    patient_ids : ndarray of str, shape (n_patients,), optional
        Fold assignment derives from them, ``plan_name`` and ``seed`` (default: row
        numbers).
    n_splits, n_repeats, seed : fold plan.
    n_boot : int
        Stratified (by site) bootstrap resamples of the pooled accuracy.
    level : float
        Interval level.
    on_split : callable, optional
        Called after each fold (progress).

    Returns
    -------
    SiteProbeResult

    Raises
    ------
    FoldError
        A site has fewer patients than folds.
    """
    from neurofeat.analysis.probes import LinearProbe

    scores = np.asarray(scores, dtype=np.float64)
    n = scores.shape[0]
    names, codes = _check_groups(groups, n)
    k = names.size
    ids = (np.array([f"row{i:07d}" for i in range(n)]) if patient_ids is None
           else np.asarray(patient_ids).astype(str))
    plan: FoldPlan = stratified_kfold_plan(ids, codes, n_splits=n_splits, n_repeats=n_repeats,
                                           task=plan_name, seed=seed)
    predicted = np.full((plan.n_repeats, n), -1, np.int64)
    fold_values = np.full((plan.n_repeats, plan.n_folds), np.nan)
    sizes = []
    for split in plan.splits():
        train, test = split.train, split.test
        proba = np.zeros((test.size, k))
        for c in range(k):
            target = codes[train] == c
            if target.all() or not target.any():
                proba[:, c] = float(target.all())
                continue
            probe = LinearProbe(random_state=seed).fit(scores[train], target)
            proba[:, c] = probe.predict_proba(scores[test])[:, 1]
        predicted[split.repeat, test] = proba.argmax(axis=1)
        fold_values[split.repeat, split.fold] = balanced_accuracy_multiclass(
            codes[test], predicted[split.repeat, test], k)[0]
        sizes.append((train.size, test.size))
        if on_split is not None:
            on_split()
    n_train = float(np.mean([s[0] for s in sizes]))
    n_test = float(np.mean([s[1] for s in sizes]))
    cal = corrected_resampled_interval(fold_values, n_train=n_train, n_test=n_test, level=level,
                                       df="k", n_folds=plan.n_folds)
    boot_index = stratified_bootstrap_indices(codes, n_boot, derive_seed("bootstrap", plan_name,
                                                                          seed, "all"))
    pooled, boots = [], []
    for r in range(plan.n_repeats):
        pooled.append(balanced_accuracy_multiclass(codes, predicted[r], k)[0])
        boots.append(balanced_accuracy_multiclass(codes, predicted[r], k, boot_index))
    boot = np.mean(boots, axis=0)
    low, high = percentile_interval(boot[:, None], 1 - level)
    confusion = pd.crosstab(pd.Categorical(names[np.tile(codes, plan.n_repeats)], names),
                            pd.Categorical(names[predicted.reshape(-1)], names),
                            rownames=["site"], colnames=["predicted"], dropna=False)
    return SiteProbeResult(
        balanced_accuracy=float(cal.estimate), ci_low=float(cal.ci_low), ci_high=float(cal.ci_high),
        pooled_balanced_accuracy=float(np.mean(pooled)), boot_low=float(np.ravel(low)[0]),
        boot_high=float(np.ravel(high)[0]), chance=1.0 / k, n_sites=int(k), n=int(n),
        n_components=int(scores.shape[1]), level=float(level), fold_values=fold_values,
        predicted=names[predicted], confusion=confusion, n_train=n_train, n_test=n_test)


def embedding_coordinates(scores: np.ndarray, method: str = "pca", *, seed: int = 0,
                          perplexity: float = 30.0, max_iter: int = 500) -> np.ndarray:
    """2-D coordinates for a scatter plot.

    Parameters
    ----------
    scores : ndarray, shape (n_patients, m)
        Principal-component scores (columns in decreasing variance).
    method : {'pca', 'tsne'}
        ``'pca'``: the first two components. ``'tsne'``: :class:`sklearn.manifold.TSNE`
        (Barnes-Hut, PCA initialisation, learning rate 'auto', one OpenMP thread) of
        the first :data:`TSNE_COMPONENTS` components; perplexity capped at
        ``(n - 1) / 3``.
    seed : int
    perplexity : float
    max_iter : int
        t-SNE iterations (at least 250, sklearn's early-exaggeration phase).

    Returns
    -------
    ndarray, shape (n_patients, 2)
    """
    scores = np.asarray(scores, dtype=np.float64)
    if method == "pca":
        if scores.shape[1] >= 2:
            return scores[:, :2].copy()
        return np.column_stack([scores[:, 0], np.zeros(scores.shape[0])])
    if method == "tsne":
        from sklearn.manifold import TSNE

        n = scores.shape[0]
        tsne = TSNE(n_components=2, perplexity=float(min(perplexity, max(2.0, (n - 1) / 3.0))),
                    init="pca", learning_rate="auto", max_iter=max(250, int(max_iter)),
                    random_state=seed)
        from threadpoolctl import threadpool_limits

        # One OpenMP thread: sklearn's Barnes-Hut gradient spin-waits when the cores are
        # shared (measured 100x slower for 60 patients on a busy 2-core machine).
        with threadpool_limits(limits=1, user_api="openmp"):
            return tsne.fit_transform(scores[:, :TSNE_COMPONENTS]).astype(np.float64)
    raise ValueError(f"method must be 'pca' or 'tsne', got {method!r}")


@dataclass(frozen=True, eq=False)
class InvarianceResult:
    """Site invariance of one embedding.

    Attributes
    ----------
    backbone, by : str
        The backbone (or any name) and the grouping ('site', 'cohort'...).
    n, n_groups, n_components : int
        Patients, groups, principal components of silhouette and Davies-Bouldin.
    explained_variance : float
        Share of the variance of the standardised embedding in those components.
    silhouette, davies_bouldin : float
    probe : SiteProbeResult
    coordinates : DataFrame
        patient_id, group, method ('pca', 'tsne'), x, y.
    params : dict
    """

    backbone: str
    by: str
    n: int
    n_groups: int
    n_components: int
    explained_variance: float
    silhouette: float
    davies_bouldin: float
    probe: SiteProbeResult
    coordinates: pd.DataFrame
    params: dict = field(default_factory=dict)

    def summary(self) -> str:
        """A few lines; lower separability reads as better."""
        return "\n".join([
            f"{self.backbone}: separability of {self.n_groups} {self.by}s (n={self.n}; lower "
            "reads as more invariant)",
            f"  PCA-silhouette ({self.n_components} PCs, {100 * self.explained_variance:.1f}% "
            f"of variance) {self.silhouette:.3f}   [lower is better]",
            f"  Davies-Bouldin ({self.n_components} PCs) {self.davies_bouldin:.3f}   "
            "[higher is better]",
            f"  {self.probe.summary()}   [closer to chance is better]",
        ])

    def to_frame(self) -> pd.DataFrame:
        """Long table: one row per measure and interval method."""
        n_pc = self.n_components
        rows = [
            {"metric": "silhouette", "estimate": self.silhouette, "ci_low": np.nan,
             "ci_high": np.nan, "ci_method": "none", "chance": np.nan, "n_components": n_pc},
            {"metric": "davies_bouldin", "estimate": self.davies_bouldin, "ci_low": np.nan,
             "ci_high": np.nan, "ci_method": "none", "chance": np.nan, "n_components": n_pc},
        ]
        probe = self.probe.to_frame().assign(n_components=self.probe.n_components)
        frame = pd.concat([pd.DataFrame(rows), probe], ignore_index=True)
        frame["better"] = frame["metric"].map(BETTER)
        frame["explained_variance"] = np.where(frame["metric"] == "site_probe_ba", np.nan,
                                               self.explained_variance)
        frame["n"] = self.n
        frame["n_groups"] = self.n_groups
        frame["level"] = self.probe.level
        return frame


def site_invariance(X: np.ndarray, groups: np.ndarray, patient_ids: np.ndarray | None = None,
                    *, backbone: str = "", by: str = "site",
                    n_components: int = DEFAULT_COMPONENTS,
                    probe_components: int = PROBE_COMPONENTS, n_splits: int = 5,
                    n_repeats: int = 1, n_boot: int = 2000, seed: int = 0,
                    level: float = 0.95, tsne: bool = True, tsne_max_iter: int = 500,
                    threads: int | None = 1,
                    on_split: Callable[[], None] | None = None) -> InvarianceResult:
    """PCA-silhouette, Davies-Bouldin, site probe and scatter coordinates of one embedding.

    Parameters
    ----------
    X : ndarray, shape (n_patients, n_dims)
    groups : ndarray of str, shape (n_patients,)
        Site (or cohort) of every patient.
    patient_ids : ndarray of str, shape (n_patients,), optional
        For the fold plan (so every backbone gets the same folds).
    backbone, by : str
        Labels of the result.
    n_components : int
        Principal components of silhouette and Davies-Bouldin (default 10).
    probe_components : int
        Principal components of the site probe and of t-SNE (default 50).
    n_splits, n_repeats, n_boot, seed, level : probe settings.
    tsne : bool
        Also compute t-SNE coordinates.
    threads : int or None
        BLAS/OpenMP threads for this call (default 1; None leaves the libraries'
        setting). The matrices are small (PCA of n x d, probes on n x 50), and on a
        shared machine multi-threaded BLAS spin-waits: one thread was 10x faster for
        the probe on a busy 2-core machine. Parallelism comes from analysing several
        backbones side by side (``invariance_run(n_jobs=...)``).

    Returns
    -------
    InvarianceResult

    Raises
    ------
    ValueError
        Fewer than 3 patients or 2 groups, or mismatched shapes.
    """
    from contextlib import nullcontext

    from threadpoolctl import threadpool_limits

    limits = nullcontext() if threads is None else threadpool_limits(limits=int(threads))
    with limits:
        return _site_invariance(X, groups, patient_ids, backbone=backbone, by=by,
                                n_components=n_components, probe_components=probe_components,
                                n_splits=n_splits, n_repeats=n_repeats, n_boot=n_boot,
                                seed=seed, level=level, tsne=tsne, tsne_max_iter=tsne_max_iter,
                                on_split=on_split)


def _site_invariance(X, groups, patient_ids, *, backbone, by, n_components, probe_components,
                     n_splits, n_repeats, n_boot, seed, level, tsne, tsne_max_iter,
                     on_split) -> InvarianceResult:
    X = np.asarray(X)
    n = X.shape[0]
    _check_groups(groups, n)
    groups = np.asarray(groups).astype(str)
    ids = (np.array([f"row{i:07d}" for i in range(n)]) if patient_ids is None
           else np.asarray(patient_ids).astype(str))
    scores, ratio = principal_components(X, max(n_components, probe_components), seed=seed)
    m = min(n_components, scores.shape[1])
    silhouette, db = site_separability(scores[:, :m], groups)
    probe = site_probe(scores[:, :probe_components], groups, ids, n_splits=n_splits,
                       n_repeats=n_repeats, seed=seed, n_boot=n_boot, level=level,
                       plan_name=by, on_split=on_split)
    frames = []
    methods = ("pca", "tsne") if tsne else ("pca",)
    for method in methods:
        xy = embedding_coordinates(scores, method, seed=seed, max_iter=tsne_max_iter)
        frames.append(pd.DataFrame({"patient_id": ids, "group": groups, "method": method,
                                    "x": xy[:, 0], "y": xy[:, 1]}))
    params = {"n_components": int(m), "probe_components": int(min(probe_components,
                                                                  scores.shape[1])),
              "n_splits": n_splits, "n_repeats": n_repeats, "n_boot": n_boot, "seed": seed,
              "level": level, "tsne": bool(tsne), "tsne_max_iter": int(tsne_max_iter),
              "tsne_implementation": "sklearn.manifold.TSNE (Barnes-Hut) on 50 PCs"}
    return InvarianceResult(
        backbone=backbone, by=by, n=int(n), n_groups=int(np.unique(groups).size),
        n_components=int(m), explained_variance=float(ratio[:m].sum()), silhouette=silhouette,
        davies_bouldin=db, probe=probe, coordinates=pd.concat(frames, ignore_index=True),
        params=params)
