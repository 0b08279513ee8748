"""Freeze the published procedures' numbers (before issue 13) for the reproduction test."""
import numpy as np, pandas as pd
from neurofeat.analysis.compare import compare_scores
from neurofeat.analysis.folds import stratified_kfold_plan, survival_kfold_plan
from neurofeat.analysis.scoring import get_scorer
from neurofeat.analysis.survival.compare import compare_survival_scores

def inputs():
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

ids, y, plan, scores = inputs()
res = compare_scores([get_scorer("auc"), get_scorer("ba", 0.0)], y, y, scores,
                     [("byol", "byol_dro"), ("dino", "dino_dro")], plan.fold_ids, task="t13",
                     n_train=72.0, n_test=18.0, n_boot=300, seed=1, side_a="base", side_b="dro",
                     n_folds=5)
res.to_frame().to_csv("tests/calibration/data/published_binary_v1.csv", index=False)
print(res.to_frame()[["metric","backbone_a","test","p_value","diff","diff_ci_low"]])
rng = np.random.default_rng(7)
n = 90
time = rng.exponential(size=n); event = rng.random(n) < 0.7
sites = np.where(np.arange(n) < 45, "A", "B")
splan = survival_kfold_plan(ids, event, n_splits=5, n_repeats=2, task="os", seed=0)
risk = {nm: (0.2 * k) * -np.log(time)[None] + rng.normal(size=(2, n)) for k, nm in enumerate(["dino", "dino_dro"])}
_, tests, _ = compare_survival_scores(risk, time, event, splan.fold_ids, [("dino", "dino_dro")],
                                       sites=sites, task="os", n_train=72.0, n_test=18.0,
                                       n_folds=5, n_boot=200, seed=3)
tests.to_csv("tests/calibration/data/published_survival_v1.csv", index=False)
print(tests[["site","metric","test","p_value","diff"]])

from neurofeat.analysis.protocols import OutOfFold, evaluate_probe, binary_scorers
ids, y, plan, scores = inputs()
oof = OutOfFold(1 / (1 + np.exp(-scores["dino_dro"])), plan, 1.0,
                tuple({"n_train": 72, "n_test": 18} for _ in range(15)))
sites_b = np.where(np.arange(ids.size) % 3 == 0, "S1", "S2")
metrics, _ = evaluate_probe(oof, y, sites_b, scorers=binary_scorers(0.5), n_boot=300, seed=2)
metrics.to_csv("tests/calibration/data/published_metrics_v1.csv", index=False)
print(metrics.head(8))
