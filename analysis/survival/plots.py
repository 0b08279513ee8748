"""Kaplan–Meier figures with censoring ticks, a numbers-at-risk table and the log-rank p.

Figures are built on :class:`matplotlib.figure.Figure` with the Agg canvas (no pyplot
state, no display needed). ``save_figure`` writes PNG and SVG side by side; the CLI
passes the figure to ``write_run`` which does the same inside the store.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from neurofeat.analysis.survival.kaplan_meier import KaplanMeierResult
from neurofeat.analysis.survival.logrank import LogRankResult

__all__ = ["plot_km", "save_figure"]

_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


def _format_p(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def plot_km(
    curves: Sequence[KaplanMeierResult],
    *,
    logrank: LogRankResult | None = None,
    title: str = "",
    time_unit: str = "days",
    at_risk_times: Sequence[float] | None = None,
    show_ci: bool = True,
):
    """Kaplan–Meier plot of one or more groups.

    Parameters
    ----------
    curves : sequence of KaplanMeierResult
        One per group (``label`` names the group in the legend and the risk table).
    logrank : LogRankResult, optional
        Printed on the plot (chi-squared, df, p).
    title : str
    time_unit : str
        X-axis unit label.
    at_risk_times : sequence of float, optional
        Times of the numbers-at-risk table (default: the x ticks).
    show_ci : bool
        Shade the pointwise confidence band.

    Returns
    -------
    matplotlib.figure.Figure
        Two axes: the curves (``fig.axes[0]``) and the numbers-at-risk table
        (``fig.axes[1]``).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not curves:
        raise ValueError("plot_km needs at least one Kaplan-Meier curve")
    n_groups = len(curves)
    fig = Figure(figsize=(7.0, 5.2 + 0.25 * n_groups))
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(2, 1, height_ratios=[4.0, 0.6 + 0.35 * n_groups], hspace=0.28)
    ax = fig.add_subplot(grid[0])
    table = fig.add_subplot(grid[1], sharex=ax)
    t_max = max(float(c.time.max()) for c in curves)
    for k, km in enumerate(curves):
        colour = _COLOURS[k % len(_COLOURS)]
        x = np.concatenate([[0.0], km.time])
        y = np.concatenate([[1.0], km.survival])
        label = f"{km.label or 'all'} (n={km.n}, events={km.n_event_total})"
        ax.step(x, y, where="post", color=colour, lw=1.8, label=label)
        if show_ci:
            low = np.concatenate([[1.0], np.nan_to_num(km.ci_low, nan=0.0)])
            high = np.concatenate([[1.0], np.nan_to_num(km.ci_high, nan=0.0)])
            ax.fill_between(x, low, high, step="post", color=colour, alpha=0.15, lw=0)
        censored = km.n_censored > 0
        ax.plot(km.time[censored], km.survival[censored], linestyle="none", marker="|",
                markersize=9, markeredgewidth=1.4, color=colour)
    ax.set_ylim(-0.02, 1.05)
    ax.set_xlim(0, t_max * 1.02)
    ax.set_ylabel("Survival probability")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=8, frameon=False,
              title="| = censored", title_fontsize=8)
    if logrank is not None:
        ax.text(0.02, 0.04, f"log-rank χ² = {logrank.statistic:.2f} (df {logrank.df}), "
                f"{_format_p(logrank.p_value)}", transform=ax.transAxes, fontsize=9)
    if title:
        ax.set_title(title)
    ax.tick_params(labelbottom=False)
    ticks = np.asarray(at_risk_times if at_risk_times is not None else
                       [t for t in ax.get_xticks() if 0 <= t <= t_max * 1.02], float)
    table.set_xticks(ticks)
    table.set_xlim(ax.get_xlim())
    table.set_ylim(-0.5, n_groups - 0.5)
    table.set_yticks(range(n_groups))
    table.set_yticklabels([c.label or "all" for c in reversed(curves)], fontsize=8)
    for k, km in enumerate(curves):
        row = n_groups - 1 - k
        for t, count in zip(ticks, km.at_risk(ticks)):
            table.text(t, row, str(int(count)), ha="center", va="center", fontsize=8,
                       color=_COLOURS[k % len(_COLOURS)])
    for side in ("top", "right", "left"):
        table.spines[side].set_visible(False)
    table.tick_params(axis="y", length=0, pad=14)
    table.set_xlabel(f"Time ({time_unit})")
    table.set_title("Number at risk", fontsize=8, loc="left", pad=4)
    return fig


def save_figure(fig, path_stem: str | Path) -> tuple[Path, Path]:
    """Write ``<stem>.png`` and ``<stem>.svg``; returns both paths."""
    stem = Path(path_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    png, svg = stem.with_suffix(".png"), stem.with_suffix(".svg")
    fig.savefig(png, dpi=150, bbox_inches="tight")
    fig.savefig(svg, bbox_inches="tight")
    return png, svg
