"""`neurofeat probe` writes its figures into the run folder: ROC curves (pooled and per
site) and the data-fraction curve, each as PNG and SVG."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from report_helpers import FAST, make_probe_store

from neurofeat.runs import probe_run
from neurofeat.store import connect
from neurofeat.tasks import get_task


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_probe_store(tmp_path_factory.mktemp("probe-figures") / "store", n=60, dim=6)


def _check_files(store, run, names):
    assert set(run.info.figures) == set(names)
    for name in names:
        png = (run.info.path / f"{name}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
        root = ET.parse(run.info.path / f"{name}.svg").getroot()
        assert root.tag.endswith("svg")
    stored = connect(store).execute(
        "SELECT to_json(figures) FROM runs WHERE run_id = ?", [run.info.run_id]).fetchone()[0]
    assert sorted(json.loads(stored)) == sorted(names)


def test_probe_writes_roc_and_data_fraction(store):
    run = probe_run(store, "dino", "idh1", fractions=(0.5, 1.0), **FAST)
    _check_files(store, run, ["roc", "data_fraction"])
    roc = run.figures["roc"]
    titles = [ax.get_title() for ax in roc.axes if ax.get_visible()]
    assert titles == ["all sites", "CUIMC", "UCSF", "UPenn"]
    # the pooled legend is the AUC of the repeat-averaged out-of-fold scores
    preds = run.tables["predictions"]
    main = preds[(preds["probe"] == "linear") & (preds["fraction"] == 1.0)]
    scores = main.groupby("patient_id").agg(label=("label", "first"), score=("score", "mean"))
    auc = roc_auc_score(scores["label"], scores["score"])
    legend = roc.axes[0].get_legend().get_texts()[0].get_text()
    assert legend == f"AUC {auc:.3f} (n=60, pos={int(scores['label'].sum())})"
    curve = run.figures["data_fraction"].axes[0]
    line = [ln for ln in curve.get_lines() if ln.get_label() == "dino"][0]
    np.testing.assert_allclose(line.get_xdata(), [50, 100])


def test_probe_without_fractions_writes_only_the_roc(store):
    run = probe_run(store, "dino_dro", "idh1", protocol="loso", fractions=(), knn=False, **FAST)
    _check_files(store, run, ["roc"])


def test_figures_can_be_skipped(store):
    run = probe_run(store, "dino", "idh1", fractions=(0.5, 1.0), knn=False, figures=False,
                    **FAST)
    assert run.figures == {} and run.info.figures == ()
    assert not list(run.info.path.glob("*.png")) and not list(run.info.path.glob("*.svg"))


def test_continuous_task_roc_uses_the_task_threshold(store):
    run = probe_run(store, "dino", "ki67", fractions=(), knn=False, **FAST)
    _check_files(store, run, ["roc"])
    threshold = get_task("ki67").threshold
    values = run.tables["predictions"].drop_duplicates("patient_id")["label"]
    positives = int((values >= threshold).sum())
    legend = run.figures["roc"].axes[0].get_legend().get_texts()[0].get_text()
    assert legend.endswith(f"(n=60, pos={positives})") and 0 < positives < 60
