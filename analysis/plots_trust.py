"""Figures of the trust analyses: invariance scatters, stability curves, calibration,
decision curves and attribution montages.

Every function returns a :class:`matplotlib.figure.Figure` built without pyplot (no
global state, no display needed); :func:`neurofeat.store.write_run` saves it as PNG
and SVG.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

__all__ = [
    "invariance_scatter",
    "invariance_summary",
    "stability_curves",
    "drift_boxplot",
    "reliability_diagram",
    "decision_curve_figure",
    "attribution_montage",
]


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _palette(values: Sequence[str]) -> dict[str, tuple]:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return {v: cmap(i % 10) for i, v in enumerate(values)}


def _scatter(ax, frame: pd.DataFrame, colour_by: str, title: str, max_legend: int = 12) -> None:
    values = frame[colour_by].astype(str)
    levels = sorted(values.unique())
    colours = _palette(levels)
    for level in levels:
        sel = values == level
        ax.scatter(frame.loc[sel, "x"], frame.loc[sel, "y"], s=6, alpha=0.7,
                   color=colours[level], label=level, linewidths=0)
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
    if len(levels) <= max_legend:
        ax.legend(fontsize=6, markerscale=2, loc="best", frameon=False)


def invariance_scatter(coordinates: pd.DataFrame, *, by: str = "site",
                       label: str | None = None) -> object:
    """PCA and t-SNE scatters of every backbone, coloured by site (and by a label).

    Parameters
    ----------
    coordinates : DataFrame
        backbone, patient_id, group, label (optional), method ('pca'/'tsne'), x, y.
    by : str
        What ``group`` holds (title text).
    label : str, optional
        Name of the ``label`` column's variable; adds columns coloured by it (biology
        next to acquisition).

    Returns
    -------
    matplotlib.figure.Figure
        Rows: backbones. Columns: each method coloured by ``by``, then by ``label``.
    """
    backbones = list(dict.fromkeys(coordinates["backbone"]))
    methods = [m for m in ("pca", "tsne") if m in set(coordinates["method"])]
    colourings = [("group", by)] + ([("label", label)] if label else [])
    n_cols = len(methods) * len(colourings)
    fig = _figure(2.4 * n_cols, 2.3 * len(backbones))
    axes = fig.subplots(len(backbones), n_cols, squeeze=False)
    for i, backbone in enumerate(backbones):
        sub = coordinates[coordinates["backbone"] == backbone]
        j = 0
        for column, name in colourings:
            for method in methods:
                frame = sub[sub["method"] == method]
                if column == "label":
                    frame = frame.assign(label=frame["label"].fillna("unknown"))
                _scatter(axes[i, j], frame, column,
                         f"{backbone}: {'PCA' if method == 'pca' else 't-SNE'} by {name}")
                j += 1
    return fig


def invariance_summary(table: pd.DataFrame) -> object:
    """Silhouette, Davies-Bouldin and site-probe accuracy (with its interval) per backbone.

    Parameters
    ----------
    table : DataFrame
        backbone, metric, estimate, ci_low, ci_high, ci_method, chance (the stored
        ``invariance`` table; the primary probe row has ci_method 'corrected-t-kdf').

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig = _figure(9.5, 3.0)
    axes = fig.subplots(1, 3)
    backbones = list(dict.fromkeys(table["backbone"]))
    y = np.arange(len(backbones))
    specs = [("silhouette", "PCA-silhouette (lower = more invariant)"),
             ("davies_bouldin", "Davies-Bouldin (higher = more invariant)"),
             ("site_probe_ba", "site-probe balanced accuracy (chance dashed)")]
    for ax, (metric, title) in zip(axes, specs):
        rows = table[table["metric"] == metric]
        if metric == "site_probe_ba":
            rows = rows[rows["ci_method"] != "percentile"]
        rows = rows.set_index("backbone").reindex(backbones)
        est = rows["estimate"].to_numpy(float)
        ax.scatter(est, y, color="black", zorder=3, s=14)
        low, high = rows["ci_low"].to_numpy(float), rows["ci_high"].to_numpy(float)
        ok = np.isfinite(low) & np.isfinite(high)
        ax.hlines(y[ok], low[ok], high[ok], color="black", lw=1.2)
        if metric == "site_probe_ba":
            chance = rows["chance"].dropna()
            if len(chance):
                ax.axvline(float(chance.iloc[0]), ls="--", color="grey", lw=1)
        ax.set_yticks(y, backbones, fontsize=7)
        ax.set_title(title, fontsize=8)
        ax.invert_yaxis()
    return fig


