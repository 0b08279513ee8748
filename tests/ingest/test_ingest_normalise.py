"""Every value-normalisation rule of neurofeat.ingest.normalise, and its error messages."""

from __future__ import annotations

import math
import re

import pytest

from neurofeat.ingest.normalise import (
    BOOL_COLUMNS,
    UNKNOWN_MARKERS,
    ClinicalValueError,
    ValueNormalisationError,
    accepted_words,
    is_unknown,
    normalise_age,
    normalise_bool,
    normalise_grade,
    normalise_os_days,
    normalise_percent,
    normalise_sex,
    normalise_text,
    normalise_value,
)

# ---------------------------------------------------------------- unknown markers


@pytest.mark.parametrize("value", ["", "  ", "NA", "na", "N/A", "n/a", "NaN", "nan", "unknown",
                                   "Unknown ", "-", "--", "?", "null", "Not Available",
                                   "indeterminate", "NOS/NEC", None, float("nan")])
def test_unknown_markers_are_null(value):
    assert is_unknown(value)
    for column in ("idh1", "mgmt", "os_event", "ki67", "os_days", "age", "sex", "grade",
                   "histology", "site"):
        assert normalise_value(column, value) is None


@pytest.mark.parametrize("value", ["0", 0, "no", "wt", "x", False])
def test_real_values_are_not_unknown(value):
    assert not is_unknown(value)


def test_extra_unknown_markers():
    assert normalise_value("idh1", " Pending ", extra_unknown=frozenset({"pending"})) is None
    with pytest.raises(ValueNormalisationError, match="'idh1' is 'pending'"):
        normalise_value("idh1", "pending")


def test_unknown_marker_set_has_the_documented_ones():
    assert {"", "na", "n/a", "nan", "unknown", "-"} <= UNKNOWN_MARKERS


# ---------------------------------------------------------------- booleans

GENERIC = [("true", True), ("FALSE", False), ("Yes", True), ("no", False), ("y", True),
           ("N", False), ("1", True), ("0", False), ("1.0", True), ("0.0", False),
           (1, True), (0, False), (1.0, True), (0.0, False), (True, True), (False, False),
           ("positive", True), ("Negative", False), ("altered", True), ("not altered", False)]


@pytest.mark.parametrize("column", BOOL_COLUMNS)
@pytest.mark.parametrize(("value", "expected"), GENERIC)
def test_generic_booleans_for_every_column(column, value, expected):
    assert normalise_bool(value, column) is expected


SPECIFIC = [
    ("idh1", "mutant", True), ("idh1", "Mutated", True), ("idh1", "wt", False),
    ("idh1", "wildtype", False), ("idh1", "Wild-type", False), ("idh1", "wild type", False),
    ("idh1", "mutated (NOS)", True), ("idh1", "Wildtype (IHC)", False),
    ("mgmt", "methylated", True), ("mgmt", "Unmethylated", False), ("mgmt", "meth", True),
    ("codel_1p19q", "codeleted", True), ("codel_1p19q", "co-deleted", True),
    ("codel_1p19q", "non-codeleted", False), ("codel_1p19q", "Non-Codeleted", False),
    ("codel_1p19q", "intact", False),
    ("egfr", "amplified", True), ("egfr", "not amplified", False), ("egfr", "mutant", True),
    ("atrx", "lost", True), ("atrx", "retained", False), ("atrx", "loss", True),
    ("atrx", "wt", False),
    ("tp53", "mutant", True), ("tp53", "wildtype", False),
    ("cdkn2a", "deleted", True), ("cdkn2a", "homozygous deletion", True),
    ("cdkn2a", "retained", False), ("cdkn2a", "lost", True),
    ("tert", "mutant", True), ("tert", "WT", False),
    ("os_event", "dead", True), ("os_event", "Deceased", True), ("os_event", "alive", False),
    ("os_event", "censored", False),
]


