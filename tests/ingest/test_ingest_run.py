"""The ingest end to end: store contents, all-or-nothing, --skip-bad rejects, modes."""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow.parquet as pq
import pytest

from ingest_helpers import store_files, write_csv, write_nifti, write_patient
from neurofeat.ingest import IngestError, ingest
from neurofeat.ingest.sources import InputTableError
from neurofeat.store import Store, connect, read_table

CLIN_HEADER = ["ID", "IDH status", "MGMT status", "1p/19q", "Overall survival (days)",
               "1-dead 0-alive", "Age at diagnosis", "Gender", "WHO grade", "Ki-67",
               "Final pathologic diagnosis (WHO 2021)"]
CLIN_ROWS = [
    ["P1", "mutant", "methylated", "codeleted", "812", "0", "41", "F", "II", "5%",
     "Oligodendroglioma"],
    ["P2", "wildtype", "unmethylated", "non-codeleted", "300.5", "1", "67", "male", "WHO 4", "",
     "Glioblastoma"],
    ["P3", "NA", "", "unknown", "", "", "", "", "", "30", ""],
]


def _clinical_view(store):
    return connect(store).sql("select * from clinical order by patient_id").df()


def test_manifest_and_clinical_round_trip(cohort):
    c = cohort(clinical_header=CLIN_HEADER, clinical_rows=CLIN_ROWS)
    report = ingest(c["store"], manifest=c["manifest"], clinical=c["clinical"])
    assert report.patient_ids == ("P1", "P2", "P3")
    assert report.n_scans == 12 and report.n_clinical == 3 and report.rejects == ()
    assert report.per_site() == {"A": 2, "B": 1}
    assert ("IDH status", "idh1") in report.column_map

    store = Store.open(c["store"])
    scans = read_table(store, "scans").to_pandas()
    assert len(scans) == 12
    assert sorted(scans["sequence"].unique()) == ["flair", "t1", "t1ce", "t2"]
    for row in scans.itertuples():
        assert row.path.startswith("/")
        with open(row.path, "rb") as fh:
            assert row.sha256 == hashlib.sha256(fh.read()).hexdigest()
        assert list(row.shape) == [8, 8, 8]
        assert list(row.spacing) == [1.0, 1.0, 1.0]
        np.testing.assert_array_equal(np.asarray(row.affine).reshape(4, 4), np.eye(4))
    assert scans["ingest_run_id"].unique().tolist() == [report.run_id]

    view = _clinical_view(c["store"])
    p1, p2, p3 = (view.iloc[i] for i in range(3))
    assert (p1.site, p1.idh1, p1.mgmt, p1.codel_1p19q, p1.os_days, p1.os_event) == \
        ("A", True, True, True, 812.0, False)
    assert (p1.age, p1.sex, p1.grade, p1.ki67, p1.histology) == (41.0, "F", 2, 5.0, "Oligodendroglioma")
    assert (p2.idh1, p2.mgmt, p2.codel_1p19q, p2.os_days, p2.os_event, p2.sex, p2.grade) == \
        (False, False, False, 300.5, True, "M", 4)
    # unknown markers are NULL, never a sentinel
    assert view.loc[2, ["idh1", "mgmt", "codel_1p19q", "os_days", "os_event", "age", "sex",
                        "grade", "histology"]].isna().all()
    assert p3.ki67 == 30.0


def test_written_files_have_the_store_schemas(cohort):
    from neurofeat.store.schema import CLINICAL_SCHEMA, PATIENTS_SCHEMA, SCANS_SCHEMA

    c = cohort(clinical_header=CLIN_HEADER, clinical_rows=CLIN_ROWS)
    ingest(c["store"], manifest=c["manifest"], clinical=c["clinical"])
    for name, schema in (("patients", PATIENTS_SCHEMA), ("scans", SCANS_SCHEMA),
                         ("clinical", CLINICAL_SCHEMA)):
        (part,) = (c["store"] / name).glob("*.parquet")
        assert pq.read_schema(part).remove_metadata().equals(schema), name


def test_manifest_without_clinical(cohort):
    c = cohort(("P1", "P2"))
    report = ingest(c["store"], manifest=c["manifest"])
    assert report.n_patients == 2 and report.n_clinical == 0
    view = _clinical_view(c["store"])
    assert view["patient_id"].tolist() == ["P1", "P2"] and view["idh1"].isna().all()


