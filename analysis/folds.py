"""Fold plans: repeated stratified k-fold, leave-one-site-out, per-site CV, data fractions.

Pairing is the point. A fold plan is derived only from the task name, the seed and
the patient ids (plus the stratum of each patient), never from row order or from the
backbone, so every backbone evaluated on a task sees exactly the same folds and paired
comparisons are paired patient by patient.

How a patient gets its fold (repeat ``r``): within each stratum (class for binary
tasks, event for survival), patients are ordered by ``blake2b(task|seed|r|patient_id)``
and dealt round-robin into the k folds; the deal continues from one stratum to the
next, so fold sizes differ by at most one and every fold holds ``floor(n_s / k)`` or
``ceil(n_s / k)`` patients of each stratum ``s``. Shuffling the rows, or adding a
backbone, changes nothing.

The plan is a :class:`FoldPlan`: ``fold_ids`` of shape ``(n_repeats, n)`` (fold of each
patient in each repeat; -1 = not used in that repeat) and an optional ``block_ids``
that restricts training to the test fold's block (per-site CV: train and test within
the same site).

Examples
--------
>>> import numpy as np
>>> ids = np.array([f"P{i:03d}" for i in range(20)])
>>> y = np.arange(20) % 2 == 0
>>> plan = stratified_kfold_plan(ids, y, n_splits=5, n_repeats=2, task="idh1", seed=0)
>>> plan.fold_ids.shape
(2, 20)
>>> sum(1 for _ in plan.splits())
10
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

__all__ = [
    "FoldError",
    "Split",
    "FoldPlan",
    "derive_seed",
    "stratified_kfold_plan",
    "survival_kfold_plan",
    "leave_one_site_out_plan",
    "per_site_kfold_plan",
    "paired_subsampling_plan",
    "fraction_subsample",
    "check_two_classes_per_site",
]


class FoldError(ValueError):
    """A fold plan cannot be built for this data (too few positives, one-class site...)."""


def derive_seed(*parts: object) -> int:
    """A 63-bit integer seed from any parts (task name, seed, repeat...), stable across runs.

    Python's ``hash`` is salted per process; this uses blake2b of ``"|".join(parts)``.
    """
    text = "|".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little") >> 1


def _patient_keys(patient_ids: np.ndarray, *parts: object) -> np.ndarray:
    prefix = "|".join(str(p) for p in parts) + "|"
    return np.array([
        int.from_bytes(hashlib.blake2b((prefix + str(pid)).encode(), digest_size=8).digest(),
                       "little")
        for pid in patient_ids
    ], dtype=np.uint64)


@dataclass(frozen=True)
class Split:
    """One train/test split: positional indices into the plan's rows."""

    repeat: int
    fold: int
    name: str
    train: np.ndarray
    test: np.ndarray


