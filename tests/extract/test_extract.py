"""Extraction end to end: rows and provenance in the store, agreement with a direct
forward pass, determinism, resume after SIGKILL, failures, lock, cache, dry run,
checkpoint clashes, zero-fill, perturbation partitions and torchrun sharding."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.torch
torch = pytest.importorskip("torch")
pytest.importorskip("monai")

from extract_helpers import make_backbone, make_store  # noqa: E402

from neurofeat.extract.backbone import resolve_extraction_backbone  # noqa: E402
from neurofeat.extract.dry_run import dry_run  # noqa: E402
from neurofeat.extract.extractor import extract_embeddings  # noqa: E402
from neurofeat.extract.perturb import parse_perturbations  # noqa: E402
from neurofeat.extract.preprocess import build_transforms  # noqa: E402
from neurofeat.store import (  # noqa: E402
    CheckpointMismatchError,
    StoreLock,
    StoreLockedError,
    connect,
    read_embeddings,
)

HERE = Path(__file__).parent


def _age_scans(store, seconds=3600):
    """Set the scans' mtimes back, as for files ingested a while ago."""
    from neurofeat.store import read_table

    old = time.time_ns() - seconds * 10**9
    for path in read_table(store, "scans")["path"].to_pylist():
        os.utime(path, ns=(old, old))


def _spy_on_scan_hashing(monkeypatch):
    """The list that collects every scan path a cache hit hashes."""
    import neurofeat.extract.dataset as dataset_module

    hashed = []
    original = dataset_module.verify_scans
    monkeypatch.setattr(dataset_module, "verify_scans",
                        lambda paths, *a, **k: (hashed.extend(paths), original(paths, *a, **k))[1])
    return hashed


def _extract_again(store, models, name, cache, seed):
    """Extract a new backbone *name* (same preprocessing) through *cache*."""
    make_backbone(models, name, seed=seed)
    return extract_embeddings(store, resolve_extraction_backbone(name, models_dir=models), workers=0, cache_dir=cache)


def _embeddings(store, backbone="tiny", perturbation="none"):
    table = read_embeddings(store, backbone, perturbation).sort_by("patient_id")
    ids = table["patient_id"].to_pylist()
    return ids, np.array(table["embedding"].to_pylist(), dtype=np.float32)


def test_end_to_end_rows_provenance_and_direct_forward(cohort):
    store, models = cohort["store"], cohort["models"]
    backbone = resolve_extraction_backbone("tiny", models_dir=models)
    result = extract_embeddings(store, backbone, batch_size=4, workers=1, seed=7)
    assert result.n_written == 6 and result.n_failed == 0
    # rows are staged in parts of up to flush_rows rows, not one tiny file per batch
    assert len(list(store.partition_dir("tiny", "none").glob("*.parquet"))) == 1
    con = connect(store)
    rows = con.execute(
        "SELECT patient_id, site, len(embedding), checkpoint_sha256, preprocess_sha256, seed, run_id "
        "FROM embeddings WHERE backbone = 'tiny' AND perturbation = 'none' ORDER BY patient_id"
    ).fetchall()
    assert [r[0] for r in rows] == cohort["ids"]
    assert [r[1] for r in rows] == ["A", "B"] * 3
    weights_sha = hashlib.sha256((models / "tiny" / "model.safetensors").read_bytes()).hexdigest()
    assert {r[3] for r in rows} == {weights_sha}
    assert {r[4] for r in rows} == {backbone.preprocess.sha256()}
    assert {r[2] for r in rows} == {128} and {r[5] for r in rows} == {7} and {r[6] for r in rows} == {result.run_id}

    # independent path: preprocess one patient by hand and run the encoder on it
    from neurofeat.extract.dataset import load_patient_records

    record = load_patient_records(store, backbone.preprocess.sequences, ["P003"])[0]
    image = build_transforms(backbone.preprocess)(record)["image"]
    with torch.inference_mode():
        direct = backbone.encoder(image[None]).numpy()[0]
    ids, matrix = _embeddings(store)
    np.testing.assert_allclose(matrix[ids.index("P003")], direct, rtol=1e-5, atol=1e-6)
    assert np.unique(matrix, axis=0).shape[0] == 6  # every patient gets its own embedding