def test_clinical_only_mode(tmp_path):
    clinical = write_csv(tmp_path / "clin.csv", ["patient_id", "site", "idh1", "os_days"],
                         [["X1", "S1", "true", "10"], ["X2", "", "false", ""]])
    report = ingest(tmp_path / "store", clinical=clinical, site="default_site")
    assert report.mode == "clinical" and report.n_scans == 0
    view = _clinical_view(tmp_path / "store")
    assert view["site"].tolist() == ["S1", "default_site"]
    assert view["idh1"].tolist() == [True, False]
    assert read_table(Store.open(tmp_path / "store"), "scans").num_rows == 0


def test_discovery_with_clinical(tmp_path):
    write_patient(tmp_path / "imgs" / "BraTS-1", "BraTS-1", style="2023")
    write_patient(tmp_path / "imgs" / "BraTS2021_2", "BraTS2021_2", style="2020")
    clinical = write_csv(tmp_path / "clin.csv", ["BraTS21ID", "MGMT_value"],
                         [["BraTS-1", 1], ["BraTS2021_2", 0]])
    report = ingest(tmp_path / "store", discover=tmp_path / "imgs", clinical=clinical, site="brats")
    assert report.patient_ids == ("BraTS-1", "BraTS2021_2") and report.n_scans == 8
    view = _clinical_view(tmp_path / "store")
    assert view["mgmt"].tolist() == [True, False] and set(view["site"]) == {"brats"}


def test_site_from_clinical_and_conflict(cohort):
    c = cohort(("P1", "P2"), clinical_header=["patient_id", "site"],
               clinical_rows=[["P1", "A"], ["P2", "Z"]])
    before = store_files(c["store"])
    with pytest.raises(IngestError, match=r"clinical.csv row 3 \(patient P2\): site is 'Z' in the clinical table but 'B' in .*manifest.csv; make them agree"):
        ingest(c["store"], manifest=c["manifest"], clinical=c["clinical"])
    assert store_files(c["store"]) == before


def test_no_site_anywhere(tmp_path):
    clinical = write_csv(tmp_path / "clin.csv", ["patient_id", "idh1"], [["X1", "wt"]])
    with pytest.raises(IngestError, match=r"no site: add a 'site' column .* or pass --site NAME"):
        ingest(tmp_path / "store", clinical=clinical)
    assert not (tmp_path / "store").exists()


# ------------------------------------------------------------------ all or nothing


