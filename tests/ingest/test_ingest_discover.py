"""Folder discovery for BraTS 2023 and BraTS 2020/21-style layouts."""

from __future__ import annotations

import pytest

from ingest_helpers import write_nifti, write_patient
from neurofeat.ingest.discover import DiscoveryError, discover_scans, sequence_of


@pytest.mark.parametrize(("name", "expected"), [
    ("BraTS-GLI-00000-000-t1n.nii.gz", ("BraTS-GLI-00000-000", "t1")),
    ("BraTS-GLI-00000-000-t1c.nii.gz", ("BraTS-GLI-00000-000", "t1ce")),
    ("BraTS-GLI-00000-000-t2w.nii.gz", ("BraTS-GLI-00000-000", "t2")),
    ("BraTS-GLI-00000-000-t2f.nii.gz", ("BraTS-GLI-00000-000", "flair")),
    ("BraTS2021_00000_t1.nii.gz", ("BraTS2021_00000", "t1")),
    ("BraTS2021_00000_t1ce.nii.gz", ("BraTS2021_00000", "t1ce")),
    ("BraTS2021_00000_t2.nii", ("BraTS2021_00000", "t2")),
    ("BraTS2021_00000_FLAIR.NII.GZ", ("BraTS2021_00000", "flair")),
    ("UPENN-GBM-00001_11_T1GD.nii.gz", ("UPENN-GBM-00001_11", "t1ce")),
    ("UCSF-PDGM-0004_T1c.nii.gz", ("UCSF-PDGM-0004", "t1ce")),
    ("t1.nii.gz", ("", "t1")),
    ("BraTS2021_00000_seg.nii.gz", ("BraTS2021_00000", "seg")),
    ("BraTS-GLI-00000-000-seg.nii.gz", ("BraTS-GLI-00000-000", "seg")),
])
def test_sequence_of(name, expected):
    assert sequence_of(name) == expected


@pytest.mark.parametrize("name", ["P1_T2_bias.nii.gz", "P1_seg.nii.gz.bak",
                                  "P1_t1.nii.gz.bak", "P1_t1.mgz", "P1_DWI.nii.gz", "P1-t1n.txt"])
def test_other_files_are_ignored(name):
    assert sequence_of(name) is None


@pytest.mark.parametrize(("style", "ext"), [("2023", ".nii.gz"), ("2020", ".nii.gz"), ("2020", ".nii")])
def test_both_naming_styles(tmp_path, style, ext):
    for pid in ("BraTS-P2", "BraTS-P1"):
        write_patient(tmp_path / pid, pid, style=style, ext=ext)
    write_nifti(tmp_path / "BraTS-P1" / f"BraTS-P1{'-' if style == '2023' else '_'}seg{ext}")
    found = discover_scans(tmp_path)
    assert [p.patient_id for p in found] == ["BraTS-P1", "BraTS-P2"]
    # the segmentation is optional: registered for P1, and P2 without one is complete
    assert set(found[0].scans) == {"t1", "t1ce", "t2", "flair", "seg"}
    assert set(found[1].scans) == {"t1", "t1ce", "t2", "flair"}
    for patient in found:
        assert patient.missing == ()
        assert all(p.is_absolute() and p.exists() for p in patient.scans.values())
        assert patient.scans["flair"].name.lower().endswith(("t2f" + ext, "flair" + ext))


def test_upper_case_names(tmp_path):
    folder = tmp_path / "P1"
    for seq in ("T1", "T1CE", "T2", "FLAIR"):
        write_nifti(folder / f"P1_{seq}.NII.GZ")
    (patient,) = discover_scans(tmp_path)
    assert set(patient.scans) == {"t1", "t1ce", "t2", "flair"}


def test_missing_sequence_is_reported(tmp_path):
    write_patient(tmp_path / "P1", "P1", sequences=("t1", "t2", "flair"))
    write_patient(tmp_path / "P2", "P2")
    found = {p.patient_id: p for p in discover_scans(tmp_path)}
    assert found["P1"].missing == ("t1ce",)
    assert found["P2"].missing == ()


def test_flat_and_nested_layouts(tmp_path):
    write_patient(tmp_path, "A1", style="2020")                       # side by side in root
    write_patient(tmp_path / "site_x" / "B1", "B1", style="2023")       # nested one level deeper
    assert [p.patient_id for p in discover_scans(tmp_path)] == ["A1", "B1"]


def test_folder_name_when_file_has_no_prefix(tmp_path):
    for seq in ("t1", "t1ce", "t2", "flair"):
        write_nifti(tmp_path / "Case_007" / f"{seq}.nii.gz")
    (patient,) = discover_scans(tmp_path)
    assert patient.patient_id == "Case_007"


def test_two_files_for_one_sequence(tmp_path):
    write_patient(tmp_path / "P1", "P1", style="2020")
    write_nifti(tmp_path / "P1" / "P1_t1.nii")
    with pytest.raises(DiscoveryError, match=r"patient P1 t1: two files, P1_t1.nii and P1_t1.nii.gz|patient P1 t1: two files, P1_t1.nii.gz and P1_t1.nii"):
        discover_scans(tmp_path)


def test_same_patient_in_two_folders(tmp_path):
    write_patient(tmp_path / "a" / "P1", "P1", sequences=("t1", "t1ce"))
    write_patient(tmp_path / "b" / "P1", "P1", sequences=("t2", "flair"))
    with pytest.raises(DiscoveryError, match=r"patient P1 is found in two folders: .*; remove or rename one"):
        discover_scans(tmp_path)


def test_empty_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DiscoveryError, match=r"no scan files found; expected names like <patient>-t1n.nii.gz"):
        discover_scans(tmp_path)


def test_not_a_folder(tmp_path):
    with pytest.raises(DiscoveryError, match=r"--discover .*nope: not a folder"):
        discover_scans(tmp_path / "nope")
