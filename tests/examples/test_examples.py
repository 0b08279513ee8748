"""examples/ runs as a researcher would run it, on a tiny synthetic cohort.

The commands of examples/README.md run word for word, chained as a real user chains
them and sharing one store (module fixtures): a BraTS-style folder with a hospital
sheet is ingested through mapping.toml (brats_folder/run.sh), an external checkpoint is
extracted through the monai-resnet adapter (external_checkpoint.py), radiomics-like
features are imported and probed (import_features.py), and the Python API runs probe,
compare and survival (python_api.py). The SQL notebooks (sql_duckdb.py, sql_polars.py)
also run in this process with every neurofeat module blocked, so that their matrices
and tables can be checked. Numbers are checked against the synthetic cohort's own
clinical.csv, nibabel and the store's catalog. multi_gpu_torchrun.sh runs only with 2+
CUDA GPUs; its syntax is checked everywhere.
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"

SCRIPTS = ["brats_folder/make_brats_folder.py", "external_checkpoint.py", "import_features.py",
           "python_api.py", "sql_duckdb.py", "sql_polars.py"]


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    # the venv's `neurofeat` and `python` first, as after `pip install -e .`
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["PYTHON"] = sys.executable
    env.pop("NEUROFEAT_STORE", None)
    env.pop("NEUROFEAT_CONFIG", None)
    env.update(extra)
    return env


def _run(command: list[str], cwd: Path, *, timeout: float = 300, **env: str) -> str:
    done = subprocess.run(command, check=False, cwd=cwd, env=_env(**env), capture_output=True, text=True,
                          timeout=timeout)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{' '.join(command)} exited {done.returncode}:\n{output}"
    return output


def _python(script: str, *args: str, cwd: Path, **env: str) -> str:
    return _run([sys.executable, str(EXAMPLES / script), *args], cwd, **env)


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _readme_command(script: str) -> str:
    """The one ```bash block of examples/README.md that runs ``script``."""
    text = (EXAMPLES / "README.md").read_text()
    blocks = re.findall(r"^```bash\n(.*?)^```$", text, flags=re.MULTILINE | re.DOTALL)
    found = [b for b in blocks if f"examples/{script}" in b]
    assert len(found) == 1, f"examples/README.md should hold one command block for {script}"
    return found[0]


def _run_readme_command(script: str, work: Path) -> str:
    """Run examples/README.md's command for ``script`` word for word, from ``work``."""
    return _run(["bash", "-euo", "pipefail", "-c", _readme_command(script)], work)


# ------------------------------------------------------------------------ fixtures
# The chain of examples/README.md, its commands run word for word from one directory
# in which examples/ is this repository's (the README says: run from the root).
@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("examples")
    (work / "examples").symlink_to(EXAMPLES, target_is_directory=True)
    return work


@pytest.fixture(scope="module")
def brats(work) -> dict:
    """examples/brats_folder/run.sh: synth -> BraTS tree + hospital sheet -> ingest."""
    output = _run_readme_command("brats_folder/run.sh", work)
    root = work / "brats-example"
    return {"root": root, "store": root / "store", "output": output}


@pytest.fixture(scope="module")
def extracted(work, brats) -> dict:
    output = _run_readme_command("external_checkpoint.py", work)
    return {"checkpoint": brats["root"] / "monai_resnet10.safetensors", "output": output}


@pytest.fixture(scope="module")
def imported(work, brats, extracted) -> dict:
    output = _run_readme_command("import_features.py", work)
    return {"table": brats["root"] / "features.csv", "output": output}


@pytest.fixture()
def neurofeat_blocked(monkeypatch):
    """Make every `import neurofeat...` fail, as on a machine without neurofeat."""
    for name in [m for m in sys.modules if m == "neurofeat" or m.startswith("neurofeat.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "neurofeat", None)


def _notebook(script: str, argv: list[str], monkeypatch) -> dict:
    """Run a `# %%` notebook-as-script in this process; return its globals."""
    monkeypatch.setattr(sys, "argv", [script, *argv])
    return runpy.run_path(str(EXAMPLES / script), run_name="__main__")