@pytest.mark.parametrize(("case", "match"), [
    ("bad_value", r"clinical.csv row 3 \(patient P2\): 'MGMT status' \(-> mgmt\) is 'maybe'; use methylated/unmethylated"),
    ("os_days_zero", r"clinical.csv row 2 \(patient P1\): 'Overall survival \(days\)' \(-> os_days\) is '0'; os_days must be > 0"),
    ("os_days_negative", r"row 2 \(patient P1\): .*is '-12'; os_days must be > 0"),
    ("unknown_patient", r"clinical.csv row 5 \(patient P9\): patient 'P9' has no scans in .*manifest.csv"),
    ("duplicate_clinical", r"clinical.csv row 2 \(patient P1\): patient id 'P1' appears on rows 2, 5"),
    ("duplicate_manifest", r"manifest.csv row 2 \(patient P1\): patient id 'P1' appears on rows 2, 5"),
    ("missing_sequence", r"manifest.csv \(patient P2\): missing sequence\(s\) flair"),
    ("truncated", r"manifest.csv row 3 \(patient P2\): t1ce scan .*P2-t1c.nii.gz: is truncated or corrupt"),
    ("unreadable", r"manifest.csv row 2 \(patient P1\): t2 scan .*P1-t2w.nii.gz: cannot be read as NIfTI"),
    ("shape", r"\(patient P2\): t2 has shape \(8, 8, 9\) but t1 has \(8, 8, 8\)"),
    ("affine", r"\(patient P1\): flair has a different affine from t1"),
])
def test_bad_input_writes_nothing(cohort, tmp_path, case, match):
    header = ["ID", "MGMT status", "Overall survival (days)"]
    rows = [["P1", "methylated", "100"], ["P2", "unmethylated", "200"], ["P3", "", ""]]
    if case == "bad_value":
        rows[1][1] = "maybe"
    elif case == "os_days_zero":
        rows[0][2] = "0"
    elif case == "os_days_negative":
        rows[0][2] = "-12"
    elif case == "unknown_patient":
        rows.append(["P9", "", ""])
    elif case == "duplicate_clinical":
        rows.append(["P1", "", ""])
    c = cohort(clinical_header=header, clinical_rows=rows)
    images = c["root"] / "images"
    if case == "duplicate_manifest":
        with open(c["manifest"], "a") as fh:
            fh.write("P1,A,a.nii.gz,b.nii.gz,c.nii.gz,d.nii.gz\n")
    elif case == "missing_sequence":
        text = c["manifest"].read_text().splitlines()
        text[2] = ",".join(text[2].split(",")[:5] + [""])
        c["manifest"].write_text("\n".join(text) + "\n")
    elif case == "truncated":
        scan = images / "P2" / "P2-t1c.nii.gz"
        scan.write_bytes(scan.read_bytes()[:-40])
    elif case == "unreadable":
        (images / "P1" / "P1-t2w.nii.gz").write_bytes(b"not a nifti at all")
    elif case == "shape":
        write_nifti(images / "P2" / "P2-t2w.nii.gz", shape=(8, 8, 9))
    elif case == "affine":
        affine = np.eye(4)
        affine[:3, 3] = [5.0, 0.0, 0.0]
        write_nifti(images / "P1" / "P1-t2f.nii.gz", affine=affine)

    # an existing store with one patient: the failed ingest must leave it exactly as it was
    seed = write_csv(tmp_path / "seed.csv", ["patient_id", "site"], [["OLD", "A"]])
    ingest(c["store"], clinical=seed)
    before = store_files(c["store"])
    before_bytes = {f: (c["store"] / f).read_bytes() for f in before}
    with pytest.raises(IngestError, match=match) as info:
        ingest(c["store"], manifest=c["manifest"], clinical=c["clinical"])
    assert "nothing was written" in str(info.value)
    assert info.value.problems
    assert store_files(c["store"]) == before
    assert {f: (c["store"] / f).read_bytes() for f in before} == before_bytes
    assert connect(c["store"]).sql("select patient_id from patients").fetchall() == [("OLD",)]


def test_failed_first_ingest_creates_no_store(cohort):
    c = cohort(clinical_header=["ID", "idh1"], clinical_rows=[["P1", "maybe"]])
    with pytest.raises(IngestError):
        ingest(c["store"], manifest=c["manifest"], clinical=c["clinical"])
    assert not c["store"].exists()


def test_every_problem_is_reported_at_once(cohort):
    c = cohort(clinical_header=["ID", "idh1", "os_days"],
               clinical_rows=[["P1", "maybe", "-1"], ["P2", "wt", "x"], ["P3", "mutant", "5"]])
    with pytest.raises(IngestError) as info:
        ingest(c["store"], manifest=c["manifest"], clinical=c["clinical"])
    assert len(info.value.problems) == 3
    assert {p.patient_id for p in info.value.problems} == {"P1", "P2"}


# ------------------------------------------------------------------ refusing stored patients


def test_patients_already_in_store_are_refused(cohort):
    c = cohort(clinical_header=CLIN_HEADER, clinical_rows=CLIN_ROWS)
    ingest(c["store"], manifest=c["manifest"], clinical=c["clinical"])
    before = {f: (c["store"] / f).read_bytes() for f in store_files(c["store"])}
    with pytest.raises(IngestError, match=r"patient 'P1' is already in the store .*; nothing stored is changed"):
        ingest(c["store"], manifest=c["manifest"], clinical=c["clinical"])
    assert {f: (c["store"] / f).read_bytes() for f in store_files(c["store"])} == before
    assert len(_clinical_view(c["store"])) == 3


def test_a_second_cohort_is_added(cohort, tmp_path):
    c = cohort(("P1", "P2"))
    ingest(c["store"], manifest=c["manifest"])
    write_patient(tmp_path / "more" / "Q1", "Q1")
    ingest(c["store"], discover=tmp_path / "more", site="C")
    assert _clinical_view(c["store"])["patient_id"].tolist() == ["P1", "P2", "Q1"]


def test_a_non_store_folder_is_refused(cohort):
    c = cohort(("P1",))
    c["store"].mkdir()
    (c["store"] / "thesis.docx").write_text("precious")
    with pytest.raises(IngestError, match="exists, is not empty and is not a neurofeat store"):
        ingest(c["store"], manifest=c["manifest"])
    assert store_files(c["store"]) == {"thesis.docx"}