@dataclass(frozen=True, eq=False)
class FoldPlan:
    """Which patients are tested in which fold of which repeat.

    Attributes
    ----------
    patient_ids : ndarray of str, shape (n,)
    fold_ids : ndarray of int, shape (n_repeats, n)
        Fold of each patient in each repeat; -1 = not used in that repeat.
    fold_names : tuple of str
        Name of each fold id (``'fold0'``..., or the site for LOSO).
    protocol : str
        ``'cv'``, ``'loso'`` or ``'site'``.
    task, seed : str, int
        What the plan was derived from.
    block_ids : ndarray of int, shape (n,), or None
        When given, a fold trains only on patients of the same block (per-site CV).
    tested_folds : int or None
        When given, only fold ids below it are test folds; the other ids mark patients
        that only train in that repeat (a subsampling plan: ``('test', 'train')``).
    """

    patient_ids: np.ndarray
    fold_ids: np.ndarray
    fold_names: tuple[str, ...]
    protocol: str
    task: str
    seed: int
    block_ids: np.ndarray | None = None
    block_names: tuple[str, ...] = field(default=())
    tested_folds: int | None = None

    @property
    def n_repeats(self) -> int:
        """Number of repeats (rows of ``fold_ids``)."""
        return int(self.fold_ids.shape[0])

    @property
    def n_folds(self) -> int:
        """Number of distinct fold ids."""
        return len(self.fold_names)

    def splits(self) -> Iterator[Split]:
        """Yield every (repeat, fold) split; train excludes the test fold (and other blocks)."""
        tested = self.n_folds if self.tested_folds is None else self.tested_folds
        for r in range(self.n_repeats):
            ids = self.fold_ids[r]
            for f in range(tested):
                test_mask = ids == f
                if not test_mask.any():
                    continue
                train_mask = (ids >= 0) & ~test_mask
                if self.block_ids is not None:
                    block = self.block_ids[test_mask][0]
                    train_mask &= self.block_ids == block
                yield Split(r, f, self.fold_names[f], np.flatnonzero(train_mask),
                            np.flatnonzero(test_mask))

    def mean_train_test_sizes(self) -> tuple[float, float]:
        """Mean training and test set sizes over splits (for the corrected t-test)."""
        sizes = [(s.train.size, s.test.size) for s in self.splits()]
        return (float(np.mean([a for a, _ in sizes])), float(np.mean([b for _, b in sizes])))

    def align(self, patient_ids: np.ndarray) -> FoldPlan:
        """The same plan with rows reordered to ``patient_ids`` (all must be in the plan)."""
        patient_ids = np.asarray(patient_ids).astype(str)
        lookup = pd.Index(self.patient_ids)
        pos = lookup.get_indexer(patient_ids)
        if (pos < 0).any():
            missing = patient_ids[pos < 0]
            raise FoldError(f"{missing.size} patients are not in the fold plan "
                            f"(first: {str(missing[0])!r})")
        return FoldPlan(patient_ids, self.fold_ids[:, pos], self.fold_names, self.protocol,
                        self.task, self.seed,
                        None if self.block_ids is None else self.block_ids[pos],
                        self.block_names, self.tested_folds)

    def to_frame(self) -> pd.DataFrame:
        """Long table: patient_id, repeat, fold, fold_name."""
        rows = []
        for r in range(self.n_repeats):
            ids = self.fold_ids[r]
            rows.append(pd.DataFrame({
                "patient_id": self.patient_ids, "repeat": r, "fold": ids,
                "fold_name": [self.fold_names[i] if i >= 0 else "" for i in ids]}))
        return pd.concat(rows, ignore_index=True)

    def summary(self) -> str:
        """One line describing the plan."""
        return (f"{self.protocol}: {self.n_repeats} repeat(s) x {self.n_folds} fold(s) over "
                f"{self.patient_ids.size} patients (task {self.task!r}, seed {self.seed})")