# --------------------------------------------------------------------------- tests
@pytest.mark.parametrize("script", SCRIPTS)
def test_every_script_has_help(script, tmp_path):
    output = _python(script, "--help", cwd=tmp_path)
    assert output.startswith("usage:"), output
    assert "--store" in output or "--cohort" in output
    assert not list(tmp_path.iterdir()), "--help must not write anything"


def test_examples_readme_has_a_paragraph_and_a_command_per_example():
    text = (EXAMPLES / "README.md").read_text()
    for name in [*SCRIPTS, "brats_folder/mapping.toml", "brats_folder/run.sh",
                 "multi_gpu_torchrun.sh"]:
        assert Path(name).name in text, f"examples/README.md does not mention {name}"
        assert (EXAMPLES / name).is_file(), name


@pytest.mark.slow
def test_brats_folder_is_ingested_through_the_mapping(brats):
    from neurofeat.store import Store, connect

    root = brats["root"]
    # the tree is BraTS 2021 as re-released in 2023: <id>/<id>-t1n.nii.gz, -t1c, -t2w, -t2f
    folder = root / "brats" / "images" / "BraTS-GLI-00001-000"
    assert sorted(p.name for p in folder.iterdir()) == [
        f"BraTS-GLI-00001-000-{s}.nii.gz" for s in ("t1c", "t1n", "t2f", "t2w")]
    con = connect(Store.open(brats["store"]))
    assert con.sql("SELECT count(*) FROM patients").fetchall() == [(30,)]
    scans = con.sql("SELECT sequence, path FROM scans WHERE patient_id = 'BraTS-GLI-00001-000' "
                    "ORDER BY sequence").fetchall()
    assert [(s, Path(p).name[-10:]) for s, p in scans] == [
        ("flair", "t2f.nii.gz"), ("t1", "t1n.nii.gz"), ("t1ce", "t1c.nii.gz"), ("t2", "t2w.nii.gz")]

    # every mapped value equals the synthetic cohort's canonical one
    sheet = {r["Subject ID (BraTS)"]: r for r in _read_csv(root / "brats" / "clinical.csv")}
    truth = {r["patient_id"]: r for r in _read_csv(root / "cohort" / "clinical.csv")}
    stored = con.sql("SELECT * FROM clinical ORDER BY patient_id").df()
    assert len(stored) == 30
    relative = 0
    for row in stored.itertuples():
        sheet_row = sheet[row.patient_id]
        true = truth[sheet_row["Original synthetic id"]]
        assert row.site == true["site"]
        assert row.sex == true["sex"] and row.grade == int(true["grade"])
        assert row.age == pytest.approx(float(true["age"]))
        for marker in ("idh1", "mgmt", "codel_1p19q", "os_event"):
            value = getattr(row, marker)
            if marker == "codel_1p19q" and sheet_row["1p/19q (FISH)"] == "relative co-deletion":
                relative += 1
                assert pd.isna(value), "relative co-deletion reads as unknown"
                continue
            expected = {"true": True, "false": False, "": None}[true[marker]]
            assert (None if pd.isna(value) else bool(value)) == expected, (
                row.patient_id, marker)
        # weeks (3 decimals) back to days: within 7 * 0.0005
        assert row.os_days == pytest.approx(float(true["os_days"]), abs=0.004)
    assert relative > 0, "the sheet should exercise the 'unknown' words of mapping.toml"
    idh_words = {r["IDH1/2 (sequencing)"] for r in sheet.values()}
    assert "IDH1 p.R132C" in idh_words  # a value only mapping.toml knows


@pytest.mark.slow
def test_the_mapping_is_needed(brats, tmp_path):
    from typer.testing import CliRunner

    from neurofeat.cli import app

    root = brats["root"] / "brats"
    result = CliRunner().invoke(app, ["ingest", "--discover", str(root / "images"),
                                      "--clinical", str(root / "clinical.csv"),
                                      "--store", str(tmp_path / "S"), "--dry-run"])
    assert result.exit_code == 1
    assert "no patient id column" in result.output and "--mapping" in result.output


