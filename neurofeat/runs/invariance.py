"""The ``invariance`` run: how well each backbone's embeddings separate the sites.

For every selected backbone: PCA-silhouette and Davies-Bouldin by site (or another
grouping), the cross-validated site-classifier probe (balanced accuracy against chance
with its interval), and PCA/t-SNE coordinates for the scatter figures
(:func:`neurofeat.analysis.invariance.site_invariance`). The tables are shaped against
``RUN_TABLE_SCHEMAS['invariance']`` and written with two figures
(``invariance_scatter``, ``invariance_summary``). ``neurofeat invariance`` only parses,
calls :func:`invariance_run` and prints.

Lower site separability reads as better: an encoder whose embeddings tell the sites
apart offers its probes a shortcut.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from neurofeat.analysis.pairing import FAMILIES
from neurofeat.analysis.invariance import InvarianceResult, site_invariance
from neurofeat.runs.inputs import check_backbone, check_finite, clinical_column
from neurofeat.runs.metrics_rows import metrics_rows
from neurofeat.runs.tables import CI_LEVEL, provenance_columns, shape
from neurofeat.store import RunInfo, Store, backbone_provenance, read_embeddings, write_run

__all__ = ["InvarianceRun", "invariance_run", "select_backbones", "read_backbone_embeddings",
           "FAMILY_CHOICES"]

#: ``--family`` values: the base SSL family, its DRO twins, or both.
FAMILY_CHOICES: tuple[str, ...] = ("base", "dro", "all")


def family_of(backbone: str) -> str:
    """'dro' for a ``*_dro`` backbone, 'base' for a base family member, else 'other'."""
    if backbone.endswith("_dro"):
        return "dro"
    return "base" if backbone in FAMILIES["base"] else "other"


def select_backbones(store: Store, backbones: Sequence[str] | None = None,
                     family: str | None = None) -> list[str]:
    """The backbones to analyse: explicit names, a family, or every backbone stored.

    Raises
    ------
    ValueError
        Unknown backbone or family, or a family none of whose members is stored.
    """
    known = store.backbones()
    if not known:
        raise ValueError(f"the store at {store.root} holds no embeddings; run `neurofeat "
                         "extract` (or `neurofeat store import`) first")
    if backbones and family:
        raise ValueError("give --backbone or --family, not both")
    if backbones:
        for backbone in backbones:
            check_backbone(store, backbone)
        return list(dict.fromkeys(backbones))
    if family:
        if family not in FAMILY_CHOICES:
            raise ValueError(f"--family must be one of {', '.join(FAMILY_CHOICES)}, got "
                             f"{family!r}")
        wanted = (FAMILIES["base"] + FAMILIES["dro"]) if family == "all" else FAMILIES[family]
        members = [b for b in wanted if b in known]
        if not members:
            raise ValueError(f"no backbone of family '{family}' ({', '.join(wanted)}) is in the "
                             f"store; it holds {', '.join(known)}")
        return members
    return list(known)


def read_backbone_embeddings(store: Store, backbone: str, perturbation: str = "none"
                             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(patient_ids, sites, X) of every stored patient of a backbone, sorted by patient.

    Raises
    ------
    StoreError
        No such backbone/perturbation (the message lists what the store has).
    ValueError
        NaN/inf embeddings (names the patients).
    """
    table = read_embeddings(store, backbone, perturbation,
                            columns=("patient_id", "site", "embedding"))
    ids = table["patient_id"].to_numpy(zero_copy_only=False).astype(str)
    sites = table["site"].to_numpy(zero_copy_only=False).astype(str)
    column = table["embedding"].combine_chunks()
    dim = column.type.list_size
    X = column.flatten().to_numpy(zero_copy_only=False).reshape(-1, dim)
    order = np.argsort(ids, kind="stable")
    ids, sites, X = ids[order], sites[order], np.ascontiguousarray(X[order])
    check_finite(X, ids, backbone)
    return ids, sites, X