def test_same_input_checkpoint_and_seed_give_identical_embeddings(tmp_path):
    store_a, _ = make_store(tmp_path / "a", n=3)
    store_b, _ = make_store(tmp_path / "b", n=3)
    make_backbone(tmp_path / "models", "tiny", seed=0)
    for store, batch in ((store_a, 1), (store_b, 1)):
        backbone = resolve_extraction_backbone("tiny", models_dir=tmp_path / "models")
        extract_embeddings(store, backbone, batch_size=batch, workers=0, seed=0)
    ids_a, a = _embeddings(store_a)
    ids_b, b = _embeddings(store_b)
    assert ids_a == ids_b
    np.testing.assert_array_equal(a, b)


def test_threads_apply_to_the_forward_pass_and_are_restored(cohort, monkeypatch):
    import neurofeat.extract.embed as extractor

    store, models = cohort["store"], cohort["models"]
    seen = []
    original = extractor.embed_batch

    def spy(encoder, images, device):
        seen.append(torch.get_num_threads())
        return original(encoder, images, device)

    monkeypatch.setattr(extractor, "embed_batch", spy)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        backbone = resolve_extraction_backbone("tiny", models_dir=models)
        result = extract_embeddings(store, backbone, batch_size=4, workers=0, threads=1)
        assert seen and set(seen) == {1} and result.threads == 1 and "(1 CPU thread(s))" in result.summary()
        assert torch.get_num_threads() == 2  # restored
        _, one = _embeddings(store)
        other = extract_embeddings(store, dataclasses.replace(backbone, name="tiny2"), batch_size=4, workers=0)
        assert other.threads == 2 and set(seen[-2:]) == {2}
        # the tiny encoder sums in the same order with 1 or 2 threads
        np.testing.assert_array_equal(one, _embeddings(store, "tiny2")[1])
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ValueError, match="threads must be >= 1"):
        extract_embeddings(store, backbone, threads=0)


_CRASHING_RUN = """
import sys, time
from neurofeat.store import Store, EmbeddingWriter
original = EmbeddingWriter.write_batch
def slow_write(self, *args, **kwargs):
    written = original(self, *args, **kwargs)
    time.sleep(0.4)
    return written
EmbeddingWriter.write_batch = slow_write
from neurofeat.extract.backbone import resolve_extraction_backbone
from neurofeat.extract.extractor import extract_embeddings
store = Store.open(sys.argv[1])
backbone = resolve_extraction_backbone("tiny", models_dir=sys.argv[2])
extract_embeddings(store, backbone, batch_size=2, workers=0, flush_rows=2)
"""


@pytest.mark.slow
def test_resume_after_sigkill_completes_without_duplicates(cohort, tmp_path):
    store, models = cohort["store"], cohort["models"]
    script = tmp_path / "crash.py"
    script.write_text(_CRASHING_RUN)
    proc = subprocess.Popen([sys.executable, str(script), str(store.root), str(models)])
    pending = store.staging_dir / "pending"
    deadline = time.time() + 60
    while time.time() < deadline and not list(pending.rglob("part-*.parquet")):
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    import pyarrow.parquet as pq

    staged = sum(pq.read_metadata(p).num_rows for p in pending.rglob("part-*.parquet"))
    assert 2 <= staged < 6, "the run must be killed mid-way"
    # nothing partial is visible (the same batch size keeps batch composition, hence bits)
    assert connect(store).execute("SELECT count(*) FROM embeddings").fetchone()[0] == 0
    assert not list(store.embeddings_dir.rglob("*.parquet"))

    backbone = resolve_extraction_backbone("tiny", models_dir=models)
    result = extract_embeddings(store, backbone, batch_size=2, workers=0)
    summary = result.per_perturbation[0]
    assert summary.n_already_done == staged and summary.n_written == 6 - staged
    ids, matrix = _embeddings(store)
    assert ids == cohort["ids"]  # complete, each once
    count = connect(store).execute("SELECT count(*), count(DISTINCT patient_id) FROM embeddings").fetchone()
    assert count == (6, 6)

    clean, _ = make_store(tmp_path / "clean", n=6)
    extract_embeddings(clean, resolve_extraction_backbone("tiny", models_dir=models), batch_size=2, workers=0)
    np.testing.assert_array_equal(matrix, _embeddings(clean)[1])


