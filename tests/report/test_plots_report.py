"""Figure functions of the probe, stats compare and the report (analysis/plots_report.py):
small frames in, matplotlib figures out; the ROC points against scikit-learn."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score, roc_curve

from neurofeat.analysis.plots_report import (average_repeats, data_fraction_figure,
                                             forest_plot, km_panels, roc_figure, roc_points)


def _visible(fig):
    return [ax for ax in fig.axes if ax.get_visible() and ax.get_label() != "<colorbar>"
            and ax.get_title()]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_roc_points_equal_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    labels = rng.random(80) < 0.35
    scores = np.round(rng.normal(size=80) + labels, 1)  # rounded: many ties
    fpr, tpr = roc_points(labels, scores)
    # sklearn.metrics.roc_curve keeps every threshold with drop_intermediate=False
    ref_fpr, ref_tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, ref_fpr, atol=1e-12)
    np.testing.assert_allclose(tpr, ref_tpr, atol=1e-12)
    assert np.trapezoid(tpr, fpr) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_roc_points_need_both_classes():
    with pytest.raises(ValueError, match="needs both classes; got 3 positives and 0 negatives"):
        roc_points(np.ones(3, bool), np.arange(3.0))


def test_average_repeats_is_the_mean_over_repeats():
    frame = pd.DataFrame({"backbone": ["a"] * 4 + ["b"] * 2,
                          "patient_id": ["p1", "p1", "p2", "p2", "p1", "p1"],
                          "site": ["S"] * 6, "label": [1.0, 1.0, 0.0, 0.0, 1.0, 1.0],
                          "repeat": [0, 1, 0, 1, 0, 1],
                          "score": [0.2, 0.4, 0.9, np.nan, 0.5, 0.7]})
    out = average_repeats(frame, keys=["backbone"]).set_index(["backbone", "patient_id"])
    assert out.loc[("a", "p1"), "score"] == pytest.approx(0.3)
    assert out.loc[("a", "p2"), "score"] == pytest.approx(0.9)  # the NaN repeat is left out
    assert out.loc[("b", "p1"), "score"] == pytest.approx(0.6)


def test_roc_figure_pooled_and_per_site_with_the_auc_in_the_legend():
    rng = np.random.default_rng(3)
    n = 90
    frame = pd.DataFrame({"site": np.array(["A", "B", "C"])[np.arange(n) % 3],
                          "label": rng.random(n) < 0.4})
    frame["score"] = rng.normal(size=n) + frame["label"]
    frame = pd.concat([frame.assign(backbone="dino"),
                       frame.assign(backbone="mae", score=rng.normal(size=n))])
    fig = roc_figure(frame, curve="backbone", title="t")
    axes = _visible(fig)
    assert [ax.get_title() for ax in axes] == ["all sites", "A", "B", "C"]
    pooled = axes[0].get_legend().get_texts()
    dino = frame[frame["backbone"] == "dino"]
    assert pooled[0].get_text() == (f"dino AUC {roc_auc_score(dino['label'], dino['score']):.3f} "
                                    f"(n={n}, pos={int(dino['label'].sum())})")
    assert len(axes[1].get_lines()) == 1 + 2  # chance diagonal + one curve per backbone
    with pytest.raises(ValueError, match="at least one scored patient"):
        roc_figure(frame.iloc[:0])


def test_data_fraction_figure_one_line_per_backbone_and_metric():
    rows = [{"backbone": b, "metric": m, "fraction": f, "estimate": 0.6 + f / 10,
             "ci_low": 0.5, "ci_high": 0.8}
            for b in ("dino", "dino_dro") for m in ("auc", "ba") for f in (0.25, 0.5, 1.0)]
    fig = data_fraction_figure(pd.DataFrame(rows))
    axes = fig.axes
    assert [ax.get_ylabel() for ax in axes] == ["AUC", "balanced accuracy"]
    lines = [line for line in axes[0].get_lines() if line.get_label() in ("dino", "dino_dro")]
    assert len(lines) == 2
    np.testing.assert_allclose(lines[0].get_xdata(), [25, 50, 100])
    np.testing.assert_allclose(lines[0].get_ydata(), [0.625, 0.65, 0.7])


def _tests_frame() -> pd.DataFrame:
    rows = []
    for metric in ("auc", "ba"):
        for a, b, pooled in (("dino", "dino_dro", False), ("mae", "mae_dro", False),
                             ("base", "dro", True)):
            for test, primary in (("calibrated-t", True), ("delong", False)):
                rows.append({"task": "idh1", "metric": metric, "site": "all", "protocol": "cv",
                             "backbone_a": a, "backbone_b": b, "pooled": pooled,
                             "diff": -0.05, "diff_ci_low": -0.2, "diff_ci_high": 0.1,
                             "p_value": 0.0004 if pooled else 0.31, "test": test,
                             "primary": primary, "ci_level": 0.95})
    return pd.DataFrame(rows)


def test_forest_plot_draws_the_primary_rows_with_their_p_values():
    fig = forest_plot(_tests_frame(), title="base vs dro")
    main = [ax for ax in fig.axes if ax.get_xlabel()]
    assert len(main) == 2
    labels = [t.get_text() for t in main[0].get_yticklabels()]
    assert labels == ["idh1: dino − dino_dro", "idh1: mae − mae_dro", "idh1: base − dro"]
    assert "difference in AUC (A − B), 95 % interval" == main[0].get_xlabel()
    right = main[0].child_axes[0]  # the secondary y axis with the p-values
    assert [t.get_text() for t in right.get_yticklabels()] == ["p = 0.310", "p = 0.310",
                                                               "p < 0.001"]
    seed = _tests_frame().assign(comparison="seed-reference")
    labels = [t.get_text() for t in forest_plot(seed).axes[0].get_yticklabels()]
    assert labels[0] == "idh1: dino − dino_dro (seed ref.)"
    with pytest.raises(ValueError, match="at least one \\(primary\\) row"):
        forest_plot(_tests_frame().assign(primary=False))


def test_km_panels_from_a_stored_km_table():
    rows = []
    for site in ("all", "B", "A"):
        for group, drop in (("low risk", 0.1), ("high risk", 0.3)):
            for k, time in enumerate((100.0, 200.0, 300.0)):
                rows.append({"site": site, "group": group, "time": time,
                             "survival": (1 - drop) ** (k + 1), "ci_low_95": np.nan,
                             "ci_high_95": 1.0, "n_censored": k % 2})
    fig = km_panels(pd.DataFrame(rows))
    axes = _visible(fig)
    assert [ax.get_title() for ax in axes] == ["all sites", "A", "B"]
    steps = [line for line in axes[0].get_lines() if line.get_label() == "low risk"][0]
    np.testing.assert_allclose(steps.get_xdata(), [0, 100, 200, 300])
    np.testing.assert_allclose(steps.get_ydata(), [1, 0.9, 0.81, 0.729])
    with pytest.raises(ValueError, match="at least one Kaplan-Meier row"):
        km_panels(pd.DataFrame(rows).iloc[:0])
