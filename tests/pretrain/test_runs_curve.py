"""`pretrain_run(curve_every=...)` on a tiny store: the pretrain_curve table as declared,
the figures in the backbone directory and the run folder, and the errors before training."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")
synth = pytest.importorskip("neurofeat.synth")

from typer.testing import CliRunner  # noqa: E402

from neurofeat.cli import app  # noqa: E402
from neurofeat.runs.pretrain import CURVE_FILES, pretrain_config, pretrain_run  # noqa: E402
from neurofeat.store import Store, connect  # noqa: E402
from neurofeat.store.schema import run_table_schema  # noqa: E402

pytestmark = [pytest.mark.torch, pytest.mark.slow]


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("curve")
    synth.generate_cohort(root / "cohort", n=12, n_sites=2, size=32, spacing=6.0, write_segmentation=False)
    done = CliRunner().invoke(app, ["ingest", "--manifest", str(root / "cohort" / "manifest.csv"),
                                    "--clinical", str(root / "cohort" / "clinical.csv"), "--store", str(root / "S")])
    assert done.exit_code == 0, done.output
    return root


def _tiny(**changes):
    values = dict(arch="resnet10", widen_factor=0.25, input_size=32, spacing=6.0, epochs=1, batch_size=4, lr=1e-3,
                  method_params={"proj_hidden_dim": 64, "proj_dim": 32}, device="cpu")
    values.update(changes)
    return pretrain_config("simclr", **values)


def _task_with_both_classes(store, folds):
    from neurofeat.store import read_labels

    for task in ("mgmt", "idh1", "grade4"):
        try:
            y = read_labels(store, task).y_binary
        except ValueError:  # a task this tiny cohort lacks
            continue
        if min(int(y.sum()), int((1 - y).sum())) >= folds:
            return task
    pytest.skip("no task with enough patients of both classes in the tiny cohort")


def test_curve_table_and_figures(store_dir):
    store = Store.open(store_dir / "S")
    task = _task_with_both_classes(store, 3)
    run = pretrain_run(_tiny(), store=store, models_dir=store_dir / "models", curve_every=1, curve_task=task,
                       curve_folds=3)
    curve = run.tables["pretrain_curve"]
    declared = [n for n in run_table_schema("pretrain", "pretrain_curve").names
                if n not in ("run_id", "neurofeat_version", "created_at")]
    assert list(curve.columns) == declared
    assert sorted(curve["epoch"].unique().tolist()) == [0, 1]
    assert set(curve["metric"]) == {"auc", "site_ba"}
    site = curve[curve["metric"] == "site_ba"]
    assert (site["chance"] == 0.5).all() and site["n"].eq(12).all()  # two sites
    auc = curve[curve["metric"] == "auc"]
    assert auc["task"].eq(task).all() and auc["estimate"].between(0, 1).all()
    assert (curve["checkpoint_sha256"] == run.result.checkpoint_sha256).all()
    for name in CURVE_FILES + ("loss_curve.png",):
        assert (run.result.path / name).stat().st_size > 0
        assert (run.info.path / name).stat().st_size > 0
    con = connect(store_dir / "S")
    try:
        stored = con.execute("SELECT epoch, metric, estimate FROM run_pretrain_curve ORDER BY epoch, metric").df()
    finally:
        con.close()
    assert len(stored) == len(curve)
    assert run.params["curve_every"] == 1 and run.params["curve_task"] == task


def test_curve_errors_come_before_training(store_dir, tmp_path):
    store = Store.open(store_dir / "S")
    runs_before = sorted(p.name for p in (store_dir / "S").glob("runs/*"))
    with pytest.raises(ValueError, match="survival task"):
        pretrain_run(_tiny(), store=store, out=tmp_path / "a", curve_every=1, curve_task="os")
    with pytest.raises(ValueError, match="needs at least 50 of each"):
        pretrain_run(_tiny(), store=store, out=tmp_path / "b", curve_every=1, curve_folds=50)
    with pytest.raises(ValueError, match="--curve-every needs the store's labels"):
        pretrain_run(_tiny(), manifest=store_dir / "cohort" / "manifest.csv", out=tmp_path / "c", curve_every=1)
    assert not any((tmp_path / name).exists() for name in "abc")
    assert sorted(p.name for p in (store_dir / "S").glob("runs/*")) == runs_before


def test_cli_prints_the_curve_and_names_the_views(store_dir):
    task = _task_with_both_classes(Store.open(store_dir / "S"), 3)
    done = CliRunner().invoke(app, [
        "pretrain", "--method", "byol", "--store", str(store_dir / "S"), "--out", str(store_dir / "models" / "b"),
        "--arch", "resnet10", "--widen-factor", "0.25", "--input-size", "32", "--spacing", "6", "--epochs", "1",
        "--batch-size", "4", "--lr", "1e-3", "--param", "proj_hidden_dim=64", "--device", "cpu", "--no-progress",
        "--curve-every", "1", "--curve-task", task, "--curve-folds", "3"])
    assert done.exit_code == 0, done.output
    assert "learning curve" in done.output and "site_ba" in done.output
    assert "run_pretrain_curve" in done.output
    assert (store_dir / "models" / "b" / "learning_curve.svg").exists()
