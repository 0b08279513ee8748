"""`neurofeat ingest` through Typer's CliRunner."""

from __future__ import annotations

from typer.testing import CliRunner

from ingest_helpers import store_files, write_patient
from neurofeat.cli import app
from neurofeat.store import connect

runner = CliRunner()

HEADER = ["ID", "IDH status", "MGMT status", "Overall survival (days)"]


def test_help_lists_modes_and_examples():
    result = runner.invoke(app, ["ingest", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for text in ("--manifest", "--clinical", "--discover", "--mapping", "--skip-bad", "--site",
                 "neurofeat ingest --manifest cohort/manifest.csv"):
        assert text in result.output


def test_ingest_manifest_and_clinical(cohort):
    c = cohort(clinical_header=HEADER, clinical_rows=[["P1", "mutant", "methylated", "100"],
                                                      ["P2", "wt", "unmethylated", "200"],
                                                      ["P3", "", "", ""]])
    result = runner.invoke(app, ["ingest", "--manifest", str(c["manifest"]), "--clinical",
                                 str(c["clinical"]), "--store", str(c["store"])],
                           env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "registered 3 patient(s), 12 scan(s), 3 clinical row(s)" in result.output
    assert "IDH status" in result.output and "idh1" in result.output   # the column map table
    rows = connect(c["store"]).sql("select patient_id, idh1 from clinical order by 1").fetchall()
    assert rows == [("P1", True), ("P2", False), ("P3", None)]


def test_bad_value_is_a_clean_error(cohort):
    c = cohort(clinical_header=HEADER, clinical_rows=[["P1", "maybe", "", ""]])
    result = runner.invoke(app, ["ingest", "-m", str(c["manifest"]), "-c", str(c["clinical"]),
                                 "-s", str(c["store"])], env={"COLUMNS": "200"})
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert "error: ingest refused" in result.output
    assert "clinical.csv row 2 (patient P1): 'IDH status' (-> idh1) is 'maybe'" in result.output
    assert store_files(c["store"]) == set()


def test_skip_bad_reports_and_records(cohort):
    c = cohort(clinical_header=HEADER, clinical_rows=[["P1", "maybe", "", ""], ["P2", "wt", "", "-4"]])
    result = runner.invoke(app, ["ingest", "-m", str(c["manifest"]), "-c", str(c["clinical"]),
                                 "--skip-bad", "-s", str(c["store"])], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "registered 1 patient(s)" in result.output
    assert "rejected 2 patient(s)" in result.output
    con = connect(c["store"])
    assert con.sql("select patient_id from patients").fetchall() == [("P3",)]
    assert sorted(con.sql("select patient_id from ingest_rejects").fetchall()) == [("P1",), ("P2",)]


def test_discover_with_site(tmp_path):
    write_patient(tmp_path / "imgs" / "B1", "B1", style="2020")
    result = runner.invoke(app, ["ingest", "--discover", str(tmp_path / "imgs"), "--site", "brats",
                                 "--store", str(tmp_path / "S")])
    assert result.exit_code == 0, result.output
    assert connect(tmp_path / "S").sql("select site from patients").fetchall() == [("brats",)]


def test_nothing_to_ingest():
    result = runner.invoke(app, ["ingest", "--site", "x"])
    assert result.exit_code == 1
    assert "nothing to ingest: pass --manifest FILE, --discover FOLDER or --clinical FILE" in result.output


def test_missing_file_is_a_clean_error(tmp_path):
    result = runner.invoke(app, ["ingest", "--clinical", str(tmp_path / "nope.csv"), "--site", "A",
                                 "--store", str(tmp_path / "S")])
    assert result.exit_code == 1
    assert "nope.csv: file does not exist" in result.output and "Traceback" not in result.output


def test_bad_mapping_is_a_clean_error(tmp_path):
    (tmp_path / "c.csv").write_text("patient_id,idh1\nP1,wt\n")
    (tmp_path / "m.toml").write_text("[columns]\nidh = [\"x\"]\n")
    result = runner.invoke(app, ["ingest", "--clinical", str(tmp_path / "c.csv"), "--site", "A",
                                 "--mapping", str(tmp_path / "m.toml"), "--store", str(tmp_path / "S")])
    assert result.exit_code == 1
    assert "'idh' is not a canonical column" in result.output