def test_failures_are_recorded_and_the_rest_goes_on(cohort):
    store, models = cohort["store"], cohort["models"]
    from neurofeat.extract.dataset import load_patient_records

    records = {r["patient_id"]: r for r in load_patient_records(store, ("t1", "t1ce", "t2", "flair"))}
    p001_t2 = Path(records["P001"]["t2"]).read_bytes()
    os.unlink(records["P001"]["t2"])
    Path(records["P004"]["flair"]).write_bytes(b"this is not a NIfTI file")
    backbone = resolve_extraction_backbone("tiny", models_dir=models)
    result = extract_embeddings(store, backbone, batch_size=4, workers=0)
    assert result.n_written == 4 and result.n_failed == 2
    failures = connect(store).execute(
        "SELECT patient_id, backbone, perturbation, stage, reason FROM extract_failures ORDER BY patient_id"
    ).fetchall()
    assert [f[0] for f in failures] == ["P001", "P004"]
    assert {f[1:4] for f in failures} == {("tiny", "none", "extract")}
    assert "patient P001: sequence 't2' is missing" in failures[0][4]
    assert "P004_flair.nii.gz" in failures[1][4]
    ids, _ = _embeddings(store)
    assert ids == ["P000", "P002", "P003", "P005"]

    assert "changed since ingest" in failures[1][4]  # P004's file is not the registered one

    # another file in place of P001's T2 is refused: the rows must come from registered scans
    shutil.copyfile(records["P001"]["t1"], records["P001"]["t2"])
    other = extract_embeddings(store, backbone, batch_size=4, workers=0)
    assert other.n_written == 0 and other.n_failed == 2
    reason = dict((pid, why) for _, pid, why in other.failures)["P001"]
    assert re.search(r"patient P001: sequence 't2' changed since ingest \(.*P001_t2.nii.gz has sha256", reason)

    # the original scan comes back: a rerun embeds it; only P004's failure is still open
    Path(records["P001"]["t2"]).write_bytes(p001_t2)
    rerun = extract_embeddings(store, backbone, batch_size=4, workers=0)
    assert rerun.n_written == 1 and rerun.n_failed == 1
    con = connect(store)
    assert con.sql("SELECT count(*) FROM extract_failures").fetchall() == [(5,)]  # the history stays
    open_rows = con.sql("SELECT patient_id, run_id FROM open_extract_failures").fetchall()
    assert [r[0] for r in open_rows] == ["P004"] and open_rows[0][1] == rerun.run_id


def test_lock_refuses_a_concurrent_extraction(cohort):
    store, models = cohort["store"], cohort["models"]
    backbone = resolve_extraction_backbone("tiny", models_dir=models)
    holder = StoreLock(store.locks_dir / "extract-tiny.lock", "an extraction of backbone 'tiny'").acquire()
    try:
        with pytest.raises(StoreLockedError, match=rf"extraction of backbone 'tiny' into .*store is already running \(pid {os.getpid()}"):
            extract_embeddings(store, backbone, workers=0)
    finally:
        holder.release()
    assert not list(store.embeddings_dir.rglob("*.parquet"))
    assert extract_embeddings(store, backbone, workers=0).n_written == 6  # free again


