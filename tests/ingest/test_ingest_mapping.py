"""Column/value mapping: defaults for BraTS/UCSF-PDGM/UPenn-GBM/TCGA names, user overrides."""

from __future__ import annotations

import pytest

from neurofeat.ingest.mapping import MappingError, column_key, load_mapping


@pytest.fixture(scope="module")
def default():
    return load_mapping()


def test_column_key():
    assert column_key("Overall survival (days)") == "overall_survival_days"
    assert column_key(" 1p/19q ") == "1p_19q"
    assert column_key("1-dead 0-alive") == "1_dead_0_alive"
    assert column_key("IDH1_mutation") == "idh1_mutation"


@pytest.mark.parametrize(("source", "canonical"), [
    ("IDH1", "idh1"), ("IDH status", "idh1"), ("IDH1_mutation", "idh1"), ("idh", "idh1"),
    ("MGMT status", "mgmt"), ("MGMT_promoter", "mgmt"), ("MGMT_value", "mgmt"),
    ("1p/19q", "codel_1p19q"), ("1p/19q codeletion", "codel_1p19q"),
    ("Overall survival (days)", "os_days"), ("OS", "os_days"),
    ("Survival_from_surgery_days", "os_days"), ("Survival (months)", "os_days"),
    ("Death", "os_event"), ("vital status", "os_event"), ("Vital_Status", "os_event"),
    ("1-dead 0-alive", "os_event"),
    ("Age at diagnosis", "age"), ("Age at MRI", "age"), ("Age_at_scan_years", "age"),
    ("WHO grade", "grade"), ("WHO CNS Grade", "grade"),
    ("Final pathologic diagnosis (WHO 2021)", "histology"),
    ("Gender", "sex"), ("Ki-67", "ki67"), ("ATRX status", "atrx"), ("TERT promoter status", "tert"),
    ("CDKN2A/B", "cdkn2a"), ("EGFR amplification", "egfr"), ("TP53", "tp53"),
    ("Institution", "site"),
])
def test_default_names(default, source, canonical):
    resolved = default.resolve(["patient_id", source])
    assert resolved.source_of[canonical] == source


@pytest.mark.parametrize("id_column", ["ID", "patient_id", "Patient", "BraTS21ID", "Subject",
                                       "case_id"])
def test_patient_id_names(default, id_column):
    assert default.resolve([id_column, "x"]).source_of["patient_id"] == id_column


def test_ucsf_pdgm_header(default):
    header = ["ID", "Sex", "Age at MRI", "WHO CNS Grade", "Final pathologic diagnosis (WHO 2021)",
              "MGMT status", "MGMT index", "1p/19q", "IDH", "1-dead 0-alive", "OS", "EOR",
              "Biopsy prior to imaging", "BraTS21 ID"]
    resolved = default.resolve(header)
    assert dict(resolved.source_of) == {
        "patient_id": "ID", "sex": "Sex", "age": "Age at MRI", "grade": "WHO CNS Grade",
        "histology": "Final pathologic diagnosis (WHO 2021)", "mgmt": "MGMT status",
        "codel_1p19q": "1p/19q", "idh1": "IDH", "os_event": "1-dead 0-alive", "os_days": "OS"}
    assert set(resolved.ignored) == {"MGMT index", "EOR", "Biopsy prior to imaging", "BraTS21 ID"}


def test_priority_first_listed_wins_and_loser_is_ignored(default):
    resolved = default.resolve(["ID", "OS", "Overall survival (days)"])
    assert resolved.source_of["os_days"] == "Overall survival (days)"
    assert "OS" in resolved.ignored


def test_canonical_name_always_wins(default):
    resolved = default.resolve(["patient_id", "IDH status", "idh1"])
    assert resolved.source_of["idh1"] == "idh1"


def test_units(default):
    assert default.factor_for("Survival (months)") == pytest.approx(30.4375)
    assert default.factor_for("OS") == 1.0


def test_no_patient_id_column(default):
    with pytest.raises(MappingError, match=r"clin.csv: no patient id column among .*\[columns\] patient_id"):
        default.resolve(["IDH", "MGMT"], source="clin.csv")


def test_two_columns_reading_alike(default):
    with pytest.raises(MappingError, match=r"columns 'IDH status' and 'IDH_status' both read as 'idh_status'"):
        default.resolve(["ID", "IDH status", "IDH_status"])


def test_user_mapping_extends_and_overrides(tmp_path):
    user = tmp_path / "m.toml"
    user.write_text(
        'unknown = ["pending"]\n'
        "[columns]\n"
        'idh1 = ["IDH (R132H IHC)"]\n'
        'os_days = ["Survival (weeks)"]\n'
        'os_event = ["OS"]\n'          # take a default os_days name for another column
        'ignore = ["Death"]\n'
        "[values.idh1]\n"
        '"R132H+" = true\n'
        "[units]\n"
        '"Survival (weeks)" = 7\n')
    mapping = load_mapping(user)
    resolved = mapping.resolve(["ID", "IDH (R132H IHC)", "Survival (weeks)", "OS", "Death"])
    assert resolved.source_of["idh1"] == "IDH (R132H IHC)"
    assert resolved.source_of["os_days"] == "Survival (weeks)"
    assert resolved.source_of["os_event"] == "OS"
    assert "Death" in resolved.ignored
    assert mapping.factor_for("Survival (weeks)") == 7.0
    assert mapping.words_for("idh1")["r132h+"] is True
    assert mapping.words_for("idh1")["r132h"] is True      # defaults kept
    assert "pending" in mapping.unknown
    # defaults still apply to columns the user did not touch
    assert mapping.resolve(["ID", "MGMT status"]).source_of["mgmt"] == "MGMT status"


@pytest.mark.parametrize(("text", "match"), [
    ("[columns]\nidh = [\"x\"]\n", r"\[columns\] 'idh' is not a canonical column"),
    ("[values.idh1]\n\"x\" = \"yes\"\n", r"a boolean column needs true or false"),
    ("[units]\n\"OS\" = -1\n", r"\[units\] 'OS' = -1; use a positive number"),
    ("[columns]\nidh1 = \"IDH\"\n", r"must be a list of strings"),
    ("[colums]\n", r"unknown section 'colums'"),
    ("[columns\n", r"is not valid TOML"),
])
def test_bad_user_mapping(tmp_path, text, match):
    user = tmp_path / "bad.toml"
    user.write_text(text)
    with pytest.raises(MappingError, match=match):
        load_mapping(user)


def test_missing_user_mapping(tmp_path):
    with pytest.raises(MappingError, match=r"does not exist; check the --mapping path"):
        load_mapping(tmp_path / "nope.toml")