def test_a_store_created_concurrently_after_the_first_look_is_used_not_refused(cohort, monkeypatch):
    """Two ingests into one new store: this one found no store.json, then the other
    created the store (store.json, then its tables) before this one listed the folder.
    The folder is that store, not someone else's (a race seen in the concurrency tests)."""
    from pathlib import Path

    c = cohort(("P1", "P2"))
    root = c["store"].absolute()
    root.mkdir()
    iterdir = Path.iterdir
    created = []

    def concurrent_create(self):
        if self.absolute() == root and not created:
            created.append(True)
            Store.open(root, create=True)
            (root / "patients").mkdir(exist_ok=True)
        return iterdir(self)

    monkeypatch.setattr(Path, "iterdir", concurrent_create)
    ingest(c["store"], manifest=c["manifest"])
    assert created
    assert sorted(read_table(Store.open(c["store"]), "patients")["patient_id"].to_pylist()) == ["P1", "P2"]


# ------------------------------------------------------------------ --skip-bad


def test_skip_bad_records_rejects(cohort):
    c = cohort(("P1", "P2", "P3", "P4"),
               clinical_header=["ID", "IDH status", "Overall survival (days)"],
               clinical_rows=[["P1", "mutant", "100"], ["P2", "maybe", "100"],
                              ["P3", "wt", "0"], ["P4", "wt", "50"], ["P9", "wt", "1"]])
    scan = c["root"] / "images" / "P4" / "P4-t2w.nii.gz"
    scan.write_bytes(scan.read_bytes()[:-40])
    report = ingest(c["store"], manifest=c["manifest"], clinical=c["clinical"], skip_bad=True)
    assert report.patient_ids == ("P1",)
    assert set(report.rejected_ids) == {"P2", "P3", "P4", "P9"}
    rejects = connect(c["store"]).sql(
        "select patient_id, source, row, \"column\", reason, ingest_run_id from ingest_rejects "
        "order by patient_id").df()
    assert rejects["patient_id"].tolist() == ["P2", "P3", "P4", "P9"]
    assert rejects["ingest_run_id"].unique().tolist() == [report.run_id]
    p2 = rejects.iloc[0]
    assert p2.source.endswith("clinical.csv") and p2.row == 3 and p2.column == "IDH status"
    assert "'IDH status' (-> idh1) is 'maybe'" in p2.reason
    assert "os_days must be > 0" in rejects.iloc[1].reason
    assert rejects.iloc[2].column == "t2" and "truncated" in rejects.iloc[2].reason
    assert "has no scans in" in rejects.iloc[3].reason
    # only the good patient is registered, with all of its rows
    con = connect(c["store"])
    assert con.sql("select patient_id from patients").fetchall() == [("P1",)]
    assert con.sql("select count(*) from scans").fetchall() == [(4,)]
    assert con.sql("select patient_id, idh1 from clinical_labels").fetchall() == [("P1", True)]
    frame = report.to_frame()
    assert set(frame.loc[frame.status == "rejected", "patient_id"]) == {"P2", "P3", "P4", "P9"}
    assert "rejected 4 patient(s)" in report.summary()


def test_skip_bad_with_stored_patients(cohort):
    c = cohort(("P1", "P2"))
    ingest(c["store"], manifest=c["manifest"])
    report = ingest(c["store"], manifest=c["manifest"], skip_bad=True)
    assert report.patient_ids == () and set(report.rejected_ids) == {"P1", "P2"}
    con = connect(c["store"])
    assert con.sql("select count(*) from patients").fetchall() == [(2,)]
    assert con.sql("select count(*) from ingest_rejects").fetchall() == [(2,)]


def test_dry_run_writes_nothing(cohort):
    c = cohort(clinical_header=CLIN_HEADER, clinical_rows=CLIN_ROWS)
    report = ingest(c["store"], manifest=c["manifest"], clinical=c["clinical"], dry_run=True)
    assert report.n_patients == 3 and report.n_scans == 12 and report.dry_run
    assert not c["store"].exists()
    assert "would register 3 patient(s)" in report.summary()


# ------------------------------------------------------------------ input errors


def test_manifest_without_a_sequence_column(tmp_path):
    manifest = write_csv(tmp_path / "m.csv", ["patient_id", "site", "t1", "t1ce", "t2"],
                         [["P1", "A", "a", "b", "c"]])
    with pytest.raises(InputTableError, match=r"m.csv: no column for sequence\(s\) flair"):
        ingest(tmp_path / "store", manifest=manifest)


