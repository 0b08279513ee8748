"""The published procedures, asked for by name, still give exactly their old numbers.

The expected tables were written before issue 13 changed the defaults, by
``tests/calibration/data/make_published_v1.py`` (the same inputs are rebuilt here).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from neurofeat.analysis.compare import compare_scores
from neurofeat.analysis.folds import stratified_kfold_plan, survival_kfold_plan
from neurofeat.analysis.paired_tests import DEFAULT_TEST, TEST_CHOICES
from neurofeat.analysis.protocols import OutOfFold, binary_scorers, evaluate_probe
from neurofeat.analysis.scoring import get_scorer
from neurofeat.analysis.survival.compare import compare_survival_scores

DATA = Path(__file__).parent / "data"


def _inputs():
    rng = np.random.default_rng(13)
    n = 90
    ids = np.array([f"P{i:03d}" for i in range(n)])
    y = rng.random(n) < 0.35
    plan = stratified_kfold_plan(ids, y, n_splits=5, n_repeats=3, task="t13", seed=0)
    latent = rng.normal(size=n) + 0.8 * y
    scores = {}
    for k, name in enumerate(["byol", "dino", "byol_dro", "dino_dro"]):
        scores[name] = (0.3 + 0.1 * k) * latent[None] + rng.normal(size=(3, n))
    return ids, y, plan, scores


def _binary(test: str):
    ids, y, plan, scores = _inputs()
    return compare_scores([get_scorer("auc"), get_scorer("ba", 0.0)], y, y, scores,
                          [("byol", "byol_dro"), ("dino", "dino_dro")], plan.fold_ids,
                          task="t13", n_train=72.0, n_test=18.0, n_boot=300, seed=1,
                          side_a="base", side_b="dro", n_folds=5, test=test)


@pytest.mark.parametrize("test", ["auto", "corrected-t", "delong"])
def test_published_tests_reproduce_their_p_values(test):
    old = pd.read_csv(DATA / "published_binary_v1.csv")
    new = _binary(test).to_frame()
    for _, row in old.iterrows():
        match = new[(new["metric"] == row["metric"]) & (new["backbone_a"] == row["backbone_a"])
                    & (new["test"] == row["test"])]
        assert len(match) == 1, row.to_dict()
        assert match["p_value"].iloc[0] == pytest.approx(row["p_value"], rel=1e-12)
        assert match["statistic"].iloc[0] == pytest.approx(row["statistic"], rel=1e-12)


def test_requested_published_test_is_the_primary_row():
    for test, want in [("auto", {"ttest", "wilcoxon"}), ("corrected-t", {"corrected-t"}),
                       ("bootstrap", {"bootstrap"}), (DEFAULT_TEST, {DEFAULT_TEST}),
                       ("fold-t", {"ttest"})]:
        frame = _binary(test).to_frame()
        primary = frame[frame["primary"]]
        # one primary row per pair x metric
        assert len(primary) == frame.groupby(["metric", "backbone_a"]).ngroups
        assert set(primary["test"]) <= want, (test, set(primary["test"]))
    assert set(TEST_CHOICES) >= {"auto", "wilcoxon", "ttest", "fold-t", "corrected-t",
                                 "delong", "bootstrap", DEFAULT_TEST}


def test_delong_primary_falls_back_on_rows_without_delong():
    frame = _binary("delong").to_frame()
    primary = frame[frame["primary"]].set_index(["metric", "backbone_a"])["test"]
    assert primary[("auc", "byol")] == "delong"
    assert primary[("auc", "base")] == DEFAULT_TEST     # pooled row: no DeLong
    assert primary[("ba", "byol")] == DEFAULT_TEST      # no DeLong for BA


def test_bootstrap_row_reproduces_old_estimates_and_intervals():
    old = pd.read_csv(DATA / "published_binary_v1.csv")
    old = old.drop_duplicates(["metric", "backbone_a"]).set_index(["metric", "backbone_a"])
    new = _binary("bootstrap").to_frame()
    new = new[new["test"] == "bootstrap"].set_index(["metric", "backbone_a"])
    cols = ["estimate_a", "ci_low_a", "ci_high_a", "estimate_b", "ci_low_b", "ci_high_b",
            "diff", "diff_ci_low", "diff_ci_high", "diff_bca_low", "diff_bca_high"]
    pd.testing.assert_frame_equal(new.loc[old.index, cols], old[cols], rtol=1e-12,
                                  check_dtype=False)


def test_delong_row_is_one_quantity():
    """Issue 13 item 4: the DeLong row's estimate is the AUC DeLong tests."""
    from neurofeat.analysis.delong import delong_test

    ids, y, plan, scores = _inputs()
    row = _binary("delong").to_frame().query("test == 'delong' and backbone_a == 'byol'")
    ref = delong_test(y, scores["byol"].mean(0), scores["byol_dro"].mean(0))
    assert row["estimate_a"].iloc[0] == pytest.approx(ref.auc_a, rel=1e-12)
    assert row["diff"].iloc[0] == pytest.approx(ref.diff, rel=1e-12)
    assert row["diff_ci_low"].iloc[0] == pytest.approx(ref.diff_ci_low, rel=1e-12)
    assert row["p_value"].iloc[0] == pytest.approx(ref.p_value, rel=1e-12)


