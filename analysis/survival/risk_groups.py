"""High/low risk groups split at the TRAINING fold's median risk.

BrainIAC and NeuroRAD-FM split patients into high- and low-risk groups at the median
predicted risk. The threshold must come from the patients the model was trained on:
the median of the training fold's (in-sample) risk scores. Using the test fold's own
median would force a 50/50 split of every test fold and leak information; this module
never looks at the test scores when choosing the threshold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["MedianSplit", "median_split", "RISK_GROUP_LABELS"]

RISK_GROUP_LABELS = ("low risk", "high risk")


@dataclass(frozen=True, eq=False)
class MedianSplit:
    """Risk groups of test patients from a training-set threshold.

    Attributes
    ----------
    threshold : float
        Median of the training risk scores.
    high_risk : ndarray of bool, shape (n_test,)
        True where the test risk is strictly above the threshold.
    n_train : int
    """

    threshold: float
    high_risk: np.ndarray
    n_train: int

    @property
    def labels(self) -> np.ndarray:
        """``'high risk'`` / ``'low risk'`` per test patient."""
        return np.where(self.high_risk, RISK_GROUP_LABELS[1], RISK_GROUP_LABELS[0])

    def summary(self) -> str:
        """Threshold and group sizes."""
        return (f"median split at {self.threshold:.4g} (training median, n_train="
                f"{self.n_train}): {int(self.high_risk.sum())} high / "
                f"{int((~self.high_risk).sum())} low risk")

    def to_frame(self) -> pd.DataFrame:
        """One row per test patient: high_risk, risk_group."""
        return pd.DataFrame({"high_risk": self.high_risk, "risk_group": self.labels})


def median_split(train_risk: np.ndarray, test_risk: np.ndarray) -> MedianSplit:
    """Split test patients at the median of the training risk scores.

    Parameters
    ----------
    train_risk : ndarray, shape (n_train,)
        Risk scores of the training patients (from the model fitted on them).
    test_risk : ndarray, shape (n_test,)

    Returns
    -------
    MedianSplit
        ``high_risk = test_risk > median(train_risk)``.

    Raises
    ------
    ValueError
        Empty or non-finite training scores.

    Examples
    --------
    >>> median_split([1, 2, 3, 4], [0.0, 2.6, 10]).high_risk.tolist()
    [False, True, True]
    """
    train_risk = np.asarray(train_risk, dtype=np.float64).reshape(-1)
    test_risk = np.asarray(test_risk, dtype=np.float64).reshape(-1)
    if train_risk.size == 0 or not np.isfinite(train_risk).all():
        raise ValueError("training risk scores must be non-empty and finite")
    threshold = float(np.median(train_risk))
    return MedianSplit(threshold=threshold, high_risk=test_risk > threshold,
                       n_train=int(train_risk.size))