def test_cache_serves_a_second_backbone_with_identical_results(cohort, tmp_path):
    store, models = cohort["store"], cohort["models"]
    make_backbone(models, "tiny2", seed=1)
    cache = tmp_path / "cache"
    first = extract_embeddings(store, resolve_extraction_backbone("tiny", models_dir=models), workers=0, cache_dir=cache)
    assert first.per_perturbation[0].n_cached == 0
    assert len(list(cache.rglob("*.npy"))) == 6 and not list(cache.rglob("*.tmp"))
    second = extract_embeddings(store, resolve_extraction_backbone("tiny2", models_dir=models), workers=0, cache_dir=cache)
    assert second.per_perturbation[0].n_cached == 6
    # the cached inputs give exactly what decoding gives
    uncached, _ = make_store(tmp_path / "u", n=6)
    extract_embeddings(uncached, resolve_extraction_backbone("tiny2", models_dir=models), workers=0)
    np.testing.assert_array_equal(_embeddings(store, "tiny2")[1], _embeddings(uncached, "tiny2")[1])


def test_bad_cache_entries_are_recomputed_and_changed_scans_refused_on_a_hit(cohort, tmp_path):
    from neurofeat.extract.dataset import VolumeCache, cache_key, load_patient_records

    store, models = cohort["store"], cohort["models"]
    cache = tmp_path / "cache"
    tiny = resolve_extraction_backbone("tiny", models_dir=models)
    extract_embeddings(store, tiny, workers=0, cache_dir=cache)
    p005 = load_patient_records(store, tiny.preprocess.sequences, ["P005"])[0]
    p005_entry = VolumeCache(cache).path(cache_key(p005, tiny.preprocess_sha256))
    entries = sorted(set(cache.rglob("*.npy")) - {p005_entry})
    assert p005_entry.exists() and len(entries) == 5
    entries[0].write_bytes(b"")  # e.g. after a power loss
    np.save(entries[1], np.zeros((4, 8, 8, 8), np.float32))  # not this preprocessing's shape
    entries[2].write_bytes(entries[2].read_bytes()[:200])  # truncated
    # a scan changed after its volume was cached is refused, as decoding would refuse it
    t2 = p005["t2"]
    original = Path(t2).read_bytes()
    Path(t2).write_bytes(original[:-10])
    make_backbone(models, "tiny2", seed=1)
    second = extract_embeddings(store, resolve_extraction_backbone("tiny2", models_dir=models), workers=0,
                                cache_dir=cache)
    assert second.n_written == 5 and second.per_perturbation[0].n_cached == 2
    (failure,) = second.failures
    assert failure[1] == "P005" and "patient P005: sequence 't2' changed since ingest" in failure[2]
    assert all(np.load(e).shape == (4, 32, 32, 32) for e in entries[:3])  # rewritten
    Path(t2).write_bytes(original)
    uncached, _ = make_store(tmp_path / "u", n=6)
    extract_embeddings(uncached, resolve_extraction_backbone("tiny2", models_dir=models), workers=0)
    ids, got = _embeddings(store, "tiny2")
    ref_ids, ref = _embeddings(uncached, "tiny2")
    # (P004 is embedded in a batch of one here, of two there: equal to float precision)
    np.testing.assert_allclose(got, ref[[ref_ids.index(i) for i in ids]], rtol=1e-5, atol=1e-6)