@pytest.mark.parametrize(("column", "value", "expected"), SPECIFIC)
def test_marker_words(column, value, expected):
    assert normalise_bool(value, column) is expected


@pytest.mark.parametrize("value", ["  METHYLATED  ", "methylated", "Methylated\t", " meThylAted"])
def test_booleans_are_case_and_whitespace_insensitive(value):
    assert normalise_bool(value, "mgmt") is True


def test_internal_whitespace_collapses():
    assert normalise_bool("not   amplified", "egfr") is False


@pytest.mark.parametrize(("column", "value", "hint"), [
    ("idh1", "maybe", "use mutant/wildtype"),
    ("idh1", "methylated", "use mutant/wildtype"),      # a word of another marker
    ("mgmt", "mutant", "use methylated/unmethylated"),
    ("mgmt", "maybe", "use methylated/unmethylated"),
    ("codel_1p19q", "amplified", "use codeleted/non-codeleted"),
    ("egfr", "lost", "use amplified/not amplified"),
    ("atrx", "methylated", "use lost/retained"),
    ("tp53", "2", "use mutant/wildtype"),
    ("cdkn2a", "amplified", "use deleted/retained"),
    ("tert", "0.5", "use mutant/wildtype"),
    ("os_event", "maybe", "use dead/alive"),
    ("os_event", 2, "use dead/alive"),
    ("idh1", "+", "use mutant/wildtype"),   # '-' is unknown, so '+' is not guessed either
])
def test_bad_booleans_name_column_value_and_fix(column, value, hint):
    with pytest.raises(ValueNormalisationError, match=rf"'{column}' is {re.escape(repr(value))}; {hint}.* or leave empty"):
        normalise_bool(value, column)


def test_extra_words_from_a_mapping_win():
    assert normalise_bool("R132H", "idh1", {"r132h": True}) is True
    assert normalise_value("idh1", "R132H", extra_words={"r132h": True}) is True


def test_accepted_words_lists_both_sides():
    true_words, false_words = accepted_words("mgmt")
    assert "methylated" in true_words and "unmethylated" in false_words
    assert not set(true_words) & set(false_words)


def test_no_word_is_both_true_and_false():
    for column in BOOL_COLUMNS:
        true_words, false_words = accepted_words(column)
        assert not set(true_words) & set(false_words), column


# ---------------------------------------------------------------- percentages


@pytest.mark.parametrize(("value", "expected"), [
    ("15", 15.0), ("15%", 15.0), (" 15.5 % ", 15.5), (15, 15.0), (0, 0.0), ("100", 100.0),
    ("0.15", 0.15), (".5", 0.5), ("1e1", 10.0),
])
def test_percent(value, expected):
    assert normalise_percent(value, "ki67") == pytest.approx(expected)
    assert normalise_value("p53_ihc", value) == pytest.approx(expected)


@pytest.mark.parametrize("value", ["101", "-1", "high", "10-20%", "15,5", True, "inf", "%"])
def test_bad_percent(value):
    with pytest.raises(ValueNormalisationError,
                       match=rf"'ki67' is {value!r}; use a percentage between 0 and 100"):
        normalise_percent(value, "ki67")


# ---------------------------------------------------------------- os_days


@pytest.mark.parametrize(("value", "expected"), [("365", 365.0), (365.5, 365.5), (" 12 ", 12.0),
                                                 ("0.5", 0.5)])
def test_os_days(value, expected):
    assert normalise_os_days(value) == expected


def test_os_days_unit_factor():
    assert normalise_os_days("12", factor=30.4375) == pytest.approx(365.25)


@pytest.mark.parametrize("value", ["0", 0, "-5", -0.1, "0.0"])
def test_os_days_must_be_positive(value):
    with pytest.raises(ValueNormalisationError, match=r"'os_days' is .*; os_days must be > 0"):
        normalise_os_days(value)


