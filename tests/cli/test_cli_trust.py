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


def test_explain_cli(tmp_path):
    pytest.importorskip("torch")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "extract"))
    from extract_helpers import make_backbone, make_store

    import numpy as np
    import pyarrow as pa

    from neurofeat.store import append_embeddings, new_run_id, write_tables

    store, ids = make_store(tmp_path, n=6)
    make_backbone(tmp_path / "models", "tiny")
    write_tables(store, {"clinical": pa.table({"patient_id": ids,
                                               "idh1": [i % 2 == 0 for i in range(6)]})})
    from neurofeat.runs import explain_run  # noqa: F401 - the run layer resolves the checkpoint
    from neurofeat.extract.backbone import resolve_extraction_backbone

    backbone = resolve_extraction_backbone("tiny", models_dir=tmp_path / "models")
    X = np.random.default_rng(0).normal(size=(6, backbone.embedding_dim)).astype(np.float32)
    append_embeddings(store, "tiny", ids, X, checkpoint_sha256=backbone.checkpoint_sha256,
                      preprocess_sha256=backbone.preprocess_sha256, run_id=new_run_id("extract"))
    append_embeddings(store, "radiomics", ids, X[:, :5], checkpoint_sha256="ab" * 32,
                      preprocess_sha256="cd" * 32)
    base = ["--task", "idh1", "--store", str(store.root), "--models-dir", str(tmp_path / "models")]
    result = invoke("explain", "--backbone", "tiny", "--patient", "P001", "--random-maps", "20",
                    *base)
    assert result.exit_code == 0, result.output
    assert "gradcam" in result.output and "NIfTI" in result.output
    assert "wrote run explain-" in result.output
    result = invoke("explain", "--backbone", "radiomics", "--patient", "P001", *base)
    assert result.exit_code == 1 and "no image encoder to explain" in result.output
    result = invoke("explain", "--backbone", "tiny", "--patient", "P001", "--method", "lime",
                    *base)
    assert result.exit_code == 1 and "--method must be one of gradcam, occlusion" in result.output
