"""Value normalisation for the canonical clinical columns (DESIGN.md section 3).

Every rule that turns a cell of a user's clinical table into a canonical value lives
here, as small pure functions over one value. They know nothing about files: a value
that cannot be normalised raises :class:`ValueNormalisationError`, which carries the
column, the value and the fix; the ingest wraps it with the file, row and patient
(:class:`ClinicalValueError`).

Rules (all case- and whitespace-insensitive):

- Unknown markers ``''``, ``NA``, ``N/A``, ``NaN``, ``unknown``, ``-``, ``?``,
  ``indeterminate``, ``not available`` ... (see :data:`UNKNOWN_MARKERS`) become ``None``
  (stored as NULL, never a sentinel).
- Booleans (``idh1, mgmt, codel_1p19q, egfr, atrx, tp53, cdkn2a, tert, os_event``):
  true = altered/methylated/codeleted/amplified/lost/mutant/dead. Generic words
  (true/false, yes/no, 1/0, positive/negative, altered) are accepted for every marker;
  biology words only where they make sense (``methylated`` for ``mgmt``, ``codeleted`` for
  ``codel_1p19q``, ``amplified`` for ``egfr``, ``lost``/``retained`` for ``atrx`` and
  ``cdkn2a``, ``mutant``/``wildtype`` for the mutation markers). A trailing parenthesised
  qualifier is ignored: ``'mutated (NOS)'`` reads as ``'mutated'``.
- Percentages (``ki67``, ``p53_ihc``): a number in [0, 100], optionally followed by ``%``.
- ``os_days``: a number > 0 (optionally multiplied by a unit factor, e.g. months → days).
- ``age``: years in [0, 120].
- ``sex``: ``F``/``M`` from f/female/woman, m/male/man.
- ``grade``: WHO CNS grade 1-4 from ``4``, ``'IV'``, ``'WHO 4'``, ``'WHO grade IV'``,
  ``'G4'``, ``'grade 3'``.
- ``histology``, ``site``, ``cohort``: stripped text.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

__all__ = [
    "BOOL_COLUMNS",
    "PERCENT_COLUMNS",
    "CANONICAL_COLUMNS",
    "TEXT_COLUMNS",
    "UNKNOWN_MARKERS",
    "ValueNormalisationError",
    "ClinicalValueError",
    "is_unknown",
    "normalise_bool",
    "normalise_percent",
    "normalise_os_days",
    "normalise_age",
    "normalise_sex",
    "normalise_grade",
    "normalise_text",
    "normalise_value",
    "accepted_words",
]

#: Boolean canonical columns (true = altered/methylated/codeleted/amplified/lost/mutant).
BOOL_COLUMNS: tuple[str, ...] = (
    "idh1", "mgmt", "codel_1p19q", "egfr", "atrx", "tp53", "cdkn2a", "tert", "os_event",
)
#: Canonical columns holding a percentage in [0, 100].
PERCENT_COLUMNS: tuple[str, ...] = ("ki67", "p53_ihc")
#: Canonical columns holding free text.
TEXT_COLUMNS: tuple[str, ...] = ("site", "cohort", "histology")
#: Every canonical column a clinical table can be mapped onto (besides ``patient_id``).
CANONICAL_COLUMNS: tuple[str, ...] = (
    "site", "cohort", "age", "sex", "grade", "histology",
    "idh1", "mgmt", "codel_1p19q", "egfr", "atrx", "tp53", "cdkn2a", "tert",
    "ki67", "p53_ihc", "os_days", "os_event",
)

#: Cell values that mean "not known" (compared after lower-casing and collapsing spaces).
UNKNOWN_MARKERS: frozenset[str] = frozenset({
    "", "na", "n/a", "n.a.", "nan", "null", "unknown", "unk", "-", "--",
    "?", "not available", "not assessed", "not done", "not tested", "indeterminate",
    "equivocal", "inconclusive", "nos", "nec", "nos/nec", "missing", "#n/a",
})

_GENERIC_TRUE = ("true", "t", "yes", "y", "1", "positive", "pos", "altered")
_GENERIC_FALSE = ("false", "f", "no", "n", "0", "negative", "neg", "not altered", "unaltered")
_MUTANT_TRUE = ("mutant", "mutated", "mut", "mutation", "mt", "m")
_MUTANT_FALSE = ("wildtype", "wild-type", "wild type", "wild_type", "wt", "non-mutant",
                 "not mutated", "no mutation")

# column -> (words read as True, words read as False), on top of the generic words.
_BOOL_WORDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "idh1": (_MUTANT_TRUE, _MUTANT_FALSE),
    "mgmt": (
        ("methylated", "meth", "methylation", "hypermethylated", "promoter methylated"),
        ("unmethylated", "unmeth", "non-methylated", "not methylated", "nonmethylated"),
    ),
    "codel_1p19q": (
        ("codeleted", "co-deleted", "codeletion", "co-deletion", "codel", "deleted",
         "1p/19q codeleted", "1p19q codeleted"),
        ("non-codeleted", "noncodeleted", "not codeleted", "non-codel", "noncodel",
         "no codeletion", "intact", "retained", "not deleted", "non-deleted"),
    ),
    "egfr": (
        ("amplified", "amplification", "amp", *_MUTANT_TRUE),
        ("not amplified", "non-amplified", "nonamplified", "no amplification",
         *_MUTANT_FALSE),
    ),
    "atrx": (
        ("lost", "loss", "deleted", *_MUTANT_TRUE),
        ("retained", "intact", "preserved", "expressed", *_MUTANT_FALSE),
    ),
    "tp53": (_MUTANT_TRUE, _MUTANT_FALSE),
    "cdkn2a": (
        ("deleted", "deletion", "homozygous deletion", "homdel", "hom del", "lost", "loss",
         *_MUTANT_TRUE),
        ("retained", "intact", "not deleted", "non-deleted", "no deletion", *_MUTANT_FALSE),
    ),
    "tert": (_MUTANT_TRUE, _MUTANT_FALSE),
    "os_event": (
        ("dead", "deceased", "died", "death", "event", "expired"),
        ("alive", "living", "censored", "live", "no event"),
    ),
}

_FIX_HINTS: dict[str, str] = {
    "idh1": "use mutant/wildtype (or true/false, 1/0)",
    "mgmt": "use methylated/unmethylated (or true/false, 1/0)",
    "codel_1p19q": "use codeleted/non-codeleted (or true/false, 1/0)",
    "egfr": "use amplified/not amplified (or mutant/wildtype, true/false, 1/0)",
    "atrx": "use lost/retained (or mutant/wildtype, true/false, 1/0)",
    "tp53": "use mutant/wildtype (or true/false, 1/0)",
    "cdkn2a": "use deleted/retained (or true/false, 1/0)",
    "tert": "use mutant/wildtype (or true/false, 1/0)",
    "os_event": "use dead/alive (or 1/0, true/false; 1 = death observed)",
}

_ROMAN = {"i": 1, "ii": 2, "iii": 3, "iv": 4}
_GRADE_RE = re.compile(r"^(?:who)?\s*(?:cns)?\s*(?:grade|gr\.?|g)?\s*([0-9]+(?:\.0+)?|iv|iii|ii|i)$")
_NUMBER_RE = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:e[+-]?\d+)?$")
_TRAILING_QUALIFIER_RE = re.compile(r"\s*\([^()]*\)$")


class ValueNormalisationError(ValueError):
    """A cell value that cannot be normalised onto a canonical column.

    Parameters
    ----------
    column : str
        Canonical column name (``'mgmt'``).
    value : object
        The offending cell value as read from the file.
    hint : str
        What to use instead (``'use methylated/unmethylated or leave empty'``).
    """

    def __init__(self, column: str, value: object, hint: str) -> None:
        self.column = column
        self.value = value
        self.hint = hint
        super().__init__(f"{column!r} is {_show(value)}; {hint}")


class ClinicalValueError(ValueError):
    """A :class:`ValueNormalisationError` located in a file.

    The message reads like
    ``clinical.csv row 17 (patient GBM-042): 'mgmt' is 'maybe'; use
    methylated/unmethylated (or true/false, 1/0) or leave empty.``
    where the row is the one a spreadsheet shows (the header is row 1).

    Parameters
    ----------
    source : str
        File name or path.
    row : int or None
        Spreadsheet row number (header = 1, first data row = 2).
    patient_id : str or None
        Patient of that row.
    column : str
        Column of the file (the user's name) holding the value.
    canonical : str
        Canonical column it maps onto.
    value : object
        The offending value.
    hint : str
        What to use instead.
    """

    def __init__(self, source: str, row: int | None, patient_id: str | None, column: str,
                 canonical: str, value: object, hint: str) -> None:
        self.source = source
        self.row = row
        self.patient_id = patient_id
        self.column = column
        self.canonical = canonical
        self.value = value
        self.hint = hint
        where = source if row is None else f"{source} row {row}"
        if patient_id:
            where += f" (patient {patient_id})"
        col = repr(column) if column == canonical else f"{column!r} (-> {canonical})"
        super().__init__(f"{where}: {col} is {_show(value)}; {hint}")

    @property
    def reason(self) -> str:
        """The message without the file/row prefix (for the rejects table)."""
        col = (repr(self.column) if self.column == self.canonical
               else f"{self.column!r} (-> {self.canonical})")
        return f"{col} is {_show(self.value)}; {self.hint}"


def _show(value: object) -> str:
    return repr(value)


def _clean(value: str) -> str:
    """Lower-case, strip and collapse internal whitespace."""
    return " ".join(value.strip().lower().split())


def is_unknown(value: object, extra_markers: frozenset[str] | set[str] = frozenset()) -> bool:
    """Whether *value* means "not known" (None, NaN, or an unknown marker).

    Parameters
    ----------
    value : object
        A cell value (str, number, bool or None).
    extra_markers : set of str
        Additional lower-case markers (e.g. from a mapping file).

    Returns
    -------
    bool
    """
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    if isinstance(value, str):
        cleaned = _clean(value)
        return cleaned in UNKNOWN_MARKERS or cleaned in extra_markers
    return False


def _bool_lookup(column: str) -> dict[str, bool]:
    true_words, false_words = _BOOL_WORDS.get(column, ((), ()))
    table = {w: True for w in _GENERIC_TRUE}
    table.update({w: False for w in _GENERIC_FALSE})
    table.update({w: True for w in true_words})
    table.update({w: False for w in false_words})
    return table


_BOOL_TABLES: dict[str, dict[str, bool]] = {c: _bool_lookup(c) for c in BOOL_COLUMNS}


def accepted_words(column: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The words read as True and as False for boolean *column* (for docs and errors).

    Parameters
    ----------
    column : str
        One of :data:`BOOL_COLUMNS`.

    Returns
    -------
    (true_words, false_words) : tuple of tuple of str
    """
    table = _BOOL_TABLES[column]
    return (tuple(sorted(w for w, v in table.items() if v)),
            tuple(sorted(w for w, v in table.items() if not v)))


def normalise_bool(value: object, column: str,
                   extra_words: Mapping[str, bool] | None = None) -> bool | None:
    """Normalise a marker/event cell to True, False or None.

    Parameters
    ----------
    value : object
        Cell value: str, bool, int/float (only 0 and 1) or None.
    column : str
        Canonical boolean column (one of :data:`BOOL_COLUMNS`); picks the vocabulary.
    extra_words : mapping of str to bool, optional
        Extra lower-case words from a mapping file (they win over the built-ins).

    Returns
    -------
    bool or None
        None for an unknown marker.

    Raises
    ------
    ValueNormalisationError
        For any other value; the message lists what to use.

    Examples
    --------
    >>> normalise_bool(" Methylated ", "mgmt")
    True
    >>> normalise_bool("WT", "idh1")
    False
    """
    if column not in _BOOL_TABLES:
        raise KeyError(f"{column!r} is not a boolean canonical column; use one of {BOOL_COLUMNS}")
    hint = _FIX_HINTS[column] + " or leave empty"
    if is_unknown(value):
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        if value in (0, 1):
            return bool(value)
        raise ValueNormalisationError(column, value, hint)
    if not isinstance(value, str):
        raise ValueNormalisationError(column, value, hint)
    cleaned = _clean(value)
    for candidate in (cleaned, _TRAILING_QUALIFIER_RE.sub("", cleaned)):
        if extra_words and candidate in extra_words:
            return bool(extra_words[candidate])
        if candidate in _BOOL_TABLES[column]:
            return _BOOL_TABLES[column][candidate]
        if _NUMBER_RE.match(candidate) and float(candidate) in (0.0, 1.0):
            return float(candidate) == 1.0
    raise ValueNormalisationError(column, value, hint)


def _to_float(value: object, column: str, hint: str, *, strip_percent: bool = False) -> float:
    if isinstance(value, bool):
        raise ValueNormalisationError(column, value, hint)
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        text = _clean(value)
        if strip_percent and text.endswith("%"):
            text = text[:-1].strip()
        if not _NUMBER_RE.match(text):
            raise ValueNormalisationError(column, value, hint)
        number = float(text)
    else:
        raise ValueNormalisationError(column, value, hint)
    if not math.isfinite(number):
        raise ValueNormalisationError(column, value, hint)
    return number


def normalise_percent(value: object, column: str = "ki67") -> float | None:
    """Normalise a percentage cell (Ki-67, p53 IHC) to a float in [0, 100].

    ``'15'``, ``'15%'``, ``'15.5 %'`` and ``15`` all read as percent. Fractions are
    not guessed: ``0.15`` is 0.15 %.

    Parameters
    ----------
    value : object
        Cell value.
    column : str
        Canonical column name, for the error message.

    Returns
    -------
    float or None

    Raises
    ------
    ValueNormalisationError
        If the value is not a number or lies outside [0, 100].
    """
    hint = "use a percentage between 0 and 100 (e.g. 15 or 15%) or leave empty"
    if is_unknown(value):
        return None
    number = _to_float(value, column, hint, strip_percent=True)
    if not 0.0 <= number <= 100.0:
        raise ValueNormalisationError(column, value, hint)
    return number


def normalise_os_days(value: object, column: str = "os_days", factor: float = 1.0) -> float | None:
    """Normalise overall survival to days (> 0).

    Parameters
    ----------
    value : object
        Cell value.
    column : str
        Canonical column name, for the error message.
    factor : float
        Unit factor to days (1 for days, 30.4375 for months, 365.25 for years).

    Returns
    -------
    float or None

    Raises
    ------
    ValueNormalisationError
        If the value is not a number, or is <= 0 (a survival time must be positive).
    """
    if is_unknown(value):
        return None
    number = _to_float(value, column, "use the number of days from diagnosis/surgery "
                       "to death or last follow-up (> 0), or leave empty")
    days = number * factor
    if days <= 0:
        raise ValueNormalisationError(
            column, value, "os_days must be > 0; a survival time of zero or less is a data "
            "error: check the dates, or leave the cell empty")
    return days


def normalise_age(value: object, column: str = "age", factor: float = 1.0) -> float | None:
    """Normalise age to years in [0, 120].

    Parameters
    ----------
    value : object
        Cell value.
    column : str
        Canonical column name, for the error message.
    factor : float
        Unit factor to years (1/365.25 for an age in days, as in GDC's
        ``age_at_diagnosis``).

    Returns
    -------
    float or None

    Raises
    ------
    ValueNormalisationError
        If the value is not a number in [0, 120] years.
    """
    hint = "use the age in years (0-120) or leave empty"
    if is_unknown(value):
        return None
    years = _to_float(value, column, hint) * factor
    if not 0.0 <= years <= 120.0:
        if years > 120.0:
            hint = ("use the age in years (0-120); if the column holds days, add "
                    f'[units] "<column name>" = {1 / 365.25:.8f} to a --mapping file')
        raise ValueNormalisationError(column, value, hint)
    return years


_SEX = {"f": "F", "female": "F", "woman": "F", "w": "F", "fem": "F",
        "m": "M", "male": "M", "man": "M"}


def normalise_sex(value: object, column: str = "sex") -> str | None:
    """Normalise sex to ``'F'`` or ``'M'``.

    Parameters
    ----------
    value : object
        Cell value (f/female/woman, m/male/man, any case).
    column : str
        Canonical column name, for the error message.

    Returns
    -------
    str or None

    Raises
    ------
    ValueNormalisationError
        For any other value.
    """
    if is_unknown(value):
        return None
    if isinstance(value, str) and _clean(value) in _SEX:
        return _SEX[_clean(value)]
    raise ValueNormalisationError(column, value, "use F/M (female/male) or leave empty")


def normalise_grade(value: object, column: str = "grade") -> int | None:
    """Normalise a WHO CNS grade to an int in 1..4.

    Accepts ``4``, ``4.0``, ``'IV'``, ``'WHO 4'``, ``'WHO grade IV'``, ``'G4'``,
    ``'grade 3'`` (any case).

    Parameters
    ----------
    value : object
        Cell value.
    column : str
        Canonical column name, for the error message.

    Returns
    -------
    int or None

    Raises
    ------
    ValueNormalisationError
        For anything that is not a WHO grade 1-4.
    """
    hint = "use a WHO grade 2, 3 or 4 (or II/III/IV, 'WHO 4', 'G4') or leave empty"
    if is_unknown(value):
        return None
    if isinstance(value, bool):
        raise ValueNormalisationError(column, value, hint)
    if isinstance(value, (int, float)):
        if float(value).is_integer() and 1 <= value <= 4:
            return int(value)
        raise ValueNormalisationError(column, value, hint)
    if not isinstance(value, str):
        raise ValueNormalisationError(column, value, hint)
    match = _GRADE_RE.match(_clean(value))
    if match is None:
        raise ValueNormalisationError(column, value, hint)
    token = match.group(1)
    grade = _ROMAN[token] if token in _ROMAN else int(float(token))
    if not 1 <= grade <= 4:
        raise ValueNormalisationError(column, value, hint)
    return grade


def normalise_text(value: object, column: str = "histology") -> str | None:
    """Strip a text cell; unknown markers become None.

    Parameters
    ----------
    value : object
        Cell value.
    column : str
        Canonical column name, for the error message.

    Returns
    -------
    str or None
    """
    if is_unknown(value):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return " ".join(str(value).split())


def normalise_value(column: str, value: object, *, extra_words: Mapping[str, Any] | None = None,
                    extra_unknown: frozenset[str] = frozenset(), factor: float = 1.0) -> Any:
    """Normalise one cell onto canonical *column* (dispatches to the rules above).

    Parameters
    ----------
    column : str
        One of :data:`CANONICAL_COLUMNS`.
    value : object
        Cell value.
    extra_words : mapping, optional
        Mapping-file words for this column (lower-case word -> canonical value); they
        are applied before the built-in rules.
    extra_unknown : frozenset of str
        Extra lower-case unknown markers.
    factor : float
        Unit factor for numeric columns (``os_days``, ``age``).

    Returns
    -------
    object
        The canonical value, or None for unknown.

    Raises
    ------
    ValueNormalisationError
        If the value cannot be normalised.
    KeyError
        If *column* is not canonical.
    """
    if isinstance(value, str):
        cleaned = _clean(value)
        if cleaned in extra_unknown:
            return None
        if extra_words and column not in BOOL_COLUMNS and cleaned in extra_words:
            return extra_words[cleaned]
    if column in BOOL_COLUMNS:
        return normalise_bool(value, column, extra_words)
    if column in PERCENT_COLUMNS:
        return normalise_percent(value, column)
    if column == "os_days":
        return normalise_os_days(value, column, factor)
    if column == "age":
        return normalise_age(value, column, factor)
    if column == "sex":
        return normalise_sex(value, column)
    if column == "grade":
        return normalise_grade(value, column)
    if column in TEXT_COLUMNS:
        return normalise_text(value, column)
    raise KeyError(f"{column!r} is not a canonical clinical column; use one of {CANONICAL_COLUMNS}")
