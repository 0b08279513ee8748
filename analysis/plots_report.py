"""Figures of the probe, the comparisons and the HTML report: ROC curves, data-fraction
curves, forest plots of paired differences and Kaplan-Meier panels from stored tables.

Every function is pure: DataFrames in, a :class:`matplotlib.figure.Figure` out, built
without pyplot (no global state, no display). :func:`neurofeat.store.write_run` saves a
figure as PNG and SVG; the report inlines it as PNG.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from neurofeat.analysis.metrics import roc_auc

__all__ = [
    "roc_points",
    "average_repeats",
    "roc_figure",
    "data_fraction_figure",
    "forest_plot",
    "km_panels",
]

_METRIC_NAMES = {"auc": "AUC", "ba": "balanced accuracy", "harrell_c": "Harrell's C",
                 "uno_c": "Uno's C", "sensitivity": "sensitivity", "specificity": "specificity"}


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _palette(values: Sequence[str]) -> dict[str, tuple]:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return {v: cmap(i % 10) for i, v in enumerate(values)}


def roc_points(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False- and true-positive rates of the ROC curve, one point per distinct score.

    Ties are one step (a diagonal segment), as in :func:`sklearn.metrics.roc_curve`
    with ``drop_intermediate=False``; the curve starts at (0, 0) and ends at (1, 1).

    Parameters
    ----------
    labels : ndarray of bool or {0, 1}, shape (n,)
    scores : ndarray of float, shape (n,)
        Higher = more likely positive.

    Returns
    -------
    fpr, tpr : ndarray, shape (n_distinct_scores + 1,)

    Raises
    ------
    ValueError
        When ``labels`` lacks either class (no ROC curve exists).
    """
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=float)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"an ROC curve needs both classes; got {n_pos} positives and "
                         f"{n_neg} negatives")
    order = np.argsort(-scores, kind="mergesort")
    sorted_scores, sorted_labels = scores[order], labels[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(sorted_scores)), len(scores) - 1]
    tp = np.cumsum(sorted_labels)[last_of_tie]
    fp = (last_of_tie + 1) - tp
    return np.r_[0.0, fp / n_neg], np.r_[0.0, tp / n_pos]


def average_repeats(predictions: pd.DataFrame, keys: Sequence[str] = ()) -> pd.DataFrame:
    """One out-of-fold score per patient: the mean over CV repeats.

    Parameters
    ----------
    predictions : DataFrame
        patient_id, site, label, score and the ``keys`` columns (e.g. backbone, probe),
        one row per patient and repeat (a stored probe ``predictions`` table).
    keys : sequence of str
        Columns that separate curves (kept in the result).

    Returns
    -------
    DataFrame
        ``keys``, patient_id, site, label, score (repeat-averaged).
    """
    columns = [*keys, "patient_id", "site", "label"]
    scored = predictions.dropna(subset=["score"])
    return scored.groupby(columns, sort=False, dropna=False)["score"].mean().reset_index()


