"""Perturbation stability: a probe trained on clean embeddings, tested on perturbed ones.

BrainIAC's stability analysis: the model is trained on clean images and evaluated on
the same test patients after a contrast, Gibbs-ringing or bias-field perturbation of
increasing strength; a robust encoder keeps its performance flat. Here, for every split
of a stratified k-fold plan (the plan of ``neurofeat probe``: task + seed + patient
ids), the project's probe (:class:`~neurofeat.analysis.probes.LinearProbe`; ridge for
continuous tasks) is fitted on the *clean* embeddings of the training patients and
scores the test patients' clean embedding and each perturbed embedding. Each
perturbation's out-of-fold scores are evaluated by
:func:`~neurofeat.analysis.protocols.evaluate_probe` (AUC and balanced accuracy with
the project's calibrated interval over test folds as primary, bootstrap intervals), and
the change from clean is paired fold by fold (``delta = perturbed - clean``, the same
calibrated corrected-t interval: per-metric correction, J - 1 df, as ``stats
compare`` uses for paired differences).

Embedding drift: ``1 - cos(clean_i, perturbed_i)`` for every patient.

Perturbation labels are those of ``neurofeat extract --perturb`` (``gibbs-0.2``,
``bias-0.3``, ``contrast-1.5``; ``none`` is clean). The clean embedding sits on each
curve at the kind's identity strength (:data:`IDENTITY_STRENGTH`).

Examples
--------
>>> parse_perturbation_label("contrast-1.5")
('contrast', 1.5)
>>> parse_perturbation_label("bias-0.2+gibbs-0.1")
('bias+gibbs', nan)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from neurofeat.analysis.folds import stratified_kfold_plan
from neurofeat.analysis.paired_tests import DEFAULT_TEST, corrected_resampled_interval
from neurofeat.analysis.protocols import OutOfFold, binary_scorers, evaluate_probe
from neurofeat.analysis.scoring import AUC, SPEARMAN, score_folds

__all__ = [
    "IDENTITY_STRENGTH",
    "parse_perturbation_label",
    "embedding_drift",
    "StabilityResult",
    "perturbation_stability",
]

#: Strength at which each perturbation is the identity (where the clean result sits).
IDENTITY_STRENGTH: dict[str, float] = {"contrast": 1.0, "gibbs": 0.0, "bias": 0.0}

_LABEL = re.compile(r"^(?P<kind>[a-z]+)-(?P<strength>[0-9]*\.?[0-9]+(?:e-?[0-9]+)?)$")


def parse_perturbation_label(label: str) -> tuple[str, float]:
    """``(kind, strength)`` of a stored perturbation label.

    ``'none'`` -> ``('none', nan)``; a combination (``a-x+b-y``) -> ``('a+b', nan)``;
    a label that is not ``<kind>-<number>`` -> ``(label, nan)``.
    """
    if label == "none":
        return "none", float("nan")
    parts = label.split("+")
    if len(parts) > 1:
        kinds = [(_LABEL.match(p).group("kind") if _LABEL.match(p) else p) for p in parts]
        return "+".join(kinds), float("nan")
    match = _LABEL.match(label)
    if not match:
        return label, float("nan")
    return match.group("kind"), float(match.group("strength"))


def embedding_drift(clean: np.ndarray, perturbed: np.ndarray) -> np.ndarray:
    """Cosine distance ``1 - cos(clean_i, perturbed_i)`` of every row.

    Parameters
    ----------
    clean, perturbed : ndarray, shape (n_patients, n_dims)
        The same patients in the same order.

    Returns
    -------
    ndarray, shape (n_patients,)
        In [0, 2]; NaN for a zero vector.
    """
    a = np.asarray(clean, dtype=np.float64)
    b = np.asarray(perturbed, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"clean embeddings have shape {a.shape}, perturbed {b.shape}; they "
                         "must hold the same patients")
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.einsum("ij,ij->i", a, b) / norms
    return np.where(norms > 0, 1.0 - np.clip(cos, -1.0, 1.0), np.nan)


@dataclass(frozen=True, eq=False)
class StabilityResult:
    """Performance of a clean-trained probe on perturbed embeddings, and embedding drift.

    Attributes
    ----------
    backbone, task : str
    metrics : DataFrame
        :func:`~neurofeat.analysis.protocols.evaluate_probe` rows of every perturbation
        (column ``perturbation``; 'none' = clean).
    curve : DataFrame
        One row per perturbation x metric (primary interval): perturbation, kind,
        strength, metric, n, n_pos, estimate, ci_low, ci_high, ci_method, ci_level,
        delta, delta_ci_low, delta_ci_high. The clean row is repeated for every kind at
        its identity strength.
    drift : DataFrame
        perturbation, kind, strength, patient_id, site, cosine_distance.
    params : dict
    """

    backbone: str
    task: str
    metrics: pd.DataFrame
    curve: pd.DataFrame
    drift: pd.DataFrame
    params: dict = field(default_factory=dict)

    def summary(self) -> str:
        """Per perturbation: the metric, its change from clean, and the median drift."""
        lines = [f"{self.backbone} on {self.task}: probe trained on clean embeddings"]
        rows = self.curve[self.curve["perturbation"] != "none"]
        clean = self.curve[self.curve["perturbation"] == "none"].drop_duplicates("metric")
        for _, row in clean.iterrows():
            lines.append(f"  clean        {row['metric']:<4} {row['estimate']:.3f} "
                         f"[{row['ci_low']:.3f}, {row['ci_high']:.3f}]")
        drift = self.drift.groupby("perturbation")["cosine_distance"].median()
        for _, row in rows.iterrows():
            lines.append(f"  {row['perturbation']:<12} {row['metric']:<4} {row['estimate']:.3f} "
                         f"(change {row['delta']:+.3f} [{row['delta_ci_low']:+.3f}, "
                         f"{row['delta_ci_high']:+.3f}]); median drift "
                         f"{drift.get(row['perturbation'], np.nan):.4f}")
        return "\n".join(lines)

    def to_frame(self) -> pd.DataFrame:
        """The curve table with backbone and task columns."""
        return self.curve.assign(backbone=self.backbone, task=self.task)


def perturbation_stability(X_clean: np.ndarray, y: np.ndarray,
                           X_perturbed: Mapping[str, np.ndarray], *, patient_ids: np.ndarray,
                           sites: np.ndarray, task: str, backbone: str = "",
                           kind: str = "binary", threshold: float | None = None,
                           n_splits: int = 5, n_repeats: int = 5, n_boot: int = 2000,
                           seed: int = 0, level: float = 0.95,
                           on_split: Callable[[], None] | None = None) -> StabilityResult:
    """Train on clean embeddings, evaluate on each perturbation, measure drift.

    Parameters
    ----------
    X_clean : ndarray, shape (n_patients, n_dims)
    y : ndarray, shape (n_patients,)
        0/1 label (binary) or value (continuous; positive when ``>= threshold``).
    X_perturbed : mapping label -> ndarray, shape (n_patients, n_dims)
        The same patients' perturbed embeddings (labels as ``neurofeat extract``).
    patient_ids, sites : ndarray of str, shape (n_patients,)
    task : str
        Task name (fold plan and bootstrap derive from it and ``seed``).
    kind : {'binary', 'continuous'}
    threshold : float, optional
        Continuous tasks only.
    n_splits, n_repeats, n_boot, seed, level : settings.

    Returns
    -------
    StabilityResult

    Raises
    ------
    ValueError
        No perturbation, or a perturbed matrix whose shape differs from the clean one.
    """
    from neurofeat.analysis.probes import LinearProbe, RidgeProbe

    if not X_perturbed:
        raise ValueError("no perturbed embeddings to evaluate; extract some with `neurofeat "
                         "extract --perturb gibbs:0.2,bias:0.3,contrast:1.5`")
    X_clean = np.asarray(X_clean)
    for label, X in X_perturbed.items():
        if np.shape(X) != X_clean.shape:
            raise ValueError(f"perturbation '{label}': embeddings of shape {np.shape(X)}, clean "
                             f"{X_clean.shape}; give the same patients in the same order")
    y = np.asarray(y, dtype=float)
    if kind == "binary":
        labels = y.astype(bool)
        target, make, output = labels, (lambda: LinearProbe(random_state=seed)), "proba"
        scorers = binary_scorers(0.5)[:2]
        targets = None
    elif kind == "continuous":
        if threshold is None:
            raise ValueError(f"task {task!r} is continuous: give the threshold that binarises it")
        labels = y >= threshold
        target, make, output = y, RidgeProbe, "predict"
        scorers = [AUC, SPEARMAN]
        targets = {"spearman": y}
    else:
        raise ValueError(f"stability handles binary and continuous tasks, not {kind!r}")
    patient_ids = np.asarray(patient_ids).astype(str)
    sites = np.asarray(sites).astype(str)
    plan = stratified_kfold_plan(patient_ids, labels, n_splits=n_splits, n_repeats=n_repeats,
                                 task=task, seed=seed)
    all_X = {"none": X_clean, **dict(X_perturbed)}
    scores = {label: np.full(plan.fold_ids.shape, np.nan) for label in all_X}
    fitted = []
    for split in plan.splits():
        model = make().fit(X_clean[split.train], target[split.train])
        for label, X in all_X.items():
            if output == "proba":
                scores[label][split.repeat, split.test] = model.predict_proba(X[split.test])[:, 1]
            else:
                scores[label][split.repeat, split.test] = model.predict(X[split.test])
        fitted.append({"repeat": split.repeat, "fold": split.fold, "fold_name": split.name,
                       "n_train": int(split.train.size), "n_test": int(split.test.size)})
        if on_split is not None:
            on_split()
    n_train = float(np.mean([f["n_train"] for f in fitted]))
    n_test = float(np.mean([f["n_test"] for f in fitted]))
    frames, per_fold = [], {}
    for label in all_X:
        oof = OutOfFold(scores[label], plan, 1.0, tuple(fitted))
        metrics, _ = evaluate_probe(oof, labels, sites, scorers=scorers, targets=targets,
                                    n_boot=n_boot, seed=seed, alpha=1 - level,
                                    probe="ridge" if kind == "continuous" else "linear",
                                    per_site=False, delong=False, kind=kind)
        frames.append(metrics.assign(perturbation=label))
        per_fold[label] = {s.name: score_folds(s, (targets or {}).get(s.name, labels),
                                               scores[label], plan.fold_ids, plan.n_folds)
                           for s in scorers}
    metrics = pd.concat(frames, ignore_index=True)
    rows = []
    for label in all_X:
        pkind, strength = parse_perturbation_label(label)
        for scorer in scorers:
            sub = metrics[(metrics["perturbation"] == label) & (metrics["metric"] == scorer.name)]
            finite = np.isfinite(sub["ci_low"].astype(float))
            pick = sub[(sub["ci_method"] == DEFAULT_TEST) & finite]
            row = (pick if len(pick) else sub[sub["ci_method"] == "percentile"]).iloc[0]
            diff = per_fold[label][scorer.name] - per_fold["none"][scorer.name]
            delta = corrected_resampled_interval(diff, n_train=n_train, n_test=n_test,
                                                 level=level, n_folds=plan.n_folds,
                                                 metric=scorer.name, kind=kind)
            base = {"metric": scorer.name, "n": int(row["n"]), "n_pos": int(row["n_pos"]),
                    "estimate": float(row["estimate"]), "ci_low": float(row["ci_low"]),
                    "ci_high": float(row["ci_high"]), "ci_method": str(row["ci_method"]),
                    "ci_level": float(level), "delta": float(delta.estimate),
                    "delta_ci_low": float(delta.ci_low), "delta_ci_high": float(delta.ci_high)}
            if label == "none":
                base.update(delta=0.0, delta_ci_low=0.0, delta_ci_high=0.0)
                kinds = sorted({parse_perturbation_label(p)[0] for p in X_perturbed}
                               & set(IDENTITY_STRENGTH)) or ["none"]
                for k in kinds:
                    rows.append({"perturbation": "none", "kind": k,
                                 "strength": IDENTITY_STRENGTH.get(k, np.nan), **base})
            else:
                rows.append({"perturbation": label, "kind": pkind, "strength": strength, **base})
    curve = pd.DataFrame(rows).sort_values(["metric", "kind", "strength"], kind="stable") \
        .reset_index(drop=True)
    drift_frames = []
    for label, X in X_perturbed.items():
        pkind, strength = parse_perturbation_label(label)
        drift_frames.append(pd.DataFrame({
            "perturbation": label, "kind": pkind, "strength": strength,
            "patient_id": patient_ids, "site": sites,
            "cosine_distance": embedding_drift(X_clean, X)}))
    params = {"n_splits": n_splits, "n_repeats": n_repeats, "n_boot": n_boot, "seed": seed,
              "level": level, "kind": kind, "threshold": threshold,
              "perturbations": list(X_perturbed), "trained_on": "clean embeddings"}
    return StabilityResult(backbone=backbone, task=task, metrics=metrics, curve=curve,
                           drift=pd.concat(drift_frames, ignore_index=True), params=params)