@pytest.mark.slow
@pytest.mark.torch
def test_external_checkpoint_is_extracted_through_the_adapter(brats, extracted):
    from safetensors import safe_open

    from neurofeat.store import Store, connect

    checkpoint = extracted["checkpoint"]
    with safe_open(str(checkpoint), "pt") as handle:  # a real safetensors file, MONAI keys
        keys = set(handle.keys())
    assert {"conv1.weight", "layer4.0.conv1.weight", "fc.weight"} <= keys
    sha = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    con = connect(Store.open(brats["store"]))
    rows = con.sql("SELECT count(*), count(DISTINCT patient_id), min(len(embedding)), "
                   "max(len(embedding)), min(checkpoint_sha256), max(checkpoint_sha256) "
                   "FROM embeddings WHERE backbone = 'monai_resnet10'").fetchall()
    # resnet10 at widen 0.25: 512 * 0.25 = 128 dimensions
    assert rows == [(30, 30, 128, 128, sha, sha)]
    assert "OK: nothing was written" in extracted["output"]  # the dry run came first


@pytest.mark.slow
@pytest.mark.torch
def test_imported_features_match_nibabel_and_are_probed(brats, imported):
    import nibabel as nib

    from neurofeat.store import Store, connect, read_xy

    table = _read_csv(imported["table"])
    assert len(table) == 30 and len(table[0]) == 1 + 4 * 7
    store = Store.open(brats["store"])
    # an independent recomputation of one feature from the NIfTI file
    first = table[0]
    path = connect(store).sql(
        f"SELECT path FROM scans WHERE patient_id = '{first['patient_id']}' "
        "AND sequence = 't1ce'").fetchall()[0][0]
    volume = np.asarray(nib.load(path).dataobj, dtype=np.float64)
    assert float(first["t1ce_mean"]) == pytest.approx(volume[volume != 0].mean(), rel=1e-9)
    assert float(first["t1ce_p90"]) == pytest.approx(np.percentile(volume[volume != 0], 90))
    # stored as a backbone, column for column
    data = read_xy(store, "myfeatures", "idh1")
    by_id = {r["patient_id"]: r for r in table}
    expected = np.array([[float(v) for k, v in by_id[p].items() if k != "patient_id"]
                         for p in data.patient_ids], dtype=np.float32)
    np.testing.assert_allclose(data.X, expected, rtol=1e-6)
    probed = connect(store).sql(
        "SELECT count(*) FROM results WHERE backbone = 'myfeatures' AND task = 'idh1' "
        "AND command = 'probe' AND \"primary\" AND metric = 'auc' AND site = 'all'").fetchall()
    assert probed == [(1,)]


@pytest.mark.slow
@pytest.mark.torch
@pytest.mark.usefixtures("imported", "neurofeat_blocked")
def test_sql_duckdb_notebook_reads_the_store_without_neurofeat(brats, monkeypatch, capsys):
    g = _notebook("sql_duckdb.py", ["--store", str(brats["store"]),
                                    "--backbone", "monai_resnet10"], monkeypatch)
    _check_notebook(g, brats, monkeypatch, rows=g["prevalence"].fetchall(),
                    results=g["results"].df(), sites=list(g["sites"]), ids=list(g["rows"]["patient_id"]))
    assert "nearest neighbours of BraTS-GLI-00001-000" in capsys.readouterr().out
    neighbours = g["neighbours"].fetchall()
    assert len(neighbours) == 5 and all(-1 <= c <= 1.0001 for _, _, c in neighbours)


@pytest.mark.slow
@pytest.mark.torch
@pytest.mark.usefixtures("imported", "neurofeat_blocked")
def test_sql_polars_notebook_reads_the_store_without_neurofeat(brats, monkeypatch):
    import polars as pl

    try:
        g = _notebook("sql_polars.py", ["--store", str(brats["store"]),
                                        "--backbone", "monai_resnet10"], monkeypatch)
    finally:
        pl.Config.restore_defaults()
    _check_notebook(g, brats, monkeypatch, rows=g["prevalence"].rows(),
                    results=g["results"].to_pandas(), sites=g["frame"]["site"].to_list(),
                    ids=g["frame"]["patient_id"].to_list())