def test_cache_hits_rehash_only_scans_whose_stat_changed(cohort, tmp_path, monkeypatch):
    from neurofeat.extract.dataset import load_patient_records

    store, models = cohort["store"], cohort["models"]
    _age_scans(store)  # scans written seconds ago get no stored fingerprint (see the next test)
    cache = tmp_path / "cache"
    tiny = resolve_extraction_backbone("tiny", models_dir=models)
    extract_embeddings(store, tiny, workers=0, cache_dir=cache)
    hashed = _spy_on_scan_hashing(monkeypatch)
    second = _extract_again(store, models, "tiny2", cache, seed=1)
    assert second.per_perturbation[0].n_cached == 6 and hashed == []  # unchanged files: no re-hash
    # P002's T1 rewritten with the same bytes (new mtime): hashed once, served, then trusted again
    t1 = Path(load_patient_records(store, ("t1",), ["P002"])[0]["t1"])
    t1.write_bytes(t1.read_bytes())
    past = time.time_ns() - 600 * 10**9  # older than the racy window, newer than the aged stat
    os.utime(t1, ns=(past, past))
    for name in ("tiny3", "tiny4"):
        result = _extract_again(store, models, name, cache, seed=2)
        assert result.per_perturbation[0].n_cached == 6 and result.n_failed == 0
    assert [Path(p).name for p in hashed] == ["P002_t1.nii.gz", "P002_t1ce.nii.gz", "P002_t2.nii.gz",
                                              "P002_flair.nii.gz"]


def test_fingerprints_of_just_modified_scans_are_not_trusted(cohort, tmp_path, monkeypatch):
    """A file rewritten with the same size within the clock's resolution keeps its stat,
    so scans modified in the last seconds are hashed again on the next hit."""
    store, models = cohort["store"], cohort["models"]  # scans written just now
    cache = tmp_path / "cache"
    extract_embeddings(store, resolve_extraction_backbone("tiny", models_dir=models), workers=0, cache_dir=cache)
    assert not list(cache.rglob("*.json"))
    hashed = _spy_on_scan_hashing(monkeypatch)
    second = _extract_again(store, models, "tiny2", cache, seed=1)
    assert second.per_perturbation[0].n_cached == 6 and len(hashed) == 24


def test_a_scan_deleted_after_caching_is_zero_filled_as_in_a_cold_run(tmp_path):
    store, _ = make_store(tmp_path, n=3)
    _age_scans(store)
    models, cache = tmp_path / "models", tmp_path / "cache"
    for name in ("lenient", "lenient2"):
        make_backbone(models, name, missing_sequence="zero")
    first = extract_embeddings(store, resolve_extraction_backbone("lenient", models_dir=models), workers=0,
                               cache_dir=cache)
    assert first.n_written == 3 and first.per_perturbation[0].n_zero_filled == 0
    from neurofeat.extract.dataset import load_patient_records

    os.unlink(load_patient_records(store, ("flair",), ["P001"])[0]["flair"])
    second = extract_embeddings(store, resolve_extraction_backbone("lenient2", models_dir=models), workers=0,
                                cache_dir=cache)
    summary = second.per_perturbation[0]
    assert second.n_failed == 0 and summary.n_zero_filled == 1 and summary.n_cached == 2


def test_other_checkpoint_under_same_name_needs_replace(cohort, tmp_path):
    store, models = cohort["store"], cohort["models"]
    extract_embeddings(store, resolve_extraction_backbone("tiny", models_dir=models), workers=0)
    _, before = _embeddings(store)
    other = tmp_path / "other_models"
    make_backbone(other, "tiny", seed=5)
    retrained = resolve_extraction_backbone("tiny", models_dir=other)
    with pytest.raises(CheckpointMismatchError, match=r"backbone 'tiny' .* holds embeddings of another encoder \(checkpoint"):
        extract_embeddings(store, retrained, workers=0)
    report = dry_run(store, retrained)
    assert not report.ok and "pass --replace" in report.summary()
    result = extract_embeddings(store, retrained, workers=0, replace=True)
    assert result.n_written == 6
    _, after = _embeddings(store)
    assert not np.allclose(before, after)
    shas = connect(store).execute("SELECT DISTINCT checkpoint_sha256 FROM embeddings").fetchall()
    assert shas == [(retrained.checkpoint_sha256,)]


