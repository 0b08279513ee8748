"""Figures of a pretraining run: the loss curve (objective and per-group loss per epoch,
and Group-DRO's q from its uniform start) and the learning curve (probe scores of the
encoder's embeddings per epoch)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["plot_learning_curve", "plot_loss_curve"]


def plot_loss_curve(history: list[dict[str, Any]], out_stem: Path, *, title: str = "") -> list[Path]:
    """Objective and per-group loss per epoch (and q when it varies) -> PNG + SVG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    groups = list(history[0]["group_loss"]) if history else []
    with_q = any(len({round(v, 9) for v in h["q"].values()}) > 1 for h in history)
    fig, axes = plt.subplots(1, 2 if with_q else 1, figsize=(10 if with_q else 6, 4), squeeze=False)
    ax = axes[0, 0]
    ax.plot(epochs, [h["loss"] for h in history], color="black", linewidth=2, label="objective")
    if len(groups) > 1:
        for g in groups:
            ax.plot(epochs, [h["group_loss"].get(g, float("nan")) for h in history], linewidth=1, label=g)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title(title or "pretraining loss")
    ax.legend(fontsize=7)
    if with_q:
        ax_q = axes[0, 1]
        uniform = 1.0 / len(groups)
        for g in groups:  # q starts uniform before the first step
            ax_q.plot([0, *epochs], [uniform, *(h["q"].get(g, float("nan")) for h in history)], marker=".",
                      label=g)
        ax_q.axhline(uniform, color="grey", linewidth=0.8, linestyle=":")
        ax_q.set_xlabel("epoch")
        ax_q.set_ylabel("Group-DRO weight q")
        ax_q.set_title("group weights")
        ax_q.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, out_stem)


def plot_learning_curve(curve: list[dict[str, Any]], out_stem: Path, *, panels: list[tuple[str, str, float | None]],
                        title: str = "") -> list[Path]:
    """Probe scores per epoch -> PNG + SVG.

    Parameters
    ----------
    curve : list of dict
        ``{"epoch": k, key: value, ...}`` per evaluated epoch (epoch 0 = untrained).
    out_stem : Path
        Written as ``<stem>.png`` and ``<stem>.svg``.
    panels : list of (key, label, reference)
        One panel per key of *curve*; *reference* (e.g. chance) is drawn as a dotted
        line when not None.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [int(c["epoch"]) for c in curve]
    fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(4.5 * max(1, len(panels)), 3.6), squeeze=False)
    for ax, (key, label, reference) in zip(axes[0], panels):
        ax.plot(epochs, [c.get(key, float("nan")) for c in curve], marker="o", color="black")
        if reference is not None:
            ax.axhline(reference, color="grey", linestyle=":", linewidth=1, label=f"reference {reference:.2f}")
            ax.legend(fontsize=7)
        ax.set_xlabel("epoch (0 = untrained)")
        ax.set_ylabel(label)
        ax.set_title(label)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, out_stem)


def _save(fig, out_stem: Path) -> list[Path]:
    """Write ``fig`` as PNG and SVG next to ``out_stem``, close it, return the paths."""
    import matplotlib.pyplot as plt

    paths = []
    for suffix in (".png", ".svg"):
        path = out_stem.with_suffix(suffix)
        fig.savefig(path, dpi=120)
        paths.append(path)
    plt.close(fig)
    return paths
