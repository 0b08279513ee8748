"""The loss curve of a pretraining run: objective and per-group loss per epoch (and q)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["plot_loss_curve"]


def plot_loss_curve(history: list[dict[str, Any]], out_stem: Path, *, title: str = "") -> list[Path]:
    """Objective and per-group loss per epoch (and q when it varies) -> PNG + SVG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    groups = list(history[0]["group_loss"]) if history else []
    with_q = any(len(set(round(v, 9) for v in h["q"].values())) > 1 for h in history)
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
        for g in groups:
            ax_q.plot(epochs, [h["q"].get(g, float("nan")) for h in history], label=g)
        ax_q.set_xlabel("epoch")
        ax_q.set_ylabel("Group-DRO weight q")
        ax_q.set_title("group weights")
        ax_q.legend(fontsize=7)
    fig.tight_layout()
    paths = []
    for suffix in (".png", ".svg"):
        path = out_stem.with_suffix(suffix)
        fig.savefig(path, dpi=120)
        paths.append(path)
    plt.close(fig)
    return paths