def _provenance(store: Store, backbone: str) -> tuple[str | None, str | None]:
    stored = backbone_provenance(store, backbone)
    if not stored:
        return None, None
    return stored[0].get("checkpoint_sha256"), stored[0].get("preprocess_sha256")


@dataclass(frozen=True, eq=False)
class InvarianceRun:
    """A finished invariance run.

    Attributes
    ----------
    results : dict backbone -> InvarianceResult
    tables : dict name -> DataFrame
        Exactly the stored tables (``invariance``, ``metrics``, ``coordinates``,
        ``confusion``).
    figures : dict name -> matplotlib Figure
    params : dict
    info : RunInfo or None
    """

    results: dict[str, InvarianceResult]
    tables: dict[str, pd.DataFrame]
    figures: dict
    params: dict
    info: RunInfo | None

    def side_by_side(self) -> pd.DataFrame:
        """One row per backbone (DRO twins next to their base): the three measures."""
        table = self.tables["invariance"]
        primary = table[table["ci_method"] != "percentile"]
        rows = []
        for backbone in _paired_order(list(self.results)):
            sub = primary[primary["backbone"] == backbone].set_index("metric")
            probe = sub.loc["site_probe_ba"]
            rows.append({
                "backbone": backbone, "family": family_of(backbone),
                "silhouette": float(sub.loc["silhouette", "estimate"]),
                "davies_bouldin": float(sub.loc["davies_bouldin", "estimate"]),
                "site_probe_ba": float(probe["estimate"]),
                "ba_ci": f"{probe['ci_low']:.3f}-{probe['ci_high']:.3f}",
                "chance": float(probe["chance"]),
                "n": int(probe["n"]),
            })
        return pd.DataFrame(rows)

    def summary(self) -> str:
        """Every backbone's summary."""
        return "\n".join(r.summary() for r in self.results.values())


def _paired_order(backbones: list[str]) -> list[str]:
    """Base backbones each followed by its ``_dro`` twin (when both are present)."""
    order = []
    for b in backbones:
        if b in order:
            continue
        twin = b[:-4] if b.endswith("_dro") else f"{b}_dro"
        if b.endswith("_dro") and twin in backbones and twin not in order:
            order += [twin, b]
        else:
            order.append(b)
            if twin in backbones and twin not in order and not b.endswith("_dro"):
                order.append(twin)
    return order


def _groups(store: Store, by: str, ids: np.ndarray, sites: np.ndarray) -> np.ndarray:
    if by == "site":
        return sites
    values = clinical_column(store, by, ids)
    missing = pd.isna(values)
    if missing.all():
        raise ValueError(f"no patient of the store has a value of '{by}'")
    return np.where(missing, "unknown", values.astype(str))


