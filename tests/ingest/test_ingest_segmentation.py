"""The tumour segmentation as an optional sequence (``seg``): discovered, listed in a
manifest, stored in ``scans``; patients without one are fine; a label map off the
images' grid is refused by name and nothing is written."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from ingest_helpers import SHAPE, store_files, write_csv, write_nifti, write_patient
from neurofeat.ingest import IngestError, ingest
from neurofeat.ingest.discover import ALL_SEQUENCES, OPTIONAL_SEQUENCES, SEQUENCES
from neurofeat.store import connect


def _write_seg(path, shape=SHAPE, affine=None):
    labels = np.zeros(tuple(shape), np.uint8)
    labels[2:5, 2:5, 2:5] = 2
    labels[3, 3, 3] = 4
    nib.save(nib.Nifti1Image(labels, np.eye(4) if affine is None else affine), str(path))
    return path


def _scans(store):
    return connect(store).sql("select patient_id, sequence, path, sha256 from scans "
                              "order by patient_id, sequence").df()


def test_sequence_lists():
    assert OPTIONAL_SEQUENCES == ("seg",)
    assert ALL_SEQUENCES == (*SEQUENCES, "seg")


def test_discovered_segmentation_is_registered_and_optional(tmp_path):
    write_patient(tmp_path / "imgs" / "BraTS-1", "BraTS-1", style="2023")
    _write_seg(tmp_path / "imgs" / "BraTS-1" / "BraTS-1-seg.nii.gz")
    write_patient(tmp_path / "imgs" / "BraTS-2", "BraTS-2", style="2023")   # no segmentation
    report = ingest(tmp_path / "store", discover=tmp_path / "imgs", site="A")
    assert report.patient_ids == ("BraTS-1", "BraTS-2") and report.n_scans == 9
    assert report.n_segmented == 1 and "; 1 patient(s) with a tumour segmentation" in report.summary()
    scans = _scans(tmp_path / "store")
    assert scans.groupby("patient_id")["sequence"].apply(set).to_dict() == {
        "BraTS-1": {"t1", "t1ce", "t2", "flair", "seg"}, "BraTS-2": {"t1", "t1ce", "t2", "flair"}}
    seg = scans[scans["sequence"] == "seg"].iloc[0]
    assert seg["path"].endswith("BraTS-1-seg.nii.gz")
    import hashlib
    from pathlib import Path
    assert seg["sha256"] == hashlib.sha256(Path(seg["path"]).read_bytes()).hexdigest()


def test_manifest_seg_column_with_an_empty_cell(tmp_path):
    rows = []
    for pid in ("P1", "P2"):
        paths = write_patient(tmp_path / "imgs" / pid, pid)
        seg = _write_seg(tmp_path / "imgs" / pid / f"{pid}_seg.nii.gz") if pid == "P1" else None
        rows.append([pid, "A", *paths.values(), seg])
    manifest = write_csv(tmp_path / "m.csv", ["patient_id", "site", "t1", "t1ce", "t2", "flair", "seg"], rows)
    report = ingest(tmp_path / "store", manifest=manifest)
    assert report.n_scans == 9
    scans = _scans(tmp_path / "store")
    assert scans[scans["sequence"] == "seg"]["patient_id"].tolist() == ["P1"]


def test_manifest_without_seg_column_still_works(tmp_path):
    paths = write_patient(tmp_path / "imgs" / "P1", "P1")
    manifest = write_csv(tmp_path / "m.csv", ["patient_id", "site", "t1", "t1ce", "t2", "flair"],
                         [["P1", "A", *paths.values()]])
    report = ingest(tmp_path / "store", manifest=manifest)
    assert report.n_scans == 4 and report.n_segmented == 0 and "segmentation" not in report.summary()


@pytest.mark.parametrize(("shape", "affine", "match"), [
    ((8, 8, 6), None, r"shape \(8, 8, 6\), not \(8, 8, 8\)"),
    (SHAPE, np.diag([2.0, 1.0, 1.0, 1.0]), r"affine differs by up to 1"),
])
def test_segmentation_off_grid_is_refused_and_nothing_written(tmp_path, shape, affine, match):
    write_patient(tmp_path / "imgs" / "P0", "P0")
    ingest(tmp_path / "store", discover=tmp_path / "imgs", site="A")
    before = store_files(tmp_path / "store")
    write_patient(tmp_path / "more" / "P1", "P1")
    seg = _write_seg(tmp_path / "more" / "P1" / "P1_seg.nii.gz", shape=shape, affine=affine)
    with pytest.raises(IngestError, match=r"P1.*the segmentation .*P1_seg\.nii\.gz is not on the grid of t1 \("
                                          + match) as info:
        ingest(tmp_path / "store", discover=tmp_path / "more", site="A")
    assert str(seg) in str(info.value)
    assert store_files(tmp_path / "store") == before


def test_off_grid_segmentation_with_skip_bad_rejects_only_that_patient(tmp_path):
    for pid in ("P1", "P2"):
        write_patient(tmp_path / "imgs" / pid, pid)
    _write_seg(tmp_path / "imgs" / "P1" / "P1_seg.nii.gz", shape=(8, 8, 6))
    report = ingest(tmp_path / "store", discover=tmp_path / "imgs", site="A", skip_bad=True)
    assert report.patient_ids == ("P2",)
    assert [(p.patient_id, p.column) for p in report.rejects] == [("P1", "seg")]


def test_a_lone_segmentation_is_a_missing_patient(tmp_path):
    folder = tmp_path / "imgs" / "P1"
    write_nifti(folder / "P1_t1.nii.gz")
    _write_seg(folder / "P1_seg.nii.gz")
    with pytest.raises(IngestError, match=r"missing sequence\(s\) t1ce, t2, flair"):
        ingest(tmp_path / "store", discover=tmp_path / "imgs", site="A")