def test_same_weights_with_other_architecture_or_preprocessing_needs_replace(cohort, tmp_path):
    """One backbone name = one encoder: resuming with the same weights built with another
    conv1_stride, or fed another preprocessing, must not mix rows under one name."""
    from monai.networks.nets import resnet10
    from safetensors.torch import save_file

    from neurofeat.extract.preprocess import PreprocessConfig
    from neurofeat.store import Store
    from neurofeat.store.validate import validate_store

    store, models = cohort["store"], cohort["models"]
    net = resnet10(spatial_dims=3, n_input_channels=4, widen_factor=0.25)
    weights = tmp_path / "r10.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(weights))
    pre32 = PreprocessConfig(spacing=(2.0, 2.0, 2.0), input_size=32)

    def external(stride, pre=pre32):
        return resolve_extraction_backbone("ext", checkpoint=weights, adapter="monai-resnet",
                                           adapter_options={"conv1_stride": stride}, preprocess=pre)

    first = extract_embeddings(store, external(1), workers=0, patient_ids=cohort["ids"][:3])
    assert first.n_written == 3
    for other, what in ((external(2), "architecture"),
                        (external(1, pre32.replace(input_size=(64, 64, 64))), "preprocessing")):
        assert other.checkpoint_sha256 == first.checkpoint_sha256  # same file bytes
        with pytest.raises(CheckpointMismatchError, match=rf"another encoder \({what} "):
            extract_embeddings(store, other, workers=0)
        report = dry_run(store, other)
        assert not report.ok and f"another encoder ({what} " in report.summary()
    # the same encoder resumes: the 3 stored patients are kept, the other 3 added
    resumed = extract_embeddings(store, external(1), workers=0)
    assert resumed.per_perturbation[0].n_already_done == 3 and resumed.n_written == 3
    swapped = extract_embeddings(store, external(2), workers=0, replace=True)
    assert swapped.n_written == 6
    con = connect(store)
    assert con.execute("SELECT count(*) FROM embeddings WHERE backbone = 'ext'").fetchone()[0] == 6
    assert validate_store(Store.open(store.root)).ok

    # files of an older neurofeat carry no architecture: they resume, and --replace swaps them
    import json

    import pyarrow.parquet as pq

    for part in store.backbone_dir("ext").rglob("*.parquet"):
        table = pq.read_table(part)
        meta = dict(table.schema.metadata)
        provenance = json.loads(meta[b"neurofeat"])
        del provenance["architecture"]
        meta[b"neurofeat"] = json.dumps(provenance).encode()
        pq.write_table(table.replace_schema_metadata(meta), part)
    assert extract_embeddings(store, external(1), workers=0).per_perturbation[0].n_already_done == 6
    assert dry_run(store, external(1)).todo == {"none": 0}
    assert dry_run(store, external(1), replace=True).todo == {"none": 6}
    assert extract_embeddings(store, external(1), workers=0, replace=True).n_written == 6


def test_dry_run_reports_problems_and_writes_nothing(cohort):
    store, models = cohort["store"], cohort["models"]
    from neurofeat.extract.dataset import load_patient_records

    record = load_patient_records(store, ("t1",), ["P002"])[0]
    os.unlink(record["t1"])
    backbone = resolve_extraction_backbone("tiny", models_dir=models)
    report = dry_run(store, backbone, perturbations=parse_perturbations("none,gibbs:0.2"))
    assert report.n_patients == 6 and report.todo == {"none": 6, "gibbs-0.2": 6}
    assert report.input_shape == (4, 32, 32, 32) and report.embedding_dim == 128
    assert [p[0] for p in report.problems] == ["P002"]
    assert "sequence 't1': file" in report.problems[0][1]
    # a truncated scan (an interrupted copy) is caught without decoding it
    flair = load_patient_records(store, ("flair",), ["P003"])[0]["flair"]
    Path(flair).write_bytes(Path(flair).read_bytes()[:-100])
    report = dry_run(store, backbone)
    assert [p[0] for p in report.problems] == ["P002", "P003"]
    assert re.search(r"patient P003: sequence 'flair' changed since ingest \(.*P003_flair.nii.gz has sha256 \w+…, "
                     r"not the \w+… registered at ingest\); restore the file, or re-ingest", report.problems[1][1])
    assert not store.embeddings_dir.exists() or not list(store.embeddings_dir.rglob("*.parquet"))
    assert not (store.staging_dir / "pending").exists()
    # the cache directory is the run's to create, not the dry run's
    report = dry_run(store, backbone, cache_dir=store.root.parent / "not-yet" / "cache")
    assert report.bytes_needed > 0 and not (store.root.parent / "not-yet").exists()