def test_published_survival_tests_reproduce():
    old = pd.read_csv(DATA / "published_survival_v1.csv")
    ids = _inputs()[0]
    rng = np.random.default_rng(7)
    n = 90
    time = rng.exponential(size=n)
    event = rng.random(n) < 0.7
    sites = np.where(np.arange(n) < 45, "A", "B")
    plan = survival_kfold_plan(ids, event, n_splits=5, n_repeats=2, task="os", seed=0)
    risk = {nm: (0.2 * k) * -np.log(time)[None] + rng.normal(size=(2, n))
            for k, nm in enumerate(["dino", "dino_dro"])}
    _, tests, _ = compare_survival_scores(risk, time, event, plan.fold_ids,
                                          [("dino", "dino_dro")], sites=sites, task="os",
                                          n_train=72.0, n_test=18.0, n_folds=5, n_boot=200,
                                          seed=3, test="auto")
    for _, row in old.iterrows():
        match = tests[(tests["site"] == row["site"]) & (tests["metric"] == row["metric"])
                      & (tests["test"] == row["test"])]
        assert match["p_value"].iloc[0] == pytest.approx(row["p_value"], rel=1e-12)
        assert match["p_holm"].iloc[0] == pytest.approx(row["p_holm"], rel=1e-12)
    boot = tests[tests["test"] == "bootstrap"].set_index(["site", "metric"])
    first = old.drop_duplicates(["site", "metric"]).set_index(["site", "metric"])
    np.testing.assert_allclose(boot.loc[first.index, "diff_ci_low"], first["diff_ci_low"],
                               rtol=1e-12)


def test_published_probe_metrics_reproduce():
    old = pd.read_csv(DATA / "published_metrics_v1.csv")
    ids, y, plan, scores = _inputs()
    oof = OutOfFold(1 / (1 + np.exp(-scores["dino_dro"])), plan, 1.0,
                    tuple({"n_train": 72, "n_test": 18} for _ in range(15)))
    sites = np.where(np.arange(ids.size) % 3 == 0, "S1", "S2")
    metrics, _ = evaluate_probe(oof, y, sites, scorers=binary_scorers(0.5), n_boot=300, seed=2)
    published = metrics[metrics["ci_method"] != DEFAULT_TEST].reset_index(drop=True)
    np.testing.assert_allclose(published[["estimate", "ci_low", "ci_high"]].to_numpy(float),
                               old[["estimate", "ci_low", "ci_high"]].to_numpy(float),
                               rtol=1e-12)
    assert list(published["ci_method"]) == list(old["ci_method"])
    # the calibrated row is the primary one, one per site x metric
    primary = metrics[metrics["primary"]]
    assert set(primary["ci_method"]) == {DEFAULT_TEST}
    assert len(primary) == metrics.groupby(["site", "metric"]).ngroups
