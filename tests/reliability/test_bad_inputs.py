"""Bad inputs and hostile environments found by the fault-injection audit (issue 15):
each is refused with a message that names the file/row/column and says what to do, and
the store is left as it was (or made whole by the next command).

Each test names the audit item it pins (``item N``).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pyarrow as pa
import pytest
from reliability_helpers import (
    CKPT_A,
    CKPT_B,
    PRE,
    embeddings,
    make_store,
    patient_ids,
    write_clinical_csv,
    write_features_csv,
)
from typer.testing import CliRunner

from neurofeat.cli import app
from neurofeat.ingest import ingest
from neurofeat.store import (
    EmbeddingWriter,
    Store,
    StoreError,
    append_embeddings,
    connect,
    read_table,
    run_query,
    transaction,
    write_run,
    write_tables,
)
from neurofeat.store.importing import import_features
from neurofeat.store.info import store_info
from neurofeat.store.validate import validate_store

runner = CliRunner()


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def store(tmp_path) -> Store:
    return make_store(tmp_path / "store")


# -- item 4: a failed first write of store.json ------------------------------------------

def test_failed_first_store_json_write_does_not_block_the_folder(tmp_path, monkeypatch):
    real_fsync = os.fsync

    def file_too_large(fd: int) -> None:
        raise OSError(errno.EFBIG, "File too large")

    monkeypatch.setattr(transaction.os, "fsync", file_too_large)
    clinical = write_clinical_csv(tmp_path / "c.csv", patient_ids(3))
    with pytest.raises(StoreError, match=r"could not create the store at .*File too large.*ulimit -f"):
        ingest(tmp_path / "S", clinical=clinical)
    assert not list((tmp_path / "S").glob(".store.json.*"))
    monkeypatch.setattr(transaction.os, "fsync", real_fsync)
    assert ingest(tmp_path / "S", clinical=clinical).n_patients == 3


def test_a_leftover_store_json_temp_file_is_not_someone_elses_data(tmp_path):
    (tmp_path / "S").mkdir()
    (tmp_path / "S" / ".store.json.0123.tmp").write_bytes(b"")
    assert ingest(tmp_path / "S", clinical=write_clinical_csv(tmp_path / "c.csv", patient_ids(2))).n_patients == 2


# -- item 5: backbone names that share a view --------------------------------------------

def test_backbone_names_that_would_share_a_view_are_refused(store):
    append_embeddings(store, "my-b", patient_ids(), embeddings(12), checkpoint_sha256=CKPT_A, preprocess_sha256=PRE)
    with pytest.raises(StoreError, match=r"backbone name 'my_b' would share the SQL view emb_my_b with backbone 'my-b'"):
        append_embeddings(store, "my_b", patient_ids(), embeddings(12), checkpoint_sha256=CKPT_A, preprocess_sha256=PRE)
    assert store.backbones() == ["my-b"]


def test_a_store_that_has_both_still_answers_and_validate_names_them(store):
    for name in ("my-b", "my_c"):
        append_embeddings(store, name, patient_ids(), embeddings(12), checkpoint_sha256=CKPT_A, preprocess_sha256=PRE)
    os.rename(store.backbone_dir("my_c"), store.backbone_dir("my_b"))  # as written by an older version
    con = connect(store)
    assert con.sql('SELECT count(*) FROM "emb_my-b"').fetchall() == [(12,)]
    assert run_query(store, 'SELECT count(*) FROM "emb_my_b"').fetchall() == [(12,)]
    report = validate_store(store)
    clash = [p for p in report.problems if p.check == "view name clash"]
    assert clash and "my-b" in clash[0].where and "my_b" in clash[0].where
    assert store_info(store).n_patients == 12
    result = invoke("store", "validate", "--store", store.root)
    assert result.exit_code == 1 and "Traceback" not in result.output


# -- item 7: a foreign Parquet file under embeddings/ ------------------------------------

def test_a_foreign_parquet_is_reported_not_a_crash(store):
    append_embeddings(store, "dino", patient_ids(), embeddings(12), checkpoint_sha256=CKPT_A, preprocess_sha256=PRE)
    foreign = store.partition_dir("dino") / "foreign.parquet"
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"patient_id": ["P000"], "x": [1.0]}), foreign)
    pq.write_table(pa.table({"a": [1]}), store.partition_dir("alien") / "x.parquet") if store.partition_dir(
        "alien").mkdir(parents=True) is None else None
    connect(store)  # used to raise KeyError: 'dim'
    assert store_info(store).n_patients == 12
    report = validate_store(store)
    where = {p.where for p in report.problems if p.check in ("foreign file", "schema")}
    assert str(foreign) in where and not report.ok
    assert run_query(store, "SELECT count(*) FROM emb_dino").fetchall() == [(12,)]


# -- item 8: read-only store, disk full ------------------------------------------------

@pytest.fixture
def read_only(store, monkeypatch):
    """The store as a read-only mount shows it: every file opened for writing and every
    folder created under it fails with EROFS (chmod does not stop a privileged user)."""
    import builtins

    from neurofeat.store import locks

    root = str(store.root)
    real_open, real_os_open, real_mkdir = builtins.open, os.open, Path.mkdir

    def inside(path: object) -> bool:
        return os.path.abspath(os.fspath(path)).startswith(root)

    def os_open(path, flags, *args, **kwargs):
        if inside(path) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise OSError(errno.EROFS, "Read-only file system", os.fspath(path))
        return real_os_open(path, flags, *args, **kwargs)

    def py_open(path, mode="r", *args, **kwargs):
        if isinstance(path, (str, os.PathLike)) and inside(path) and any(c in mode for c in "wax+"):
            raise OSError(errno.EROFS, "Read-only file system", os.fspath(path))
        return real_open(path, mode, *args, **kwargs)

    def mkdir(self, *args, **kwargs):
        if inside(self) and not self.exists():
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(locks.os, "open", os_open)
    monkeypatch.setattr(builtins, "open", py_open)
    monkeypatch.setattr(Path, "mkdir", mkdir)
    yield store


def test_read_only_store_is_a_named_error_for_every_writer(read_only, tmp_path):
    store = read_only
    clinical = write_clinical_csv(tmp_path / "c.csv", patient_ids(2, "NEW"))
    result = invoke("ingest", "--clinical", clinical, "--store", store.root)
    assert result.exit_code == 1 and "could not lock the store" in result.output and "writable" in result.output
    features = write_features_csv(tmp_path / "f.csv", patient_ids())
    result = invoke("store", "import", "--backbone", "rad", "--table", features, "--store", store.root)
    assert result.exit_code == 1 and "could not lock backbone 'rad'" in result.output and "Traceback" not in result.output
    with pytest.raises(StoreError, match=r"could not write analysis results into .*Read-only file system.*writable"):
        write_run(store, "probe", {})
    # reading still works, and opening never tries to write
    assert invoke("store", "info", "--store", store.root).exit_code == 0
    assert invoke("sql", "SELECT count(*) FROM patients", "--store", store.root).exit_code == 0


def test_disk_full_during_a_commit_is_a_named_error_and_commits_nothing(store, tmp_path, monkeypatch):
    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x.parquet"))

    monkeypatch.setattr(transaction.pq, "write_table", no_space)
    result = invoke("ingest", "--clinical", write_clinical_csv(tmp_path / "c.csv", patient_ids(2, "NEW")),
                    "--store", store.root)
    assert result.exit_code == 1 and "No space left on device" in result.output and "free disk space" in result.output
    result = invoke("store", "import", "--backbone", "rad", "--table", write_features_csv(tmp_path / "f.csv", patient_ids()),
                    "--store", store.root)
    assert result.exit_code == 1 and "No space left" in result.output and "Traceback" not in result.output
    monkeypatch.undo()
    assert read_table(store, "patients").num_rows == 12 and store.backbones() == []
    assert validate_store(Store.open(store.root)).ok


# -- item 9: unclear or silent ---------------------------------------------------------

def test_import_of_a_header_only_table_is_refused(store, tmp_path):
    (tmp_path / "f.csv").write_text("patient_id,f0\n")
    with pytest.raises(StoreError, match=r"f.csv: the table has a header but no rows; nothing to import"):
        import_features(store, "rad", tmp_path / "f.csv")


def test_import_of_an_empty_file_names_it(store, tmp_path):
    (tmp_path / "zero.csv").write_bytes(b"")
    with pytest.raises(StoreError, match=r"--table .*zero.csv: the file is empty or has no header row"):
        import_features(store, "rad", tmp_path / "zero.csv")


def test_import_keeps_the_patient_id_null_verbatim(store, tmp_path):
    write_tables(store, {"patients": pa.table({"patient_id": ["NULL"], "site": ["siteA"]})})
    (tmp_path / "f.csv").write_text("patient_id,f0\nNULL,1.5\n")
    assert import_features(store, "rad", tmp_path / "f.csv").n_written == 1


def test_import_reads_semicolon_tables_as_ingest_does(store, tmp_path):
    path = write_features_csv(tmp_path / "f.csv", patient_ids(), delimiter=";")
    assert import_features(store, "rad", path).dim == 4


def test_import_names_duplicate_columns(store, tmp_path):
    (tmp_path / "f.csv").write_text("patient_id,f0,f0\nP000,1,2\n")
    with pytest.raises(StoreError, match=r"f.csv: column name\(s\) \['f0'\] appear more than once; rename them"):
        import_features(store, "rad", tmp_path / "f.csv")


def test_sql_param_with_a_space_is_a_named_error(store):
    result = invoke("sql", "-p", "a b=1", "SELECT 1", "--store", store.root)
    assert result.exit_code == 1 and "the name 'a b' must be a plain identifier" in result.output
    assert "Traceback" not in result.output


def test_sql_query_starting_with_a_comment_is_the_query(store):
    result = invoke("sql", "-- count them\nSELECT count(*) AS n FROM patients", "--format", "csv", "--store", store.root)
    assert result.exit_code == 0 and result.output.split() == ["n", "12"]


def test_replace_still_refused_without_the_flag(store):
    append_embeddings(store, "dino", patient_ids(), embeddings(12), checkpoint_sha256=CKPT_A, preprocess_sha256=PRE)
    with pytest.raises(StoreError, match="another encoder"):
        EmbeddingWriter(store, "dino", checkpoint_sha256=CKPT_B, preprocess_sha256=PRE).open()