def test_dry_run_and_extraction_agree_on_what_is_one_grid(cohort, tmp_path):
    """Affines equal within the 1e-3 mm tolerance are one grid for both; a real shift is not."""
    import nibabel as nib

    from neurofeat.extract.dataset import load_patient_records
    from neurofeat.ingest.nifti import sha256_file

    store, models = cohort["store"], cohort["models"]
    backbone = resolve_extraction_backbone("tiny", models_dir=models)
    record = load_patient_records(store, ("t2",), ["P001"])[0]
    image = nib.load(record["t2"])
    # 6e-4 mm: within extraction's 1e-3 tolerance, but not equal after rounding to 3 decimals
    for shift, expect_ok in ((6e-4, True), (0.5, False)):
        affine = image.affine.copy()
        affine[0, 3] += shift
        moved = tmp_path / f"t2-{shift}.nii.gz"
        nib.save(nib.Nifti1Image(np.asanyarray(image.dataobj), affine), str(moved))
        con = connect(store)  # register the moved file as P001's T2 (as a re-ingest would)
        scans = con.execute("SELECT * FROM scans").df()
        scans.loc[(scans.patient_id == "P001") & (scans.sequence == "t2"), ["path", "sha256"]] = [
            str(moved), sha256_file(moved)]
        for part in store.table_dir("scans").glob("*.parquet"):
            part.unlink()
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pandas(scans, preserve_index=False), store.table_dir("scans") / "part-x.parquet")
        report = dry_run(store, backbone, patient_ids=["P001"])
        result = extract_embeddings(store, dataclasses.replace(backbone, name=f"grid{int(expect_ok)}"),
                                    workers=0, patient_ids=["P001"])
        assert report.ok is expect_ok and (result.n_failed == 0) is expect_ok, report.problems
        if not expect_ok:
            assert "sequences 't1' and 't2' have different affines" in report.problems[0][1]
            assert "sequences 't1' and 't2' have different affines" in result.failures[0][2]


def test_zero_filled_sequence_is_flagged_when_the_card_allows_it(tmp_path):
    import pyarrow as pa

    from neurofeat.store import Store, read_table

    store, _ = make_store(tmp_path, n=3)
    scans = read_table(store, "scans")
    keep = pa.compute.invert(pa.compute.and_(pa.compute.equal(scans["patient_id"], "P001"),
                                             pa.compute.equal(scans["sequence"], "flair")))
    # rebuild the scans table without P001's FLAIR
    for part in (store.root / "scans").glob("*.parquet"):
        part.unlink()
    import pyarrow.parquet as pq

    pq.write_table(scans.filter(keep), store.root / "scans" / "part-0.parquet")
    make_backbone(tmp_path / "models", "strict")
    make_backbone(tmp_path / "models", "lenient", missing_sequence="zero")
    strict = extract_embeddings(store, resolve_extraction_backbone("strict", models_dir=tmp_path / "models"), workers=0)
    assert strict.n_failed == 1 and "sequence 'flair' is missing" in strict.failures[0][2]
    lenient = extract_embeddings(Store.open(store.root), resolve_extraction_backbone("lenient", models_dir=tmp_path / "models"), workers=0)
    assert lenient.n_failed == 0 and lenient.per_perturbation[0].n_zero_filled == 1
    flags = connect(store).execute(
        "SELECT patient_id, stage, reason FROM extract_failures WHERE backbone = 'lenient'").fetchall()
    assert flags == [("P001", "zero_filled", "sequence(s) flair missing: zero-filled (the embedding is stored)")]
    assert _embeddings(store, "lenient")[0] == ["P000", "P001", "P002"]


