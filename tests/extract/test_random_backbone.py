"""The random-init reference backbone: deterministic per seed, provenance, options; and the
end to end of issue 14's reference backbones (synth -> ingest -> extract radiomics and
random -> probe)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from extract_helpers import make_store
from neurofeat.extract.backbone import ExtractionError, random_backbone, state_dict_sha256
from neurofeat.extract.encoders import EncoderConfig, build_encoder
from neurofeat.extract.preprocess import PreprocessConfig
from neurofeat.runs.extract import BackboneSource, extract_run

TINY = {"arch": "resnet10", "widen_factor": 0.25, "input_size": 16, "spacing": 3.0}


def _stored(store, backbone: str):
    files = sorted((Path(store.root) / "embeddings" / f"backbone={backbone}" / "perturbation=none").glob("*.parquet"))
    table = pq.read_table(files).sort_by("patient_id")
    meta = json.loads(pq.read_schema(files[0]).metadata[b"neurofeat"])
    return table, np.stack(table["embedding"].to_numpy(zero_copy_only=False)), meta


def test_same_seed_same_weights_other_seed_other_weights():
    pre = PreprocessConfig(input_size=16, spacing=3.0)
    a = random_backbone(arch="resnet10", widen_factor=0.25, preprocess=pre, seed=0)
    b = random_backbone(arch="resnet10", widen_factor=0.25, preprocess=pre, seed=0)
    c = random_backbone(arch="resnet10", widen_factor=0.25, preprocess=pre, seed=1)
    assert a.checkpoint_sha256 == b.checkpoint_sha256 != c.checkpoint_sha256
    for (name, x), (_, y) in zip(a.encoder.state_dict().items(), b.encoder.state_dict().items()):
        assert torch.equal(x, y), name
    assert not torch.equal(a.encoder.conv1.weight, c.encoder.conv1.weight)
    # the hash is of the weights: MONAI's network built under the same seed by hand hashes alike
    torch.manual_seed(0)
    by_hand = build_encoder(EncoderConfig(arch="resnet10", widen_factor=0.25, input_size=16, spacing=(3.0,) * 3))
    assert state_dict_sha256(by_hand) == a.checkpoint_sha256
    assert (a.source, a.architecture["init"], a.architecture["seed"]) == ("random:resnet10:0", "random", 0)
    assert a.embedding_dim == 128 and a.preprocess == pre


def test_building_leaves_the_global_random_state_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    random_backbone(arch="resnet10", widen_factor=0.25, preprocess=PreprocessConfig(input_size=16), seed=7)
    assert torch.equal(torch.rand(3), expected)


def test_state_dict_hash_sees_every_tensor():
    encoder = build_encoder(EncoderConfig(arch="resnet10", widen_factor=0.25, input_size=16))
    before = state_dict_sha256(encoder)
    with torch.no_grad():
        encoder.bn1.running_mean[0] += 1e-3
    assert state_dict_sha256(encoder) != before


def test_extract_random_is_deterministic_per_seed(tmp_path):
    store, ids = make_store(tmp_path, n=4)
    runs = {
        "r0": extract_run(store, BackboneSource("random", **TINY, store_as="r0"), seed=0),
        "r0b": extract_run(store, BackboneSource("random", **TINY, store_as="r0b"), seed=0),
        "r1": extract_run(store, BackboneSource("random", **TINY, store_as="r1"), seed=1),
    }
    tables = {name: _stored(store, name) for name in runs}
    t0, e0, meta0 = tables["r0"]
    assert t0["patient_id"].to_pylist() == ids and e0.shape == (4, 128) and np.isfinite(e0).all()
    np.testing.assert_array_equal(e0, tables["r0b"][1])
    assert not np.allclose(e0, tables["r1"][1])
    # provenance: the initial weights' hash, the seed, the architecture with init and seed
    expected = random_backbone(arch="resnet10", widen_factor=0.25,
                               preprocess=PreprocessConfig(input_size=16, spacing=3.0), seed=0)
    assert set(t0["checkpoint_sha256"].to_pylist()) == {expected.checkpoint_sha256}
    assert set(t0["preprocess_sha256"].to_pylist()) == {expected.preprocess_sha256}
    assert set(t0["seed"].to_pylist()) == {0}
    architecture = json.loads(meta0["architecture"])
    assert (architecture["arch"], architecture["widen_factor"], architecture["init"], architecture["seed"]) == \
        ("resnet10", 0.25, "random", 0)
    assert runs["r1"].params["source"] == "random:resnet10:1"


def test_another_seed_under_the_same_name_is_refused(tmp_path):
    from neurofeat.store import CheckpointMismatchError

    store, _ = make_store(tmp_path, n=2)
    extract_run(store, BackboneSource("random", **TINY), seed=0)
    with pytest.raises(CheckpointMismatchError, match="backbone 'random'.*checkpoint"):
        extract_run(store, BackboneSource("random", **TINY), seed=1)
    replaced = extract_run(store, BackboneSource("random", **TINY), seed=1, replace=True)
    assert replaced.result.n_written == 2


@pytest.mark.parametrize(("source", "match"), [
    (BackboneSource("random", arch="resnet11"), r"--backbone random: EncoderConfig: arch 'resnet11' is not supported"),
    (BackboneSource("random", widen_factor=0.0), r"widen_factor must be > 0"),
    (BackboneSource("tiny", arch="resnet10"), r"--arch/--widen-factor only apply to --backbone random"),
    (BackboneSource("tiny", input_size=16), r"--input-size/--spacing only apply to --checkpoint and --backbone random"),
    (BackboneSource("random", checkpoint="w.safetensors", adapter="brainiac"),
     r"'random' is a reference backbone \(no checkpoint\)"),
])
def test_options_that_do_not_fit(source, match):
    with pytest.raises(ExtractionError, match=match):
        source.resolve("cpu")


@pytest.mark.slow
def test_synth_ingest_extract_reference_backbones_then_probe(tmp_path):
    """Issue 14's floor and classical baseline end to end, as a user runs them."""
    pytest.importorskip("radiomics")
    from typer.testing import CliRunner

    from neurofeat.cli import app
    from neurofeat.store import connect

    runner = CliRunner()
    cohort, store = tmp_path / "cohort", tmp_path / "store"

    def run(*args: str) -> str:
        result = runner.invoke(app, list(args))
        assert result.exit_code == 0, result.output
        return " ".join(result.output.split())

    run("synth", "--out", str(cohort), "--n", "12", "--size", "32", "--spacing", "6", "--seed", "1")
    assert len(list(cohort.glob("images/*/*_seg.nii.gz"))) == 12
    run("ingest", "--discover", str(cohort / "images"), "--clinical", str(cohort / "clinical.csv"),
        "--store", str(store))
    assert connect(store).sql("select count(*) from scans where sequence = 'seg'").fetchall() == [(12,)]
    out = run("extract", "--backbone", "radiomics", "--store", str(store), "--no-progress")
    assert "region: 12 tumour segmentation(s), 0 brain mask(s)" in out
    run("extract", "--backbone", "random", "--arch", "resnet10", "--widen-factor", "0.25", "--input-size", "32",
        "--spacing", "6", "--seed", "0", "--store", str(store), "--no-progress")
    con = connect(store)
    assert con.sql("select backbone, count(*) from embeddings group by 1 order by 1").fetchall() == [
        ("radiomics", 12), ("random", 12)]
    for backbone in ("radiomics", "random"):
        out = run("probe", "--backbone", backbone, "--task", "idh1", "--store", str(store), "--repeats", "1",
                  "--folds", "3", "--bootstrap", "50", "--no-knn", "--fractions", "1")
    results = connect(store).sql("select distinct backbone from results where task = 'idh1' order by 1").fetchall()
    assert results == [("radiomics",), ("random",)]


def test_dry_run_builds_the_seeded_encoder(tmp_path):
    from neurofeat.runs.extract import extract_dry_run

    store, _ = make_store(tmp_path, n=2)
    extract_run(store, BackboneSource("random", **TINY), seed=3)
    assert extract_dry_run(store, BackboneSource("random", **TINY), seed=3).ok
    other = extract_dry_run(store, BackboneSource("random", **TINY), seed=4)
    assert not other.ok and "already holds another encoder" in other.problems[0][1]
