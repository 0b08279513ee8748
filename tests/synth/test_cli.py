"""``neurofeat synth`` through Typer's CliRunner."""

from __future__ import annotations

import csv

import pandas as pd
from typer.testing import CliRunner

from neurofeat.cli import app

runner = CliRunner()

CANONICAL = ["patient_id", "site", "age", "sex", "grade", "histology", "idh1", "mgmt", "codel_1p19q", "egfr",
             "atrx", "tp53", "cdkn2a", "tert", "ki67", "p53_ihc", "os_days", "os_event"]
BOOLEANS = ["idh1", "mgmt", "codel_1p19q", "egfr", "atrx", "tp53", "cdkn2a", "tert", "os_event"]


def test_synth_writes_a_cohort(tmp_path):
    out = tmp_path / "cohort"
    result = runner.invoke(
        app, ["synth", "--out", str(out), "--n", "12", "--sites", "2", "--seed", "3", "--size", "32", "--spacing", "4",
              "--site-effect", "0.5", "--jobs", "1"]
    )
    assert result.exit_code == 0, result.output
    assert "siteA" in result.output and "siteB" in result.output
    manifest = pd.read_csv(out / "manifest.csv")
    assert manifest.columns.tolist() == ["patient_id", "site", "t1", "t1ce", "t2", "flair", "seg"]
    assert all((out / path).exists() for path in manifest["seg"])
    assert manifest["site"].value_counts().to_dict() == {"siteA": 8, "siteB": 4}
    assert all((out / path).is_file() for path in manifest["flair"])
    with open(out / "clinical.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == CANONICAL
    for column in BOOLEANS:
        assert {row[column] for row in rows} <= {"true", "false", ""}, column
    assert any(row[column] == "" for row in rows for column in ("egfr", "tert", "ki67", "cdkn2a", "p53_ihc"))
    assert all(row["idh1"] in ("true", "false") for row in rows)
    assert all(float(row["os_days"]) > 0 for row in rows)
    assert {row["grade"] for row in rows} <= {"2", "3", "4"}
    assert (out / "truth.parquet").is_file() and (out / "synth.json").is_file()


def test_synth_refuses_an_existing_cohort_without_overwrite(tmp_path):
    out = tmp_path / "cohort"
    args = ["synth", "--out", str(out), "--n", "3", "--size", "16", "--spacing", "4", "--jobs", "1"]
    assert runner.invoke(app, args).exit_code == 0
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    assert "already holds a cohort" in result.output and "--overwrite" in result.output
    assert "Traceback" not in result.output
    assert runner.invoke(app, [*args, "--overwrite"]).exit_code == 0


def test_synth_reports_bad_arguments_without_traceback(tmp_path):
    result = runner.invoke(app, ["synth", "--out", str(tmp_path / "x"), "--sites", "30", "--n", "40"])
    assert result.exit_code == 1
    assert "n_sites is 30; use an integer in 1..26" in result.output
    assert "Traceback" not in result.output
    result = runner.invoke(app, ["synth", "--out", str(tmp_path / "y"), "--site-effect", "-2", "--n", "5"])
    assert result.exit_code == 1 and "site_effect is -2.0" in result.output


def test_synth_help_has_an_example():
    result = runner.invoke(app, ["synth", "--help"])
    assert result.exit_code == 0
    assert "Example: neurofeat synth --out cohort" in result.output