def test_perturbations_go_to_their_own_partitions(cohort):
    store, models = cohort["store"], cohort["models"]
    backbone = resolve_extraction_backbone("tiny", models_dir=models)
    extract_embeddings(store, backbone, workers=0, perturbations=parse_perturbations("none,contrast:1.5"))
    counts = connect(store).execute(
        "SELECT perturbation, count(*) FROM embeddings GROUP BY perturbation ORDER BY perturbation").fetchall()
    assert counts == [("contrast-1.5", 6), ("none", 6)]
    _, base = _embeddings(store)
    _, perturbed = _embeddings(store, perturbation="contrast-1.5")
    assert not np.allclose(base, perturbed)


@pytest.mark.slow
def test_torchrun_two_ranks_shard_and_commit_once(cohort, tmp_path):
    models = cohort["models"]
    # 5 patients over 2 ranks: uneven shards must not duplicate anyone
    extra, _ = make_store(tmp_path / "ref", n=5)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_PORT": "29517"}

    def torchrun(*args):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29517",
               "-m", "neurofeat", "extract", "--backbone", "tiny", "--models-dir", str(models), "--store",
               str(extra.root), "--device", "cpu", "--workers", "0", "--batch-size", "2", "--no-progress", *args]
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=180)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]

    # first a resume with one batch (fewer than ranks) to do: rank 1 has nothing
    partial = extract_embeddings(extra, resolve_extraction_backbone("tiny", models_dir=models), workers=0,
                                 batch_size=2, patient_ids=["P001", "P002", "P003", "P004"])
    assert partial.n_written == 4  # P000 is left, in the batch (P000, P001)
    torchrun()
    con = connect(extra)
    assert con.execute("SELECT count(*), count(DISTINCT patient_id) FROM embeddings").fetchone() == (5, 5)
    # then every batch over both ranks (a new perturbation), and a rerun with nothing left
    torchrun("--perturb", "contrast:1.2")
    torchrun("--perturb", "contrast:1.2")
    con = connect(extra)
    assert con.execute("SELECT count(*), count(DISTINCT patient_id) FROM embeddings "
                       "WHERE perturbation = 'contrast-1.2'").fetchone() == (5, 5)
    runs = con.execute("SELECT DISTINCT run_id FROM embeddings WHERE perturbation = 'contrast-1.2'").fetchall()
    assert len(runs) == 1
    single, _ = make_store(tmp_path / "single", n=5)
    extract_embeddings(single, resolve_extraction_backbone("tiny", models_dir=models), workers=0, batch_size=2,
                       perturbations=parse_perturbations("contrast:1.2"))
    np.testing.assert_allclose(_embeddings(extra, perturbation="contrast-1.2")[1],
                               _embeddings(single, perturbation="contrast-1.2")[1], rtol=1e-5, atol=1e-6)


def test_gpu_path_construction_bf16_channels_last_on_cpu(cohort):
    """The CUDA path (bf16 autocast + channels_last_3d) built on CPU: same embeddings
    within bf16 precision. (Untested on a real GPU in this project's CI.)"""
    from neurofeat.extract.embed import embed_batch

    backbone = resolve_extraction_backbone("tiny", models_dir=cohort["models"])
    images = torch.randn(2, 4, 32, 32, 32, generator=torch.Generator().manual_seed(0))
    reference = embed_batch(backbone.encoder, images, torch.device("cpu"))
    encoder = backbone.encoder.to(memory_format=torch.channels_last_3d)
    fast = embed_batch(encoder, images, torch.device("cpu"), mixed_precision=True, channels_last=True)
    assert fast.dtype == np.float32 and fast.shape == reference.shape
    np.testing.assert_allclose(fast, reference, rtol=0.05, atol=0.05 * np.abs(reference).max())
    assert not np.array_equal(fast, reference)  # bf16 really was used
