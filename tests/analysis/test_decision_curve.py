"""Decision-curve net benefit (analysis/decision_curve.py)."""

from __future__ import annotations

import numpy as np
import pytest

from neurofeat.analysis.decision_curve import net_benefit

# Hand-worked example: 10 patients, 4 with the outcome.
Y = np.array([1, 1, 0, 0, 1, 0, 0, 0, 1, 0], bool)
P = np.array([0.9, 0.7, 0.6, 0.2, 0.4, 0.1, 0.3, 0.8, 0.55, 0.05])


@pytest.mark.parametrize(("t", "tp", "fp"), [
    # treated: p >= t
    (0.25, 4, 3),   # 0.9 .7 .6 .4 .3 .8 .55 -> outcome: 1 1 0 1 0 0 1
    (0.5, 3, 2),    # 0.9 .7 .6 .8 .55
    (0.75, 1, 1),   # 0.9 .8
])
def test_net_benefit_equals_the_formula_by_hand(t, tp, fp):
    curve = net_benefit(Y, P, thresholds=[t])
    assert curve.true_positives[0] == tp and curve.false_positives[0] == fp
    # NB = TP/n - FP/n * t/(1-t)
    assert curve.net_benefit[0] == pytest.approx(tp / 10 - fp / 10 * t / (1 - t), rel=1e-12)
    # treat all: prevalence - (1 - prevalence) * t/(1-t), prevalence 0.4
    assert curve.net_benefit_all[0] == pytest.approx(0.4 - 0.6 * t / (1 - t), rel=1e-12)
    assert curve.net_benefit_none[0] == 0.0


def test_hand_values():
    curve = net_benefit(Y, P, thresholds=[0.25, 0.5, 0.75])
    assert curve.net_benefit.tolist() == pytest.approx([0.4 - 0.3 / 3, 0.1, 0.1 - 0.1 * 3])
    assert curve.net_benefit_all.tolist() == pytest.approx([0.2, -0.2, -1.4])


def test_perfect_model_reaches_prevalence_and_useful_range():
    y = np.arange(100) < 30
    p = np.where(y, 0.99, 0.01)
    curve = net_benefit(y, p)
    inside = curve.thresholds > 0.01
    assert curve.net_benefit[inside] == pytest.approx(0.3)
    assert curve.useful_range() == (pytest.approx(0.02), pytest.approx(0.99))
    frame = curve.to_frame()
    assert len(frame) == 99 and {"net_benefit", "net_benefit_all"} <= set(frame.columns)
    assert "beats treat-all" in curve.summary()


def test_thresholds_must_be_inside_zero_one():
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        net_benefit(Y, P, thresholds=[0.0, 0.5])