def _roc_panel(ax, frame: pd.DataFrame, curve: str | None, title: str) -> None:
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=0.8)
    levels = list(dict.fromkeys(frame[curve])) if curve else [None]
    colours = _palette([str(v) for v in levels])
    for level in levels:
        sub = frame if level is None else frame[frame[curve] == level]
        labels = sub["label"].to_numpy(bool)
        if labels.all() or not labels.any():
            continue
        fpr, tpr = roc_points(labels, sub["score"].to_numpy(float))
        auc = roc_auc(labels.astype(int), sub["score"].to_numpy(float))
        name = "" if level is None else f"{level} "
        ax.plot(fpr, tpr, lw=1.4, color="black" if level is None else colours[str(level)],
                label=f"{name}AUC {auc:.3f} (n={len(sub)}, pos={int(labels.sum())})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_aspect("equal")
    ax.set_xlabel("1 - specificity", fontsize=8)
    ax.set_ylabel("sensitivity", fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=6, frameon=False, loc="lower right")


def roc_figure(scores: pd.DataFrame, *, curve: str | None = None, by_site: bool = True,
               title: str = "") -> object:
    """ROC curves, pooled and (optionally) one panel per site.

    Parameters
    ----------
    scores : DataFrame
        label (bool or 0/1), score, site, and the ``curve`` column when given: one row
        per patient and curve (see :func:`average_repeats`). The AUC in each legend is
        that of these (repeat-averaged) out-of-fold scores.
    curve : str, optional
        Column whose values are drawn as separate curves (e.g. 'backbone').
    by_site : bool
        Add one panel per site after the pooled one.
    title : str

    Returns
    -------
    matplotlib.figure.Figure
        First axis: all sites pooled; then one per site (sorted).

    Raises
    ------
    ValueError
        When ``scores`` is empty.
    """
    if scores.empty:
        raise ValueError("roc_figure needs at least one scored patient")
    sites = sorted(scores["site"].astype(str).unique()) if by_site else []
    panels = [("all sites", scores)] + [(site, scores[scores["site"].astype(str) == site])
                                        for site in sites]
    n = len(panels)
    n_cols = min(n, 4)
    n_rows = int(np.ceil(n / n_cols))
    fig = _figure(3.0 * n_cols, 3.0 * n_rows + (0.3 if title else 0))
    axes = fig.subplots(n_rows, n_cols, squeeze=False).ravel()
    for ax, (name, frame) in zip(axes, panels):
        _roc_panel(ax, frame, curve, name)
    for ax in axes[n:]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def data_fraction_figure(metrics: pd.DataFrame, *, curve: str = "backbone",
                         title: str = "") -> object:
    """Metric against the share of each training fold used (data-fraction curve).

    Parameters
    ----------
    metrics : DataFrame
        fraction, metric, estimate, ci_low, ci_high and the ``curve`` column: the primary
        rows of the ``results`` view for one task, site 'all' (one panel per metric).
    curve : str
        Column whose values are drawn as separate lines (with their interval as a band).
    title : str

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ValueError
        When ``metrics`` is empty.
    """
    if metrics.empty:
        raise ValueError("data_fraction_figure needs at least one row")
    names = list(dict.fromkeys(metrics["metric"]))
    fig = _figure(3.4 * len(names), 2.9 + (0.3 if title else 0))
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    levels = list(dict.fromkeys(metrics[curve].astype(str)))
    colours = _palette(levels)
    for ax, metric in zip(axes, names):
        rows = metrics[metrics["metric"] == metric]
        for level in levels:
            sub = rows[rows[curve].astype(str) == level].sort_values("fraction")
            if sub.empty:
                continue
            x = 100 * sub["fraction"].to_numpy(float)
            ax.plot(x, sub["estimate"].to_numpy(float), marker="o", ms=3, lw=1.3,
                    color=colours[level], label=level)
            ax.fill_between(x, sub["ci_low"].to_numpy(float), sub["ci_high"].to_numpy(float),
                            color=colours[level], alpha=0.15, lw=0)
        if metric in ("auc", "ba"):
            ax.axhline(0.5, ls=":", color="grey", lw=0.8)
        ax.set_xlabel("training data used (% of each training fold)", fontsize=8)
        ax.set_ylabel(_METRIC_NAMES.get(metric, metric), fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def _forest_label(row) -> str:
    sides = f"{row.backbone_a} − {row.backbone_b}"
    extra = [str(v) for v in (getattr(row, "task", None),) if isinstance(v, str)]
    site = getattr(row, "site", "all")
    if isinstance(site, str) and site != "all":
        extra.append(site)
    protocol = getattr(row, "protocol", None)
    if isinstance(protocol, str) and protocol != "cv":
        extra.append(protocol)
    if getattr(row, "comparison", None) == "seed-reference":
        sides += " (seed ref.)"
    return f"{', '.join(extra)}: {sides}" if extra else sides


def forest_plot(tests: pd.DataFrame, *, title: str = "") -> object:
    """Forest plot of paired differences A - B with their intervals, one panel per metric.

    Parameters
    ----------
    tests : DataFrame
        A ``tests`` table of ``stats compare`` (the ``comparisons`` view): backbone_a,
        backbone_b, metric, diff, diff_ci_low, diff_ci_high, p_value, and optionally
        task, site, protocol, pooled, primary, ci_level, comparison ('seed-reference'
        rows are labelled so). When ``primary`` is present only
        the primary (calibrated) rows are drawn; pooled family rows are diamonds.
    title : str

    Returns
    -------
    matplotlib.figure.Figure
        Panels two to a row; rows top to bottom in table order; a dashed line at no
        difference; each row's p-value on the right.

    Raises
    ------
    ValueError
        When no row is left to draw.
    """
    rows = tests
    if "primary" in rows.columns:
        rows = rows[rows["primary"].fillna(False).astype(bool)]
    if rows.empty:
        raise ValueError("forest_plot needs at least one (primary) row of a tests table")
    metrics = list(dict.fromkeys(rows["metric"]))
    n_max = max(int((rows["metric"] == m).sum()) for m in metrics)
    n_cols = min(2, len(metrics))
    n_rows = int(np.ceil(len(metrics) / n_cols))
    fig = _figure(max(4.8, 5.2 * n_cols),
                  n_rows * (0.9 + 0.32 * n_max) + (0.3 if title else 0))
    axes = fig.subplots(n_rows, n_cols, squeeze=False).ravel()
    for ax in axes[len(metrics):]:
        ax.set_visible(False)
    for ax, metric in zip(axes, metrics):
        sub = rows[rows["metric"] == metric].reset_index(drop=True)
        y = np.arange(len(sub))
        low = sub["diff_ci_low"].to_numpy(float)
        high = sub["diff_ci_high"].to_numpy(float)
        diff = sub["diff"].to_numpy(float)
        pooled = (sub["pooled"].fillna(False).astype(bool).to_numpy() if "pooled" in sub
                  else np.zeros(len(sub), bool))
        ok = np.isfinite(low) & np.isfinite(high)
        ax.hlines(y[ok], low[ok], high[ok], color="black", lw=1.2)
        ax.scatter(diff[~pooled], y[~pooled], marker="s", color="black", s=18, zorder=3)
        ax.scatter(diff[pooled], y[pooled], marker="D", color="tab:blue", s=34, zorder=3)
        ax.axvline(0.0, ls="--", color="grey", lw=0.9)
        ax.set_yticks(y, [_forest_label(r) for r in sub.itertuples()], fontsize=7)
        ax.set_ylim(len(sub) - 0.5, -0.5)
        level = sub["ci_level"].dropna() if "ci_level" in sub else pd.Series(dtype=float)
        percent = f"{100 * float(level.iloc[0]):g} %" if len(level) else "95 %"
        ax.set_xlabel(f"difference in {_METRIC_NAMES.get(metric, metric)} (A − B), "
                      f"{percent} interval", fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
        text = ax.secondary_yaxis("right")
        text.set_yticks(y, [("p = n/a" if not np.isfinite(p) else
                             "p < 0.001" if p < 0.001 else f"p = {p:.3f}")
                            for p in sub["p_value"].to_numpy(float)], fontsize=7)
        text.tick_params(length=0)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def km_panels(km: pd.DataFrame, *, title: str = "") -> object:
    """Kaplan-Meier curves from a stored ``km`` table, one panel per site.

    Parameters
    ----------
    km : DataFrame
        site, group, time, survival, ci_low_95, ci_high_95, n_censored (the ``km``
        table of a survival run: median-split risk groups, pooled as site 'all').
    title : str

    Returns
    -------
    matplotlib.figure.Figure
        The pooled panel first, then the sites; censoring as ticks.

    Raises
    ------
    ValueError
        When ``km`` is empty.
    """
    if km.empty:
        raise ValueError("km_panels needs at least one Kaplan-Meier row")
    sites = list(dict.fromkeys(km["site"].astype(str)))
    sites = (["all"] if "all" in sites else []) + sorted(s for s in sites if s != "all")
    n_cols = min(len(sites), 4)
    n_rows = int(np.ceil(len(sites) / n_cols))
    fig = _figure(3.2 * n_cols, 2.7 * n_rows + (0.3 if title else 0))
    axes = fig.subplots(n_rows, n_cols, squeeze=False).ravel()
    groups = sorted(km["group"].astype(str).unique())
    colours = dict(zip(groups, ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e")))
    for ax, site in zip(axes, sites):
        rows = km[km["site"].astype(str) == site]
        for group in groups:
            sub = rows[rows["group"].astype(str) == group].sort_values("time")
            if sub.empty:
                continue
            x = np.r_[0.0, sub["time"].to_numpy(float)]
            y = np.r_[1.0, sub["survival"].to_numpy(float)]
            colour = colours.get(group, "black")
            ax.step(x, y, where="post", color=colour, lw=1.4, label=group)
            low = np.r_[1.0, np.nan_to_num(sub["ci_low_95"].to_numpy(float), nan=0.0)]
            high = np.r_[1.0, np.nan_to_num(sub["ci_high_95"].to_numpy(float), nan=1.0)]
            ax.fill_between(x, low, high, step="post", color=colour, alpha=0.12, lw=0)
            censored = sub["n_censored"].to_numpy(float) > 0
            ax.plot(x[1:][censored], y[1:][censored], ls="none", marker="|", ms=6,
                    color=colour)
        ax.set_ylim(-0.02, 1.05)
        ax.set_title("all sites" if site == "all" else site, fontsize=9)
        ax.set_xlabel("time (days)", fontsize=8)
        ax.set_ylabel("survival probability", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6, frameon=False)
    for ax in axes[len(sites):]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig
