"""store import (external features) and store validate."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from neurofeat.store import CheckpointMismatchError, StoreError, append_embeddings, read_xy
from neurofeat.store.importing import import_features
from neurofeat.store.info import store_info
from neurofeat.store.validate import validate_store


def write_features(path, ids, extra: dict | None = None):
    rng = np.random.default_rng(0)
    columns = {"patient_id": ids, "original_firstorder_Mean": rng.normal(size=len(ids)), "original_shape_Volume": rng.random(len(ids)) * 1e4}
    columns.update(extra or {})
    pa.Table.from_pydict(columns).to_pandas().to_csv(path, index=False)
    return columns


def test_import_round_trip(store, ids, tmp_path):
    columns = write_features(tmp_path / "radiomics.csv", ids)
    report = import_features(store, "radiomics", tmp_path / "radiomics.csv")
    assert report.n_written == 60 and report.dim == 2
    data = read_xy(store, "radiomics", "ki67")
    index = [ids.index(p) for p in data.patient_ids]
    np.testing.assert_allclose(data.X[:, 0], np.asarray(columns["original_firstorder_Mean"])[index], rtol=1e-6)


def test_non_numeric_value_names_row_column_and_patient(store, ids, tmp_path):
    values = [str(v) for v in np.arange(60.0)]
    values[6] = "abc"
    write_features(tmp_path / "f.csv", ids, {"glcm_Contrast": values})
    with pytest.raises(StoreError, match=r"row 7 \(patient P006\), column 'glcm_Contrast': value is not numeric \('abc'\)"):
        import_features(store, "radiomics", tmp_path / "f.csv")
    assert store.backbones() == []
    report = import_features(store, "radiomics", tmp_path / "f.csv", drop_columns=True)
    assert report.dropped_columns == ("glcm_Contrast",) and report.dim == 2


def test_missing_value_is_an_error(store, ids, tmp_path):
    values = list(np.arange(60.0))
    values[2] = None
    write_features(tmp_path / "f.csv", ids, {"x": values})
    with pytest.raises(StoreError, match=r"row 3 \(patient P002\), column 'x': value is missing"):
        import_features(store, "radiomics", tmp_path / "f.csv")


def test_unregistered_patients_are_refused(store, ids, tmp_path):
    write_features(tmp_path / "f.csv", ids[:5] + ["GHOST-1"])
    with pytest.raises(StoreError, match=r"1 patient\(s\) are not registered.*GHOST-1"):
        import_features(store, "radiomics", tmp_path / "f.csv")


def test_missing_id_column(store, ids, tmp_path):
    write_features(tmp_path / "f.csv", ids)
    with pytest.raises(StoreError, match="no id column 'case'"):
        import_features(store, "radiomics", tmp_path / "f.csv", id_column="case")


def test_validate_clean_store(store, ids):
    append_embeddings(store, "dino", ids, np.ones((60, 3)), checkpoint_sha256="a", preprocess_sha256="p")
    report = validate_store(store)
    assert report.ok, report.to_frame()


def test_validate_finds_mixed_checkpoints_duplicates_and_dangling(store, ids):
    append_embeddings(store, "dino", ids, np.ones((60, 3)), checkpoint_sha256="a", preprocess_sha256="p")
    (path,) = store.partition_dir("dino").glob("*.parquet")
    table = pq.read_table(path)
    # a foreign tool writes rows of another checkpoint, for an unregistered patient, twice
    rows = table.slice(0, 1).set_column(0, "patient_id", pa.array(["GHOST"], pa.string()))
    rows = rows.set_column(3, "checkpoint_sha256", pa.array(["z"], pa.string()))
    meta = dict(table.schema.metadata)
    meta[b"neurofeat"] = meta[b"neurofeat"].replace(b'"checkpoint_sha256": "a"', b'"checkpoint_sha256": "z"')
    pq.write_table(pa.concat_tables([rows, rows]).replace_schema_metadata(meta), path.parent / "part-foreign.parquet")
    report = validate_store(store)
    checks = set(report.to_frame()["check"])
    assert not report.ok
    assert {"mixed checkpoints", "duplicate embeddings", "dangling patients"} <= checks


def test_validate_finds_mixed_preprocessing_and_architectures(store, ids):
    append_embeddings(store, "dino", ids[:30], np.ones((30, 3)), checkpoint_sha256="a", preprocess_sha256="p")
    (path,) = store.partition_dir("dino").glob("*.parquet")
    assert validate_store(store).ok
    table = pq.read_table(path)
    meta = dict(table.schema.metadata)
    provenance = json.loads(meta[b"neurofeat"])
    for k, (pre, arch) in enumerate((("p", '{"conv1_stride": 1}'), ("q", '{"conv1_stride": 2}'))):
        provenance.update(preprocess_sha256=pre, architecture=arch)
        meta[b"neurofeat"] = json.dumps(provenance).encode()
        rows = table.slice(0, 10).set_column(0, "patient_id", pa.array(ids[30 + 10 * k: 40 + 10 * k], pa.string()))
        pq.write_table(rows.replace_schema_metadata(meta), path.parent / f"part-foreign{k}.parquet")
    frame = validate_store(store).to_frame()
    assert {"mixed preprocessing", "mixed architectures"} <= set(frame["check"])
    assert "mixed checkpoints" not in set(frame["check"])
    # a writer of either encoder is refused, naming what differs
    with pytest.raises(CheckpointMismatchError, match=r"another encoder \(preprocessing "):
        append_embeddings(store, "dino", ids[50:], np.ones((10, 3)), checkpoint_sha256="a", preprocess_sha256="p")


def test_info_counts(store, ids):
    append_embeddings(store, "dino", ids, np.ones((60, 3)), checkpoint_sha256="a" * 64, preprocess_sha256="p" * 64)
    info = store_info(store)
    assert info.n_patients == 60 and info.backbones["n_patients"].sum() == 60
    assert set(info.backbones["dim"]) == {3} and info.size_bytes > 0
    assert "60 patients" in info.summary()
