"""Per-patient checks (pure functions over inspected scans and ids)."""

from __future__ import annotations

import numpy as np
import pytest

from neurofeat.ingest.nifti import ScanInfo
from neurofeat.ingest.validate import (
    Problem,
    check_geometry,
    check_sequences_present,
    find_already_stored,
    find_duplicate_ids,
    find_unknown_patients,
)


def _info(shape=(8, 8, 8), affine=None) -> ScanInfo:
    affine = np.eye(4) if affine is None else np.asarray(affine)
    return ScanInfo(path=__import__("pathlib").Path("/x.nii.gz"), sha256="0" * 64, shape=shape,
                    spacing=(1.0, 1.0, 1.0), affine=tuple(affine.ravel().tolist()))


def test_all_sequences_present():
    assert check_sequences_present("P1", {"t1": 1, "t1ce": 1, "t2": 1, "flair": 1}, source="m.csv") == []


def test_missing_sequences():
    (problem,) = check_sequences_present("P1", {"t1": "a", "t2": "", "flair": "c"}, source="m.csv")
    assert problem.patient_id == "P1" and problem.column == "t1ce, t2"
    assert str(problem) == ("m.csv (patient P1): missing sequence(s) t1ce, t2; every patient needs "
                            "t1, t1ce, t2 and flair (add the files, or pass --skip-bad to leave "
                            "this patient out)")


def test_same_geometry_passes():
    infos = {s: _info() for s in ("t1", "t1ce", "t2", "flair")}
    assert check_geometry("P1", infos, source="m.csv") == []


def test_shape_mismatch():
    infos = {"t1": _info(), "t1ce": _info(), "t2": _info(shape=(8, 8, 9)), "flair": _info()}
    (problem,) = check_geometry("P1", infos, source="m.csv")
    assert problem.column == "t2"
    assert "t2 has shape (8, 8, 9) but t1 has (8, 8, 8)" in problem.reason


def test_affine_mismatch_beyond_tolerance():
    shifted = np.eye(4)
    shifted[0, 3] = 2.0
    infos = {"t1": _info(), "t1ce": _info(), "t2": _info(), "flair": _info(affine=shifted)}
    (problem,) = check_geometry("P1", infos, source="m.csv")
    assert problem.column == "flair"
    assert "flair has a different affine from t1 (largest difference 2)" in problem.reason


def test_affine_within_tolerance():
    nudged = np.eye(4)
    nudged[0, 3] = 1e-6
    infos = {"t1": _info(), "flair": _info(affine=nudged)}
    assert check_geometry("P1", infos, source="m.csv") == []


def test_duplicate_ids_name_every_row():
    problems = find_duplicate_ids([(2, "P1"), (3, "P2"), (5, "P1")], source="c.csv")
    assert [(p.patient_id, p.row) for p in problems] == [("P1", 2), ("P1", 5)]
    assert str(problems[0]) == ("c.csv row 2 (patient P1): patient id 'P1' appears on rows 2, 5; "
                                "patient ids must be unique: merge the rows or fix the id")


def test_unknown_patient():
    (problem,) = find_unknown_patients([(2, "P1"), (3, "P9")], {"P1", "P2"}, source="c.csv",
                                       known_source="m.csv")
    assert str(problem) == ("c.csv row 3 (patient P9): patient 'P9' has no scans in m.csv; fix "
                            "the id, add the patient's scans, or remove the row")


def test_already_stored():
    (problem,) = find_already_stored(["P1", "P2"], ["P2", "P7"], source="m.csv", store="/s")
    assert problem.patient_id == "P2"
    assert "already in the store /s; nothing stored is changed" in problem.reason


@pytest.mark.parametrize(("problem", "text"), [
    (Problem(None, "c.csv", 4, "patient_id", "empty"), "c.csv row 4: empty"),
    (Problem("P1", "imgs", None, "t1", "bad"), "imgs (patient P1): bad"),
])
def test_problem_str(problem, text):
    assert str(problem) == text