def invariance_run(store: Store, backbones: Sequence[str] | None = None, *,
                   family: str | None = None, by: str = "site", label: str | None = None,
                   perturbation: str = "none", n_components: int = 10,
                   probe_components: int = 50, n_splits: int = 5, n_repeats: int = 1,
                   n_boot: int = 2000, seed: int = 0, tsne: bool = True, write: bool = True,
                   on_start: Callable[[int], None] | None = None,
                   on_split: Callable[[], None] | None = None) -> InvarianceRun:
    """Site invariance of each selected backbone, written to the store.

    Parameters
    ----------
    store : Store
    backbones : sequence of str, optional
        Backbones to analyse (default: ``family``, else every backbone stored).
    family : {'base', 'dro', 'all'}, optional
    by : str
        Grouping whose separability is measured: 'site' (default) or a column of the
        clinical view (e.g. 'cohort').
    label : str, optional
        Clinical column that colours the second set of scatter panels (e.g. 'idh1'),
        to show biology next to acquisition.
    perturbation : str
        Embeddings of this perturbation ('none' = clean).
    n_components : int
        Principal components of silhouette and Davies-Bouldin.
    probe_components : int
        Principal components of the site probe and t-SNE.
    n_splits, n_repeats, n_boot, seed : probe settings.
    tsne : bool
        Compute t-SNE coordinates (sklearn, the slowest step).
    write : bool
    on_start, on_split : progress hooks (total folds, then one call per fold).

    Raises
    ------
    ValueError
        Unknown backbone/family/column, fewer than two groups, bad embeddings.
    StoreError
        A backbone without embeddings of ``perturbation``.
    """
    selected = select_backbones(store, backbones, family)
    data = {b: read_backbone_embeddings(store, b, perturbation) for b in selected}
    if on_start is not None:
        on_start(len(selected) * n_splits * n_repeats)
    results: dict[str, InvarianceResult] = {}
    hashes = {b: _provenance(store, b) for b in selected}  # footers read once per backbone
    inv_frames, metric_frames, coord_frames, confusion_frames = [], [], [], []
    for backbone in selected:
        ids, sites, X = data[backbone]
        groups = _groups(store, by, ids, sites)
        result = site_invariance(X, groups, ids, backbone=backbone, by=by,
                                 n_components=n_components, probe_components=probe_components,
                                 n_splits=n_splits, n_repeats=n_repeats, n_boot=n_boot,
                                 seed=seed, tsne=tsne, on_split=on_split)
        results[backbone] = result
        provenance = provenance_columns(seed, *hashes[backbone])
        frame = result.to_frame().rename(columns={"level": "ci_level"})
        inv_frames.append(shape(frame, "invariance", "invariance", backbone=backbone,
                                family=family_of(backbone), by=by, perturbation=perturbation,
                                **provenance))
        probe_rows = frame[frame["metric"] == "site_probe_ba"].assign(
            metric="ba", n_pos=None, primary=lambda f: f["ci_method"] != "percentile",
            estimand=lambda f: np.where(
                f["ci_method"] != "percentile",
                f"expected balanced accuracy of the {by} probe (mean over test folds)",
                "balanced accuracy of the out-of-fold predictions (predictions treated as "
                "fixed)"))
        metric_frames.append(metrics_rows(
            probe_rows, "invariance", command="invariance", backbone=backbone,
            perturbation=perturbation, task=by, protocol="cv", probe="linear", model=None,
            site="all", fraction=1.0, tau=None, horizon=None, bca_low=None, bca_high=None,
            cohort_sites="all", **provenance))
        coords = result.coordinates
        labels = (clinical_column(store, label, coords["patient_id"].to_numpy())
                  if label else np.full(len(coords), None))
        coords = coords.assign(label=[None if pd.isna(v) else str(v) for v in labels])
        coord_frames.append(shape(coords, "invariance", "coordinates", backbone=backbone,
                                  by=by, **provenance))
        confusion = result.probe.confusion.stack().rename("count").reset_index()
        confusion.columns = ["group", "predicted", "count"]
        confusion_frames.append(shape(confusion.astype({"group": str, "predicted": str}),
                                      "invariance", "confusion", backbone=backbone, by=by,
                                      **provenance))
    tables = {
        "invariance": pd.concat(inv_frames, ignore_index=True),
        "metrics": pd.concat(metric_frames, ignore_index=True),
        "coordinates": pd.concat(coord_frames, ignore_index=True),
        "confusion": pd.concat(confusion_frames, ignore_index=True),
    }
    from neurofeat.analysis.plots_trust import invariance_scatter, invariance_summary

    figures = {
        "invariance_scatter": invariance_scatter(tables["coordinates"], by=by, label=label),
        "invariance_summary": invariance_summary(tables["invariance"]),
    }
    first = next(iter(results.values()))
    params = dict(first.params, backbones=selected, family=family, by=by, label=label,
                  perturbation=perturbation, ci_level=CI_LEVEL,
                  provenance={b: dict(zip(("checkpoint_sha256", "preprocess_sha256"),
                                          hashes[b])) for b in selected},
                  reading="lower site separability reads as better (more site-invariant)")
    info = write_run(store, "invariance", tables, params=params, figures=figures) if write else None
    return InvarianceRun(results=results, tables=tables, figures=figures, params=params, info=info)