@pytest.mark.slow
@pytest.mark.torch
@pytest.mark.usefixtures("imported")
def test_sql_notebooks_readme_command(work):
    output = _run_readme_command("sql_duckdb.py", work)
    assert output.count("monai_resnet10: X (30, 128) float32, idh1 positives") == 2, output


def _check_notebook(g: dict, brats: dict, monkeypatch, *, rows, results, sites, ids) -> None:
    monkeypatch.undo()  # neurofeat again, to check the notebook against the catalog
    from neurofeat.store import Store, connect, read_xy

    store = Store.open(brats["store"])
    con = connect(store)
    expected = con.sql("SELECT site, count(*), count(idh1) FROM clinical GROUP BY site "
                       "ORDER BY site").fetchall()
    assert [tuple(r[:3]) for r in rows] == expected
    data = read_xy(store, "monai_resnet10", "idh1")
    order = np.argsort(data.patient_ids)
    assert ids == sorted(ids) == list(data.patient_ids[order])
    np.testing.assert_array_equal(g["X"], data.X[order])
    np.testing.assert_array_equal(g["y"], data.y[order])
    assert sites == list(data.sites[order])
    primary = con.sql("SELECT backbone, metric, estimate FROM results WHERE \"primary\" "
                      "AND site = 'all' ORDER BY backbone, metric").fetchall()
    got = sorted(zip(results["backbone"], results["metric"], results["estimate"]))
    assert [(b, m) for b, m, _ in got] == [(b, m) for b, m, _ in primary]
    np.testing.assert_allclose([e for *_, e in got], [e for *_, e in primary], atol=5e-4)


@pytest.mark.slow
@pytest.mark.torch
@pytest.mark.usefixtures("imported")
def test_python_api_walkthrough(work, brats):
    # 30 patients hold too few IDH1-wild-type grade-4 cases for the built-in `os` task:
    # the README's command defines a cohort-wide one in brats-example/neurofeat.toml
    out = _run_readme_command("python_api.py", work)
    for line in ("read_xy('monai_resnet10', 'idh1'): X (30, 128) float32",
                 "probe_run -> probe-", "compare_run -> stats-compare-", "survival_run -> survival-"):
        assert line in out, out

    from neurofeat.store import Store, connect

    con = connect(Store.open(brats["store"]))
    compared = con.sql("SELECT DISTINCT backbone_a, backbone_b, task FROM comparisons").fetchall()
    assert compared == [("monai_resnet10", "myfeatures", "idh1")]
    survived = con.sql("SELECT metric FROM results WHERE command = 'survival' AND task = 'os_all' "
                       "AND \"primary\" AND site = 'all' ORDER BY metric").fetchall()
    assert ("harrell_c",) in survived and ("uno_c",) in survived


def test_multi_gpu_script_is_valid_bash():
    script = EXAMPLES / "multi_gpu_torchrun.sh"
    done = subprocess.run(["bash", "-n", str(script)], check=False, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    text = script.read_text()
    assert "torchrun --standalone --nproc-per-node" in text
    assert "-m neurofeat pretrain" in text and "-m neurofeat extract" in text


def _gpus() -> int:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return 0
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


@pytest.mark.slow
@pytest.mark.torch
@pytest.mark.skipif(_gpus() < 2 or shutil.which("nvidia-smi") is None,
                    reason="needs CUDA with at least 2 GPUs")
def test_multi_gpu_torchrun(brats, tmp_path):  # pragma: no cover - GPU machines only
    store = tmp_path / "store"
    shutil.copytree(brats["store"], store)
    tiny = "--arch resnet10 --widen-factor 0.25 --input-size 16 --spacing 8 --epochs 1 --no-progress"
    output = _run(["bash", str(EXAMPLES / "multi_gpu_torchrun.sh"), str(store), "2"], tmp_path,
                  PRETRAIN_ARGS=tiny, EXTRACT_ARGS="--no-progress",
                  NEUROFEAT_MODELS=str(tmp_path / "models"))
    from neurofeat.store import Store, connect

    rows = connect(Store.open(store)).sql(
        "SELECT count(*), count(DISTINCT patient_id) FROM embeddings "
        "WHERE backbone = 'dino_dro'").fetchall()
    assert rows == [(30, 30)], output