def stability_curves(table: pd.DataFrame, *, metric: str = "auc") -> object:
    """Metric vs perturbation strength, one panel per perturbation kind.

    Parameters
    ----------
    table : DataFrame
        backbone, kind, strength, metric, estimate, ci_low, ci_high (primary rows; the
        clean baseline carries kind = each kind at its identity strength).
    metric : str

    Returns
    -------
    matplotlib.figure.Figure
    """
    rows = table[table["metric"] == metric]
    kinds = [k for k in dict.fromkeys(rows["kind"]) if k != "none"]
    fig = _figure(3.0 * max(1, len(kinds)), 2.8)
    axes = fig.subplots(1, max(1, len(kinds)), squeeze=False)[0]
    backbones = list(dict.fromkeys(rows["backbone"]))
    colours = _palette(backbones)
    for ax, kind in zip(axes, kinds):
        for backbone in backbones:
            sub = rows[(rows["kind"] == kind) & (rows["backbone"] == backbone)]
            sub = sub.sort_values("strength")
            if sub.empty:
                continue
            x = sub["strength"].to_numpy(float)
            ax.plot(x, sub["estimate"], marker="o", ms=3, color=colours[backbone], label=backbone)
            ax.fill_between(x, sub["ci_low"].to_numpy(float), sub["ci_high"].to_numpy(float),
                            color=colours[backbone], alpha=0.15, lw=0)
        ax.set_title(kind, fontsize=9)
        ax.set_xlabel("strength", fontsize=8)
        ax.set_ylabel(metric, fontsize=8)
        ax.legend(fontsize=6, frameon=False)
    return fig


def drift_boxplot(drift: pd.DataFrame) -> object:
    """Per-patient cosine distance clean vs perturbed, by perturbation and backbone.

    Parameters
    ----------
    drift : DataFrame
        backbone, perturbation, cosine_distance.
    """
    labels = list(dict.fromkeys(drift["perturbation"]))
    backbones = list(dict.fromkeys(drift["backbone"]))
    fig = _figure(max(4.0, 1.1 * len(labels) * len(backbones)), 3.0)
    ax = fig.subplots()
    colours = _palette(backbones)
    width = 0.8 / max(1, len(backbones))
    for b, backbone in enumerate(backbones):
        data = [drift[(drift["backbone"] == backbone) & (drift["perturbation"] == label)]
                ["cosine_distance"].to_numpy(float) for label in labels]
        positions = np.arange(len(labels)) + (b - (len(backbones) - 1) / 2) * width
        parts = ax.boxplot(data, positions=positions, widths=width * 0.9, patch_artist=True,
                           showfliers=False)
        for box in parts["boxes"]:
            box.set_facecolor(colours[backbone])
            box.set_alpha(0.6)
        ax.plot([], [], color=colours[backbone], lw=6, alpha=0.6, label=backbone)
    ax.set_xticks(np.arange(len(labels)), labels, fontsize=7, rotation=30)
    ax.set_ylabel("cosine distance to clean embedding", fontsize=8)
    ax.legend(fontsize=6, frameon=False)
    return fig


def reliability_diagram(bins: pd.DataFrame, *, title: str = "") -> object:
    """Observed vs predicted risk per bin (with Wilson intervals), pooled and per site.

    Parameters
    ----------
    bins : DataFrame
        site, mean_predicted, observed, observed_ci_low, observed_ci_high, n.
    """
    fig = _figure(3.6, 3.4)
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="perfect")
    sites = list(dict.fromkeys(bins["site"]))
    colours = _palette(sites)
    for site in sites:
        sub = bins[bins["site"] == site]
        colour = "black" if site == "all" else colours[site]
        x = sub["mean_predicted"].to_numpy(float)
        y = sub["observed"].to_numpy(float)
        err = np.clip(np.vstack([y - sub["observed_ci_low"].to_numpy(float),
                                 sub["observed_ci_high"].to_numpy(float) - y]), 0.0, None)
        ax.errorbar(x, y, yerr=err, marker="o", ms=3, lw=1.5 if site == "all" else 0.8,
                    color=colour, label=site, capsize=2)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("predicted probability", fontsize=8)
    ax.set_ylabel("observed fraction", fontsize=8)
    ax.set_title(title or "reliability diagram", fontsize=9)
    ax.legend(fontsize=6, frameon=False)
    return fig


