"""The planted site shortcut: acquisition predicts the marker at the training sites only."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from neurofeat.synth import generate_cohort, simulate_tables
from neurofeat.synth.labels import TRAITS
from neurofeat.synth.shortcut import Shortcut, draw_scanners, scanner_protocol
from neurofeat.synth.tumour import SEQUENCES


def test_scanner_auc_follows_the_stated_rule():
    """At strength s the scanner alone ranks the marker with AUC 1/2 + s/2 at the
    training sites and 1/2 - s/2 at the held-out site (large n, no images)."""
    s = 0.6
    tables = simulate_tables(20000, n_sites=3, seed=2, shortcut=Shortcut(s, ("mgmt",)))
    truth = tables.truth
    for role, expected in (("train", 0.5 + s / 2), ("held_out", 0.5 - s / 2)):
        rows = truth[truth["shortcut_role"] == role]
        auc = roc_auc_score(rows["mgmt_true"], rows["scanner"] == "B")
        assert auc == pytest.approx(expected, abs=0.02), role  # s.e. about 0.007 at the held-out site
    assert set(truth.loc[truth["shortcut_role"] == "held_out", "site"]) == {"siteC"}


def test_the_shortcut_changes_nothing_causal():
    plain = simulate_tables(300, n_sites=3, seed=4).truth
    planted = simulate_tables(300, n_sites=3, seed=4, shortcut=Shortcut(0.8, ("idh1", "mgmt"))).truth
    same = [c for c in plain.columns if c not in ("scanner", "p_scanner_b", "shortcut_role")]
    assert plain[same].equals(planted[same])
    assert (plain["scanner"] == "A").all() and (plain["shortcut_role"] == "none").all()
    assert (planted["scanner"] == "B").mean() == pytest.approx(0.5, abs=0.1)


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match=r"shortcut strength is 1.2; use a value in \[0, 1\)"):
        Shortcut(1.2)
    with pytest.raises(ValueError, match="shortcut markers \\['idh2'\\]: use one or more of idh1"):
        Shortcut(0.5, ("idh2",))
    truth = simulate_tables(30, n_sites=2, seed=0).truth
    with pytest.raises(ValueError, match="held-out site 'siteZ' is not one of the cohort's sites"):
        draw_scanners(truth, Shortcut(0.5, held_out_site="siteZ"), np.random.default_rng(0))


def test_scanner_b_differs_after_z_scoring():
    protocol = simulate_tables(10, n_sites=1, seed=0).protocols[0]
    variant = scanner_protocol(protocol, "B", Shortcut(0.5))
    assert scanner_protocol(protocol, "A", Shortcut(0.5)) is protocol
    assert all(variant.gamma[q] > protocol.gamma[q] for q in protocol.gamma)
    assert variant.noise_std > protocol.noise_std and variant.gibbs_alpha > protocol.gibbs_alpha


def _acquisition_features(cohort, patient_id: str) -> np.ndarray:
    """Acquisition-only image statistics: intensity quantiles of z-scored normal brain
    and a high-frequency noise estimate per sequence (no tumour feature)."""
    seg = np.asarray(nib.load(cohort.image_path(patient_id, "seg")).dataobj)
    features = []
    for sequence in SEQUENCES:
        image = np.asarray(nib.load(cohort.image_path(patient_id, sequence)).dataobj, float)
        brain = image > 0
        z = (image - image[brain].mean()) / image[brain].std()
        normal = brain & (seg == 0)
        features += list(np.quantile(z[normal], [0.05, 0.25, 0.5, 0.75, 0.95]))
        interior = normal[1:-1, 1:-1, 1:-1]
        laplace = (6 * z[1:-1, 1:-1, 1:-1] - z[2:, 1:-1, 1:-1] - z[:-2, 1:-1, 1:-1]
                   - z[1:-1, 2:, 1:-1] - z[1:-1, :-2, 1:-1] - z[1:-1, 1:-1, 2:] - z[1:-1, 1:-1, :-2])
        features.append(laplace[interior].std())
    return np.asarray(features)


@pytest.mark.slow
def test_acquisition_probe_fails_at_the_held_out_site_trait_probe_does_not(tmp_path):
    cohort = generate_cohort(tmp_path / "cohort", n=120, n_sites=3, seed=3, size=32, spacing=6.0,
                             shortcut=Shortcut(0.9, ("idh1",)))
    truth = cohort.truth
    y = truth["idh1_true"].to_numpy(bool)
    train = (truth["shortcut_role"] == "train").to_numpy()
    acquisition = np.stack([_acquisition_features(cohort, p) for p in truth["patient_id"]])
    traits = truth[list(TRAITS)].to_numpy(float)
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    aucs = {}
    for name, X in (("acquisition", acquisition), ("traits", traits)):
        probe = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
        inside = cross_val_predict(probe, X[train], y[train], cv=folds, method="decision_function")
        outside = probe.fit(X[train], y[train]).decision_function(X[~train])
        aucs[name] = (roc_auc_score(y[train], inside), roc_auc_score(y[~train], outside))
    # acquisition: good in distribution, worse than chance at the held-out site
    assert aucs["acquisition"][0] > 0.75 and aucs["acquisition"][1] < 0.4, aucs
    # the causal phenotype transfers
    assert aucs["traits"][0] > 0.85 and aucs["traits"][1] > 0.85, aucs
    card = json.loads((cohort.root / "synth.json").read_text())["shortcut"]
    rows = {r["site"]: r for r in card["expected_auc"]}
    assert rows["siteC"]["role"] == "held_out" and rows["siteC"]["auc_spurious_only"] < 0.3
    assert rows["siteA"]["auc_spurious_only"] > 0.8 and rows["siteC"]["auc_causal_only"] > 0.85
    oracle = (cohort.root / "oracle_traits.csv").read_text().splitlines()
    assert oracle[0] == ",".join(["patient_id", *TRAITS]) and len(oracle) == 121


def test_cli_plants_and_reports_the_shortcut(tmp_path):
    from typer.testing import CliRunner

    from neurofeat.cli import app

    out = tmp_path / "c"
    args = ["synth", "--out", str(out), "--n", "30", "--size", "16", "--spacing", "8", "--jobs", "1"]
    res = CliRunner().invoke(app, [*args, "--shortcut", "0.8", "--shortcut-markers", "idh1"])
    assert res.exit_code == 0, res.output
    assert "planted shortcut (strength 0.8)" in res.output and "held_out" in res.output
    card = json.loads((out / "synth.json").read_text())["shortcut"]
    assert card["settings"]["markers"] == ["idh1"]
    res = CliRunner().invoke(app, [*args, "--overwrite", "--shortcut", "1.5"])
    assert res.exit_code == 1 and "shortcut strength is 1.5" in res.output