def test_manifest_with_sequence_aliases_and_absolute_paths(tmp_path):
    paths = write_patient(tmp_path / "imgs" / "P1", "P1")
    manifest = write_csv(tmp_path / "m.csv", ["Subject", "Institution", "T1N", "T1C", "T2W", "T2F"],
                         [["P1", "A", *(str(p) for p in paths.values())]])
    report = ingest(tmp_path / "store", manifest=manifest)
    assert report.n_scans == 4 and report.per_site() == {"A": 1}


def test_empty_patient_id(cohort):
    c = cohort(("P1",), clinical_header=["patient_id", "idh1"], clinical_rows=[["", "wt"]])
    with pytest.raises(IngestError, match=r"clinical.csv row 2: the patient id is empty"):
        ingest(c["store"], manifest=c["manifest"], clinical=c["clinical"])


def test_missing_clinical_file(tmp_path):
    with pytest.raises(InputTableError, match=r"--clinical .*nope.csv: file does not exist"):
        ingest(tmp_path / "store", clinical=tmp_path / "nope.csv", site="A")


def test_row_with_too_many_cells(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("patient_id,idh1\nP1,wt\nP2,wt,extra\n")
    with pytest.raises(InputTableError, match=r"c.csv row 3: 3 cells but the header has 2 columns"):
        ingest(tmp_path / "store", clinical=path, site="A")


def test_tsv_and_semicolon_tables(tmp_path):
    (tmp_path / "c.tsv").write_text("patient_id\tidh1\nP1\tmutant\n")
    (tmp_path / "c2.csv").write_text("patient_id;idh1;ki67\nP2;wt;12,5\n")
    ingest(tmp_path / "store", clinical=tmp_path / "c.tsv", site="A")
    with pytest.raises(IngestError, match=r"c2.csv row 2 \(patient P2\): 'ki67' is '12,5'"):
        ingest(tmp_path / "store", clinical=tmp_path / "c2.csv", site="A")


def test_months_are_converted_with_the_default_units(tmp_path):
    clinical = write_csv(tmp_path / "tcga.csv",
                         ["Case", "Survival (months)", "Vital status (1=dead)", "Grade", "IDH status"],
                         [["TCGA-1", "12", "1", "G4", "WT"]])
    ingest(tmp_path / "store", clinical=clinical, site="tcga")
    row = _clinical_view(tmp_path / "store").iloc[0]
    assert row.os_days == pytest.approx(365.25) and row.os_event and row.grade == 4
    assert not row.idh1


def test_user_mapping_file(tmp_path):
    clinical = write_csv(tmp_path / "c.csv", ["pid", "IDH (IHC)"], [["X1", "R132H+"]])
    mapping = tmp_path / "m.toml"
    mapping.write_text('[columns]\npatient_id = ["pid"]\nidh1 = ["IDH (IHC)"]\n'
                       '[values.idh1]\n"r132h+" = true\n')
    ingest(tmp_path / "store", clinical=clinical, site="A", mapping=mapping)
    assert _clinical_view(tmp_path / "store").iloc[0].idh1


def test_synthetic_clinical_csv_round_trips(tmp_path):
    """The synth → ingest contract: clinical.csv of `neurofeat synth` ingests unchanged."""
    import pandas as pd

    from neurofeat.synth.cohort import clinical_csv_text, simulate_tables

    tables = simulate_tables(200, n_sites=3, seed=3)
    path = tmp_path / "clinical.csv"
    path.write_text(clinical_csv_text(tables.clinical))
    report = ingest(tmp_path / "store", clinical=path)
    assert report.n_patients == 200 and report.rejects == ()
    stored = _clinical_view(tmp_path / "store").set_index("patient_id")
    expected = tables.clinical.set_index("patient_id").sort_index()
    for column in expected.columns:
        left = stored[column].astype(object).where(stored[column].notna(), None).tolist()
        right = expected[column].astype(object).where(expected[column].notna(), None).tolist()
        if expected[column].dtype.kind == "f":
            pd.testing.assert_series_equal(stored[column].astype(float), expected[column].astype(float),
                                           check_names=False, check_index=False, rtol=1e-9)
        else:
            assert [None if v is None else (int(v) if column == "grade" else v) for v in left] == \
                   [None if v is None else (int(v) if column == "grade" else v) for v in right], column