@pytest.mark.parametrize("value", ["ALIVE (361 days later)", "1 year", True, "nan days"])
def test_os_days_not_a_number(value):
    with pytest.raises(ValueNormalisationError, match=r"'os_days' is .*; use the number of days"):
        normalise_os_days(value)


# ---------------------------------------------------------------- age


@pytest.mark.parametrize(("value", "expected"), [("55", 55.0), (61.5, 61.5), ("0", 0.0),
                                                 ("120", 120.0)])
def test_age(value, expected):
    assert normalise_age(value) == expected


def test_age_in_days_with_factor():
    assert normalise_age("20089", factor=1 / 365.25) == pytest.approx(55.0, abs=0.01)


def test_age_out_of_range_suggests_units():
    with pytest.raises(ValueNormalisationError, match=r"'age' is '20089'; .*if the column holds days.*\[units\]"):
        normalise_age("20089")
    with pytest.raises(ValueNormalisationError, match=r"'age' is '-3'; use the age in years"):
        normalise_age("-3")
    with pytest.raises(ValueNormalisationError, match=r"'age' is 'old'; use the age in years"):
        normalise_age("old")


# ---------------------------------------------------------------- sex


@pytest.mark.parametrize(("value", "expected"), [("F", "F"), ("f", "F"), ("Female", "F"),
                                                 (" woman ", "F"), ("M", "M"), ("male", "M"),
                                                 ("MAN", "M")])
def test_sex(value, expected):
    assert normalise_sex(value) == expected


@pytest.mark.parametrize("value", ["x", "other", 1, "2"])
def test_bad_sex(value):
    with pytest.raises(ValueNormalisationError, match=r"'sex' is .*; use F/M \(female/male\) or leave empty"):
        normalise_sex(value)


# ---------------------------------------------------------------- grade


@pytest.mark.parametrize(("value", "expected"), [
    (4, 4), (4.0, 4), ("4", 4), ("4.0", 4), ("IV", 4), ("iv", 4), ("III", 3), ("II", 2),
    ("WHO 4", 4), ("who grade IV", 4), ("WHO CNS grade 3", 3), ("G4", 4), ("g2", 2),
    ("Grade 3", 3), ("grade ii", 2), (" 2 ", 2), ("I", 1),
])
def test_grade(value, expected):
    assert normalise_grade(value) == expected


@pytest.mark.parametrize("value", ["5", 5, 0, "V", 4.5, "high", "grade", True, "WHO 2-3"])
def test_bad_grade(value):
    with pytest.raises(ValueNormalisationError, match=r"'grade' is .*; use a WHO grade 2, 3 or 4"):
        normalise_grade(value)


# ---------------------------------------------------------------- text


def test_text_is_stripped_and_unknown_is_null():
    assert normalise_text("  Glioblastoma,   IDH-wildtype ") == "Glioblastoma, IDH-wildtype"
    assert normalise_text("n/a") is None
    assert normalise_text(3.0, "site") == "3"


def test_unknown_canonical_column():
    with pytest.raises(KeyError, match="not a canonical clinical column"):
        normalise_value("idh", "mutant")


# ---------------------------------------------------------------- located errors


def test_clinical_value_error_message():
    error = ClinicalValueError("clinical.csv", 17, "GBM-042", "MGMT status", "mgmt", "maybe",
                               "use methylated/unmethylated or leave empty")
    assert str(error) == ("clinical.csv row 17 (patient GBM-042): 'MGMT status' (-> mgmt) is "
                          "'maybe'; use methylated/unmethylated or leave empty")
    same = ClinicalValueError("c.csv", 3, "P1", "mgmt", "mgmt", "x", "fix it")
    assert str(same) == "c.csv row 3 (patient P1): 'mgmt' is 'x'; fix it"
    assert same.reason == "'mgmt' is 'x'; fix it"


def test_nan_float_is_unknown_not_error():
    assert normalise_value("os_days", math.nan) is None
