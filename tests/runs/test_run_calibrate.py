"""`calibrate_run`: declared tables, pooled and per-site rows, named errors."""

from __future__ import annotations

import numpy as np
import pytest

from trust_helpers import check_stored, make_probe_store

from neurofeat.runs import calibrate_run

FAST = dict(n_splits=3, n_repeats=1, n_boot=50)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_probe_store(tmp_path_factory.mktemp("cal") / "store", n=90, dim=8)


def test_calibrate_run_writes_declared_tables(store):
    run = calibrate_run(store, "dino", "idh1", **FAST)
    check_stored(run.info, "calibrate", run.tables)
    assert set(run.info.figures) == {"reliability", "decision_curve"}
    cal = run.tables["calibration"]
    assert list(cal["site"]) == ["all", "CUIMC", "UCSF", "UPenn"]
    assert (cal["probe"] == "linear").all() and cal["checkpoint_sha256"].notna().all()
    pooled = run.calibration["all"]
    assert pooled.n == 90 and np.isfinite(pooled.slope)
    preds = run.tables["predictions"]
    assert len(preds) == 90 and preds["probability"].between(0, 1).all()
    curve = run.tables["decision_curve"]
    assert len(curve[curve["site"] == "all"]) == 99


def test_balanced_probe_is_labelled(store):
    run = calibrate_run(store, "dino", "idh1", balanced=True, write=False, **FAST)
    assert (run.tables["calibration"]["probe"] == "linear-balanced").all()
    assert run.params["class_weight"] == "balanced"


@pytest.mark.parametrize(("backbone", "task", "match"), [
    ("dino", "ki67", "task 'ki67' is continuous .* calibrate needs a binary task"),
    ("dino", "os", "survival task; calibrate needs a binary task"),
    ("dinoo", "idh1", "unknown backbone 'dinoo'"),
])
def test_named_errors(store, backbone, task, match):
    with pytest.raises(ValueError, match=match):
        calibrate_run(store, backbone, task, write=False, **FAST)
