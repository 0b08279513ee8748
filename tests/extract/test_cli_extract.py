"""`neurofeat extract` through typer's CliRunner."""

from __future__ import annotations

import json
import os

import pytest

pytestmark = pytest.mark.torch
torch = pytest.importorskip("torch")
pytest.importorskip("monai")
from typer.testing import CliRunner  # noqa: E402

from neurofeat.cli import app  # noqa: E402
from neurofeat.store import StoreLock, connect  # noqa: E402

runner = CliRunner()


def _run(*args):
    return runner.invoke(app, ["extract", *map(str, args)])


def test_extract_then_rerun_is_a_no_op(cohort):
    store, models = cohort["store"], cohort["models"]
    result = _run("--backbone", "tiny", "--models-dir", models, "--store", store.root, "--workers", "0",
                  "--no-progress", "--perturb", "none,bias:0.2")
    assert result.exit_code == 0, result.output
    assert "extract tiny" in result.output
    con = connect(store)
    assert con.execute("SELECT count(*) FROM embeddings").fetchone()[0] == 12
    again = _run("--backbone", "tiny", "--models-dir", models, "--store", store.root, "--workers", "0", "--no-progress")
    assert again.exit_code == 0
    assert connect(store).execute("SELECT count(*) FROM embeddings").fetchone()[0] == 12
    # the run summary is written to the store, with the threads the encoder ran on
    assert list((store.root / "runs").glob("extract-*/run.json"))
    threaded = _run("--backbone", "tiny", "--models-dir", models, "--store", store.root, "--workers", "0",
                    "--no-progress", "--threads", "1", "--perturb", "contrast:1.2")
    assert threaded.exit_code == 0, threaded.output
    params = [json.loads(p.read_text()).get("params", {}) for p in (store.root / "runs").glob("extract-*/run.json")]
    assert {p.get("threads") for p in params if p.get("perturbations") == ["contrast-1.2"]} == {1}


def test_failures_exit_nonzero_unless_allowed(cohort):
    store, models = cohort["store"], cohort["models"]
    from neurofeat.extract.dataset import load_patient_records

    record = load_patient_records(store, ("t1ce",), ["P005"])[0]
    os.unlink(record["t1ce"])
    result = _run("--backbone", "tiny", "--models-dir", models, "--store", store.root, "--workers", "0", "--no-progress")
    assert result.exit_code == 1
    assert "1 patient(s) failed" in result.output and "--allow-failures" in result.output
    assert "P005" in result.output and "Traceback" not in result.output
    assert connect(store).execute("SELECT count(*) FROM embeddings").fetchone()[0] == 5
    allowed = _run("--backbone", "tiny", "--models-dir", models, "--store", store.root, "--workers", "0",
                   "--no-progress", "--allow-failures")
    assert allowed.exit_code == 0 and "accepted (--allow-failures)" in allowed.output


def test_lock_message(cohort):
    store, models = cohort["store"], cohort["models"]
    holder = StoreLock(store.locks_dir / "extract-tiny.lock", "x").acquire()
    try:
        result = _run("--backbone", "tiny", "--models-dir", models, "--store", store.root, "--workers", "0")
    finally:
        holder.release()
    assert result.exit_code == 1
    assert "extraction of backbone 'tiny'" in result.output and "is already running" in result.output
    assert "Traceback" not in result.output


def test_dry_run_writes_nothing(cohort):
    store, models = cohort["store"], cohort["models"]
    result = _run("--backbone", "tiny", "--models-dir", models, "--store", store.root, "--dry-run")
    assert result.exit_code == 0, result.output
    assert "would extract 6 [none]" in result.output and "OK: nothing was written" in result.output
    assert not store.embeddings_dir.exists() or not list(store.embeddings_dir.rglob("*.parquet"))


@pytest.mark.parametrize(
    "args, message",
    [
        (["--backbone", "tny"], "no backbone 'tny'"),
        (["--backbone", "tiny", "--perturb", "gibbs:3"], "perturbation 'gibbs:3' is out of range"),
        (["--backbone", "tiny", "--adapter", "brainiac"], "--adapter needs --checkpoint PATH"),
        (["--backbone", "tiny", "--input-size", "64"], "--input-size/--spacing only apply to --checkpoint"),
        (["--backbone", "tiny", "--device", "tpu"], "--device must be auto, cpu or cuda"),
    ],
)
def test_user_errors_are_clean(cohort, args, message):
    result = _run(*args, "--models-dir", cohort["models"], "--store", cohort["store"].root)
    assert result.exit_code == 1
    assert message in result.output and "Traceback" not in result.output


def test_external_checkpoint_through_adapter(cohort, tmp_path):
    from monai.networks.nets import resnet10
    from safetensors.torch import save_file

    store = cohort["store"]
    net = resnet10(spatial_dims=3, n_input_channels=1, widen_factor=0.25, conv1_t_stride=2)
    path = tmp_path / "ext.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    result = _run("--checkpoint", path, "--adapter", "monai-resnet", "--adapter-option", "conv1_stride=2",
                  "--input-size", "32", "--spacing", "2", "--store", store.root, "--workers", "0", "--no-progress")
    assert result.exit_code == 0, result.output
    rows = connect(store).execute(
        "SELECT backbone, count(*), any_value(len(embedding)) FROM embeddings GROUP BY backbone").fetchall()
    assert rows == [("monai-resnet", 6, 128)]
