"""`neurofeat invariance | calibrate | stability | explain` through typer's CliRunner."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runs"))
from trust_helpers import make_probe_store  # noqa: E402

from neurofeat.cli import app  # noqa: E402

runner = CliRunner()


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli_trust") / "store"
    make_probe_store(path, n=60, dim=8)
    return str(path)


def invoke(*args):
    return runner.invoke(app, list(args), env={"COLUMNS": "200"})


def test_invariance_table_and_json(store_path):
    result = invoke("invariance", "--backbone", "dino", "--backbone", "dino_dro", "--no-tsne",
                    "--folds", "3", "--bootstrap", "50", "--store", store_path)
    assert result.exit_code == 0, result.output
    assert "dino_dro" in result.output and "site-invariant" in result.output
    assert "wrote run invariance-" in result.output
    result = invoke("invariance", "--backbone", "mae", "--no-tsne", "--folds", "3",
                    "--bootstrap", "50", "--json", "--store", store_path)
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert {r["metric"] for r in payload["invariance"]} == {"silhouette", "davies_bouldin",
                                                             "site_probe_ba"}


def test_invariance_user_error(store_path):
    result = invoke("invariance", "--backbone", "dinoo", "--store", store_path)
    assert result.exit_code == 1
    assert "unknown backbone 'dinoo'" in result.output


def test_calibrate_table_and_json(store_path):
    result = invoke("calibrate", "--backbone", "dino", "--task", "idh1", "--folds", "3",
                    "--repeats", "1", "--bootstrap", "50", "--store", store_path)
    assert result.exit_code == 0, result.output
    assert "calibration slope" in result.output.lower() or "slope" in result.output
    assert "treat all" in result.output and "wrote run calibrate-" in result.output
    result = invoke("calibrate", "--backbone", "dino", "--task", "idh1", "--folds", "3",
                    "--repeats", "1", "--bootstrap", "50", "--json", "--store", store_path)
    payload = json.loads(result.output)
    assert payload["calibration"][0]["site"] == "all"


def test_calibrate_continuous_task_is_a_user_error(store_path):
    result = invoke("calibrate", "--backbone", "dino", "--task", "ki67", "--store", store_path)
    assert result.exit_code == 1
    assert "continuous" in result.output and "binary task" in result.output


def test_stability_cli(tmp_path):
    from test_run_stability import add_perturbations

    path = tmp_path / "store"
    store = make_probe_store(path, n=60, dim=8, backbones=("dino", "mae"))
    add_perturbations(store, "dino")
    result = invoke("stability", "--backbone", "dino", "--task", "idh1", "--folds", "3",
                    "--repeats", "1", "--bootstrap", "50", "--store", str(path))
    assert result.exit_code == 0, result.output
    assert "gibbs-0.4" in result.output and "wrote run stability-" in result.output
    result = invoke("stability", "--backbone", "mae", "--task", "idh1", "--store", str(path))
    assert result.exit_code == 1
    assert "has no perturbed embeddings" in result.output
