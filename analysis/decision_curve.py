"""Decision-curve analysis: net benefit of acting on a model against treat-all/treat-none.

At a threshold probability ``t`` (the risk at which a clinician would act, e.g. biopsy
or start a treatment), a patient is treated when the predicted probability is
``>= t``. Net benefit (Vickers & Elkin 2006)::

    NB_model(t) = TP / n - FP / n * t / (1 - t)
    NB_all(t)   = prev - (1 - prev) * t / (1 - t)     (treat everyone)
    NB_none(t)  = 0                                    (treat no one)

A model is useful at ``t`` when its net benefit exceeds both references.

Examples
--------
>>> import numpy as np
>>> y = np.array([1, 1, 0, 0, 1, 0, 0, 0, 1, 0], bool)
>>> p = np.array([.9, .7, .6, .2, .4, .1, .3, .8, .55, .05])
>>> curve = net_benefit(y, p, thresholds=[0.5])
>>> round(float(curve.net_benefit[0]), 3)   # TP = 3, FP = 2: 3/10 - 2/10 * 1
0.1
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["DEFAULT_THRESHOLDS", "DecisionCurve", "net_benefit"]

#: Threshold probabilities 0.01, 0.02, ..., 0.99.
DEFAULT_THRESHOLDS: tuple[float, ...] = tuple(np.round(np.arange(1, 100) / 100, 2).tolist())


@dataclass(frozen=True, eq=False)
class DecisionCurve:
    """Net benefit of a model and of the two default strategies at each threshold.

    Attributes
    ----------
    thresholds : ndarray, shape (m,)
    net_benefit, net_benefit_all, net_benefit_none : ndarray, shape (m,)
    true_positives, false_positives : ndarray of int, shape (m,)
    n : int
    prevalence : float
    """

    thresholds: np.ndarray
    net_benefit: np.ndarray
    net_benefit_all: np.ndarray
    net_benefit_none: np.ndarray
    true_positives: np.ndarray
    false_positives: np.ndarray
    n: int
    prevalence: float

    def useful_range(self) -> tuple[float, float] | None:
        """Smallest and largest threshold where the model beats treat-all and treat-none."""
        better = self.net_benefit > np.maximum(self.net_benefit_all, self.net_benefit_none)
        if not better.any():
            return None
        return float(self.thresholds[better].min()), float(self.thresholds[better].max())

    def summary(self) -> str:
        """Where the model adds net benefit."""
        span = self.useful_range()
        where = (f"thresholds {span[0]:.2f}-{span[1]:.2f}" if span
                 else "no threshold")
        return (f"decision curve (n={self.n}, prevalence {self.prevalence:.3f}): the model "
                f"beats treat-all and treat-none at {where}")

    def to_frame(self) -> pd.DataFrame:
        """threshold, n, true_positives, false_positives, net_benefit, net_benefit_all,
        net_benefit_none."""
        return pd.DataFrame({
            "threshold": self.thresholds, "n": self.n, "true_positives": self.true_positives,
            "false_positives": self.false_positives, "net_benefit": self.net_benefit,
            "net_benefit_all": self.net_benefit_all, "net_benefit_none": self.net_benefit_none})


def net_benefit(y: np.ndarray, p: np.ndarray,
                thresholds: Sequence[float] | None = None) -> DecisionCurve:
    """Net benefit of treating patients with ``p >= t``, at each threshold ``t``.

    Parameters
    ----------
    y : ndarray of bool or 0/1, shape (n,)
    p : ndarray of float, shape (n,)
        Predicted probabilities.
    thresholds : sequence of float in (0, 1), optional
        Default :data:`DEFAULT_THRESHOLDS`.

    Returns
    -------
    DecisionCurve

    Raises
    ------
    ValueError
        A threshold outside (0, 1), labels not binary, mismatched shapes.

    References
    ----------
    .. [1] Vickers AJ, Elkin EB. Decision curve analysis: a novel method for evaluating
       prediction models. Med Decis Making 2006;26:565-574.
    """
    from neurofeat.analysis.calibration import check_binary_predictions

    y, p = check_binary_predictions(y, p)
    t = np.asarray(DEFAULT_THRESHOLDS if thresholds is None else thresholds, dtype=np.float64)
    if t.ndim != 1 or ((t <= 0) | (t >= 1)).any():
        raise ValueError("thresholds must lie strictly between 0 and 1")
    n = y.size
    treat = p[None, :] >= t[:, None]
    tp = (treat & y[None, :]).sum(axis=1)
    fp = (treat & ~y[None, :]).sum(axis=1)
    odds = t / (1 - t)
    prevalence = float(y.mean())
    return DecisionCurve(
        thresholds=t, net_benefit=tp / n - fp / n * odds,
        net_benefit_all=prevalence - (1 - prevalence) * odds,
        net_benefit_none=np.zeros_like(t), true_positives=tp.astype(np.int64),
        false_positives=fp.astype(np.int64), n=int(n), prevalence=prevalence)
