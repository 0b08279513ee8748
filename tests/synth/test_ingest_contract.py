"""The cohort is accepted unchanged by ``neurofeat ingest`` and reads back equal."""

from __future__ import annotations

import pandas as pd

from neurofeat.synth import MARKERS


def test_ingest_accepts_the_cohort_and_keeps_the_nulls(small_cohort, tmp_path):
    from neurofeat.ingest.ingest import ingest
    from neurofeat.store import Store, connect

    report = ingest(tmp_path / "store", manifest=small_cohort.manifest_path, clinical=small_cohort.clinical_path)
    assert report.n_patients == 40
    con = connect(Store.open(tmp_path / "store", create=False))
    stored = con.sql("SELECT * FROM clinical ORDER BY patient_id").to_arrow_table().to_pandas()
    expected = small_cohort.clinical.sort_values("patient_id").reset_index(drop=True)
    assert stored["patient_id"].tolist() == expected["patient_id"].tolist()
    assert stored["site"].tolist() == expected["site"].tolist()
    for column in (*MARKERS, "os_event"):
        a = stored[column].astype("boolean")
        b = expected[column].astype("boolean")
        assert (a.isna() == b.isna()).all(), column
        assert (a[a.notna()] == b[b.notna()]).all(), column
    for column in ("ki67", "p53_ihc", "os_days", "age"):
        pd.testing.assert_series_equal(stored[column].astype(float), expected[column].astype(float), check_names=False, atol=1e-6)
    assert stored["grade"].astype(int).tolist() == expected["grade"].astype(int).tolist()
    n_scans = con.sql("SELECT count(*) FROM scans").fetchall()[0][0]
    assert n_scans == 200  # four sequences and the tumour segmentation per patient