def _as_strata(strata: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    strata = np.asarray(strata)
    if strata.dtype == bool:
        strata = strata.astype(np.int64)
    levels, codes = np.unique(strata, return_inverse=True)
    return levels, codes.reshape(-1)


def _deal(patient_ids: np.ndarray, codes: np.ndarray, n_splits: int, parts: tuple) -> np.ndarray:
    """Fold ids (n,) by round-robin dealing of hash-ordered patients, stratum by stratum."""
    keys = _patient_keys(patient_ids, *parts)
    fold_ids = np.empty(patient_ids.size, dtype=np.int64)
    offset = 0
    for level in range(codes.max() + 1 if codes.size else 0):
        members = np.flatnonzero(codes == level)
        # ties in the 64-bit key are practically impossible; break them by id anyway
        order = members[np.lexsort((patient_ids[members], keys[members]))]
        fold_ids[order] = (offset + np.arange(order.size)) % n_splits
        offset = (offset + order.size) % n_splits
    return fold_ids


def _check_ids(patient_ids: np.ndarray, strata: np.ndarray) -> np.ndarray:
    patient_ids = np.asarray(patient_ids).astype(str)
    if patient_ids.ndim != 1 or np.asarray(strata).shape != patient_ids.shape:
        raise ValueError(f"patient_ids {patient_ids.shape} and strata "
                         f"{np.asarray(strata).shape} must be 1-d of the same length")
    uniq, counts = np.unique(patient_ids, return_counts=True)
    if (counts > 1).any():
        raise ValueError(f"patient id {str(uniq[counts > 1][0])!r} appears "
                         f"{counts[counts > 1][0]} times; a fold plan needs one row per patient")
    return patient_ids


def stratified_kfold_plan(patient_ids: np.ndarray, strata: np.ndarray, *, n_splits: int = 5,
                          n_repeats: int = 5, task: str, seed: int = 0,
                          stratum_name: str = "positive") -> FoldPlan:
    """Repeated stratified k-fold plan derived from task + seed + patient ids.

    Parameters
    ----------
    patient_ids : ndarray of str, shape (n,)
    strata : ndarray, shape (n,)
        Class (bool/int) of each patient; any hashable labels work.
    n_splits, n_repeats : int
    task : str
        Task name; part of the derivation so different tasks get independent folds.
    seed : int
    stratum_name : str
        How to call the rarest stratum in the error message ('positive', 'event').

    Returns
    -------
    FoldPlan

    Raises
    ------
    FoldError
        If a stratum has fewer members than ``n_splits`` (every test fold needs both
        classes), naming the count and suggesting fewer folds or LOSO.
    """
    patient_ids = _check_ids(patient_ids, strata)
    if n_splits < 2:
        raise ValueError(f"n_splits must be >= 2, got {n_splits}")
    if n_repeats < 1:
        raise ValueError(f"n_repeats must be >= 1, got {n_repeats}")
    levels, codes = _as_strata(strata)
    counts = np.bincount(codes, minlength=levels.size)
    if levels.size < 2:
        raise FoldError(f"task {task!r}: all {patient_ids.size} patients are in one class "
                        f"({levels[0] if levels.size else 'none'}); nothing to "
                        "cross-validate")
    if counts.min() < n_splits:
        rare = levels[np.argmin(counts)]
        rare = rare.item() if hasattr(rare, "item") else rare
        if set(levels.tolist()) <= {0, 1}:
            label = stratum_name if rare == 1 else ("negative" if stratum_name == "positive"
                                                    else f"non-{stratum_name}")
            what = f"{counts.min()} {label} patients"
        else:
            what = f"{counts.min()} patients in class {rare!r}"
        suggest = max(2, int(counts.min()))
        raise FoldError(
            f"task {task!r} has only {what} (of {patient_ids.size}); {n_splits}-fold "
            f"stratified CV needs at least {n_splits} in each class. Use --folds "
            f"{suggest} or fewer" + (" or --protocol loso" if counts.min() >= 1 else "") + ".")
    fold_ids = np.stack([_deal(patient_ids, codes, n_splits, (task, seed, r))
                         for r in range(n_repeats)])
    return FoldPlan(patient_ids, fold_ids, tuple(f"fold{f}" for f in range(n_splits)),
                    "cv", task, int(seed))


def survival_kfold_plan(patient_ids: np.ndarray, event: np.ndarray, *, n_splits: int = 5,
                        n_repeats: int = 5, task: str = "os", seed: int = 0) -> FoldPlan:
    """Repeated k-fold stratified by event indicator (for survival tasks).

    Same derivation as :func:`stratified_kfold_plan`; every test fold holds events.

    Raises
    ------
    FoldError
        No events, no censored patients, or fewer events than folds (the message says
        how many events there are and suggests fewer folds).
    """
    event = np.asarray(event).astype(bool)
    n_events = int(event.sum())
    if n_events == 0:
        raise FoldError(f"task {task!r}: no events among {event.size} patients; "
                        "a c-index cannot be computed")
    if n_events < n_splits:
        raise FoldError(f"task {task!r} has only {n_events} events (of {event.size} "
                        f"patients); {n_splits}-fold CV needs an event in every fold. "
                        f"Use --folds {max(2, n_events)} or fewer.")
    if event.all():
        # no censored patient: a single stratum is fine for survival
        patient_ids = _check_ids(patient_ids, event)
        codes = np.zeros(event.size, dtype=np.int64)
        fold_ids = np.stack([_deal(patient_ids, codes, n_splits, (task, seed, r))
                             for r in range(n_repeats)])
        return FoldPlan(patient_ids, fold_ids, tuple(f"fold{f}" for f in range(n_splits)),
                        "cv", task, int(seed))
    return stratified_kfold_plan(patient_ids, event, n_splits=n_splits, n_repeats=n_repeats,
                                 task=task, seed=seed, stratum_name="event")


def check_two_classes_per_site(sites: np.ndarray, y: np.ndarray, *, task: str,
                               protocol: str) -> None:
    """Raise :class:`FoldError` naming every site that holds only one class.

    Used by leave-one-site-out (a held-out site needs both classes to have an AUC) and
    per-site CV.
    """
    sites = np.asarray(sites).astype(str)
    y = np.asarray(y).astype(bool)
    bad = []
    for site in np.unique(sites):
        in_site = y[sites == site]
        if in_site.all() or not in_site.any():
            cls = "positive" if in_site.all() else "negative"
            bad.append(f"{site} ({in_site.size} patients, all {cls})")
    if bad:
        raise FoldError(f"task {task!r}, protocol {protocol}: site(s) with one class: "
                        + "; ".join(bad) + ". AUC and balanced accuracy are undefined there; "
                        "use --protocol cv, or keep only the other sites with --site (comma-separated).")


def leave_one_site_out_plan(patient_ids: np.ndarray, sites: np.ndarray, *, task: str,
                            seed: int = 0, y: np.ndarray | None = None) -> FoldPlan:
    """One fold per site: train on all other sites, test on the held-out one.

    Parameters
    ----------
    patient_ids, sites : ndarray of str, shape (n,)
    task : str
    seed : int
        Recorded only (LOSO is deterministic).
    y : ndarray of bool, shape (n,), optional
        When given, sites with one class are refused (see
        :func:`check_two_classes_per_site`).
    """
    sites = np.asarray(sites).astype(str)
    patient_ids = _check_ids(patient_ids, sites)
    site_names, codes = np.unique(sites, return_inverse=True)
    if site_names.size < 2:
        raise FoldError(f"task {task!r}: leave-one-site-out needs at least 2 sites, "
                        f"found only {site_names.tolist()}; use --protocol cv")
    if y is not None:
        check_two_classes_per_site(sites, y, task=task, protocol="loso")
    return FoldPlan(patient_ids, codes.reshape(1, -1).astype(np.int64),
                    tuple(site_names.tolist()), "loso", task, int(seed))


def per_site_kfold_plan(patient_ids: np.ndarray, sites: np.ndarray, strata: np.ndarray, *,
                        n_splits: int = 5, n_repeats: int = 5, task: str,
                        seed: int = 0) -> FoldPlan:
    """Stratified k-fold inside each site: train and test within the same site.

    Fold id ``site_index * n_splits + f``; fold names ``'<site>/fold<f>'``.

    Raises
    ------
    FoldError
        A site with one class, or a site with fewer positives than folds (named).
    """
    sites = np.asarray(sites).astype(str)
    patient_ids = _check_ids(patient_ids, sites)
    check_two_classes_per_site(sites, strata, task=task, protocol="site")
    site_names, site_codes = np.unique(sites, return_inverse=True)
    fold_ids = np.empty((n_repeats, patient_ids.size), dtype=np.int64)
    for s, site in enumerate(site_names):
        rows = np.flatnonzero(site_codes == s)
        try:
            sub = stratified_kfold_plan(patient_ids[rows], np.asarray(strata)[rows],
                                        n_splits=n_splits, n_repeats=n_repeats,
                                        task=f"{task}@{site}", seed=seed)
        except FoldError as err:
            raise FoldError(f"site {site}: {err}") from None
        fold_ids[:, rows] = s * n_splits + sub.fold_ids
    names = tuple(f"{site}/fold{f}" for site in site_names for f in range(n_splits))
    return FoldPlan(patient_ids, fold_ids, names, "site", task, int(seed),
                    site_codes.astype(np.int64), tuple(site_names.tolist()))


def _stratified_take(rows: np.ndarray, codes: np.ndarray, size: int,
                     patient_ids: np.ndarray, parts: tuple) -> np.ndarray:
    """``size`` of ``rows``, each stratum in proportion: hash-ordered within the stratum,
    then merged by the within-stratum quantile ``(i + 0.5) / n_s``."""
    keys = _patient_keys(patient_ids[rows], *parts)
    quantile = np.empty(rows.size)
    for level in np.unique(codes[rows]):
        members = np.flatnonzero(codes[rows] == level)
        order = members[np.argsort(keys[members], kind="stable")]
        quantile[order] = (np.arange(order.size) + 0.5) / order.size
    return rows[np.lexsort((keys, quantile))[:size]]


def paired_subsampling_plan(patient_ids: np.ndarray, strata: np.ndarray, *, n_splits: int = 5,
                            n_inner: int = 15, n_outer: int = 10, task: str, seed: int = 0,
                            stratum_name: str = "positive") -> FoldPlan:
    """Nadeau & Bengio's paired subsampling (mlr3inferr's ``paired_subsampling``), stratified.

    Repeats ``0 .. n_inner - 1`` test ``round(n / n_splits)`` patients drawn from everyone
    (each stratum in proportion) and train on the rest: the point estimate, at the
    training size of ``n_splits``-fold CV. Then, for each of ``n_outer`` outer repeats
    ``m``, the patients are dealt into two halves (stratified) and each half ``h`` gets
    ``n_inner`` subsamples with the same test size, training on the rest of the half:
    repeat ``n_inner + (2 m + h) n_inner + j``. Only the halves' spread is used for the
    variance (:func:`~neurofeat.analysis.subsampling.conservative_z`).

    Fold ids: 0 = test, 1 = train only, -1 = not used (``tested_folds = 1``). Derived,
    like every plan, from task, seed and patient ids only.

    Raises
    ------
    FoldError
        A half too small for the test size, or a test or training set of some subsample
        without a member of some stratum (e.g. no positive patient), naming the counts.
    """
    patient_ids = _check_ids(patient_ids, strata)
    if n_splits < 3:
        raise ValueError(f"n_splits must be >= 3 (a half must train on something), got {n_splits}")
    if n_inner < 1 or n_outer < 1:
        raise ValueError(f"n_inner and n_outer must be >= 1, got {n_inner}, {n_outer}")
    levels, codes = _as_strata(strata)
    n = patient_ids.size
    n_test = int(round(n / n_splits))
    everyone = np.arange(n)
    fold_ids = np.full((n_inner * (1 + 2 * n_outer), n), -1, dtype=np.int64)

    def subsample(r: int, pool: np.ndarray, where: str) -> None:
        test = _stratified_take(pool, codes, n_test, patient_ids, (task, seed, "subsample", r))
        fold_ids[r, pool] = 1
        fold_ids[r, test] = 0
        for part, rows in (("test", test), ("training", np.setdiff1d(pool, test))):
            missing = np.setdiff1d(np.arange(levels.size), codes[rows])
            if missing.size:
                level = levels[missing[0]]
                level = level.item() if hasattr(level, "item") else level
                label = (stratum_name if level in (1, True) else f"class {level!r}")
                raise FoldError(
                    f"task {task!r}: a {part} set of {rows.size} patients {where} holds no "
                    f"{label} ({int(np.sum(codes == missing[0]))} of {n} in all); paired "
                    "subsampling needs every class in every subsample. Use fewer --folds "
                    "(a larger test set) or the cross-validated tests.")

    for r in range(n_inner):
        subsample(r, everyone, "of the whole cohort")
    for m in range(n_outer):
        half = _deal(patient_ids, codes, 2, (task, seed, "half", m))
        for h in range(2):
            pool = np.flatnonzero(half == h)
            if pool.size <= n_test:
                raise FoldError(f"task {task!r}: a half of {pool.size} patients cannot hold a "
                                f"test set of {n_test} and train; use more --folds")
            for j in range(n_inner):
                subsample(n_inner + (2 * m + h) * n_inner + j, pool,
                          f"of half {h + 1} of outer repeat {m + 1}")
    return FoldPlan(patient_ids, fold_ids, ("test", "train"), "paired-subsampling", task,
                    int(seed), tested_folds=1)


def fraction_subsample(train: np.ndarray, strata: np.ndarray, fraction: float, *,
                       patient_ids: np.ndarray, task: str, seed: int, repeat: int,
                       fold: int) -> np.ndarray:
    """Stratified subsample of a training fold, nested across fractions.

    Within each stratum of the training rows, patients are ordered by a hash of
    (task, seed, repeat, fold, patient id) and the first ``ceil(fraction * n_s)`` are
    kept (at least one per stratum), so 10 % is a subset of 20 %, ... of 100 %, and
    the subsample is identical for every backbone.

    Parameters
    ----------
    train : ndarray of int, shape (n_train,)
        Row indices of the training fold.
    strata : ndarray, shape (n,)
        Class of every row (indexed by ``train``).
    fraction : float in (0, 1]
    patient_ids : ndarray of str, shape (n,)

    Returns
    -------
    ndarray of int
        Sorted subset of ``train``.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    train = np.asarray(train)
    if fraction == 1.0:
        return np.sort(train)
    levels, codes = _as_strata(np.asarray(strata)[train])
    keys = _patient_keys(np.asarray(patient_ids)[train], "fraction", task, seed, repeat, fold)
    keep = []
    for level in range(levels.size):
        members = np.flatnonzero(codes == level)
        order = members[np.argsort(keys[members], kind="stable")]
        k = max(1, int(np.ceil(fraction * members.size - 1e-9)))
        keep.append(order[:k])
    return np.sort(train[np.concatenate(keep)])