def decision_curve_figure(curves: pd.DataFrame, *, title: str = "") -> object:
    """Net benefit vs threshold probability, with treat-all and treat-none.

    Parameters
    ----------
    curves : DataFrame
        site, threshold, net_benefit, net_benefit_all (treat none is 0).
    """
    fig = _figure(4.0, 3.2)
    ax = fig.subplots()
    sites = list(dict.fromkeys(curves["site"]))
    colours = _palette(sites)
    pooled = curves[curves["site"] == ("all" if "all" in sites else sites[0])]
    ax.plot(pooled["threshold"], pooled["net_benefit_all"], color="grey", lw=1, label="treat all")
    ax.axhline(0.0, color="grey", ls=":", lw=1, label="treat none")
    for site in sites:
        sub = curves[curves["site"] == site]
        ax.plot(sub["threshold"], sub["net_benefit"], lw=1.8 if site == "all" else 0.9,
                color="black" if site == "all" else colours[site], label=f"model ({site})")
    prevalence = float(pooled["net_benefit_all"].iloc[0]) if len(pooled) else 0.5
    ax.set_ylim(min(-0.05, -0.1 * abs(prevalence)), max(0.05, 1.1 * max(prevalence, 0.01)))
    ax.set_xlabel("threshold probability", fontsize=8)
    ax.set_ylabel("net benefit", fontsize=8)
    ax.set_title(title or "decision curve", fontsize=9)
    ax.legend(fontsize=6, frameon=False)
    return fig


def _slice(volume: np.ndarray, axis: int, index: int) -> np.ndarray:
    return np.rot90(np.take(volume, index, axis=axis))


def attribution_montage(backgrounds: Mapping[str, np.ndarray], heatmap: np.ndarray, *,
                        centre: Sequence[int] | None = None, mask: np.ndarray | None = None,
                        title: str = "", alpha: float = 0.45) -> object:
    """Axial, coronal and sagittal slices of an attribution map over each background.

    Parameters
    ----------
    backgrounds : mapping name -> ndarray, shape (X, Y, Z)
        Images in RAS-like voxel order (e.g. ``{'T1ce': ..., 'FLAIR': ...}``).
    heatmap : ndarray, shape (X, Y, Z)
        Attribution on the same grid, >= 0.
    centre : 3 ints, optional
        Voxel the slices pass through (default: the heatmap's maximum).
    mask : ndarray of bool, shape (X, Y, Z), optional
        Tumour mask, drawn as a contour.
    alpha : float
        Opacity of the heatmap.

    Returns
    -------
    matplotlib.figure.Figure
        Rows: backgrounds; columns: axial (z), coronal (y), sagittal (x).
    """
    heatmap = np.asarray(heatmap, dtype=float)
    if centre is None:
        centre = np.unravel_index(int(np.nanargmax(heatmap)), heatmap.shape)
    centre = [int(c) for c in centre]
    views = [("axial", 2), ("coronal", 1), ("sagittal", 0)]
    fig = _figure(7.5, 2.6 * len(backgrounds))
    axes = fig.subplots(len(backgrounds), 3, squeeze=False)
    top = float(np.nanmax(heatmap)) or 1.0
    for i, (name, image) in enumerate(backgrounds.items()):
        image = np.asarray(image, dtype=float)
        for j, (view, axis) in enumerate(views):
            ax = axes[i, j]
            ax.imshow(_slice(image, axis, centre[axis]), cmap="gray")
            heat = _slice(heatmap, axis, centre[axis])
            ax.imshow(np.ma.masked_less_equal(heat, 0.05 * top), cmap="jet", alpha=alpha,
                      vmin=0.0, vmax=top)
            if mask is not None and np.asarray(mask).any():
                ax.contour(_slice(np.asarray(mask, float), axis, centre[axis]), levels=[0.5],
                           colors="white", linewidths=0.8)
            ax.set_title(f"{name} {view}", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=9)
    return fig
