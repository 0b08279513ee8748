"""Column-name and value mapping of a clinical table onto the canonical columns.

The default mapping ships as ``neurofeat/data/ingest_mapping.toml`` (BraTS, UCSF-PDGM,
UPenn-GBM and TCGA-style names); a user TOML with the same sections extends and
overrides it (see that file's header). :func:`load_mapping` reads and merges them,
:meth:`ColumnMapping.resolve` matches a table's header against the mapping.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

from neurofeat.ingest.normalise import BOOL_COLUMNS, CANONICAL_COLUMNS

__all__ = [
    "MappingError",
    "ColumnMapping",
    "ResolvedColumns",
    "column_key",
    "load_mapping",
    "DEFAULT_MAPPING_FILE",
]

#: Canonical columns a mapping may target (``patient_id`` + the clinical columns).
MAPPABLE_COLUMNS: tuple[str, ...] = ("patient_id", *CANONICAL_COLUMNS)

DEFAULT_MAPPING_FILE = "ingest_mapping.toml"

_NON_ALNUM = re.compile(r"[^0-9a-z]+")


class MappingError(ValueError):
    """A mapping file or a table header that cannot be mapped."""


def column_key(name: str) -> str:
    """Matching key of a column name: lower case, non-alphanumeric runs -> ``'_'``.

    Examples
    --------
    >>> column_key("Overall survival (days)")
    'overall_survival_days'
    >>> column_key("1p/19q")
    '1p_19q'
    """
    return _NON_ALNUM.sub("_", name.strip().lower()).strip("_")


def _word_key(word: str) -> str:
    return " ".join(str(word).strip().lower().split())


@dataclass(frozen=True)
class ResolvedColumns:
    """How one table's header maps onto canonical columns.

    Attributes
    ----------
    source_of : mapping of str to str
        Canonical column -> the table's column name that feeds it.
    ignored : tuple of str
        Table columns that match no canonical column, were listed under ``ignore``,
        or lost to a higher-priority column for the same canonical column.
    """

    source_of: Mapping[str, str]
    ignored: tuple[str, ...]

    def to_frame(self):  # noqa: ANN201 - pandas is imported lazily
        """Two-column DataFrame ``source_column, canonical_column``."""
        import pandas as pd

        return pd.DataFrame({"source_column": list(self.source_of.values()),
                             "canonical_column": list(self.source_of.keys())})


@dataclass(frozen=True)
class ColumnMapping:
    """Column aliases, value words, unit factors and unknown markers.

    Attributes
    ----------
    columns : mapping of str to tuple of str
        Canonical column -> matching keys (see :func:`column_key`) in priority order.
    values : mapping of str to mapping of str to object
        Canonical column -> {lower-case word: canonical value}.
    units : mapping of str to float
        Source column key -> factor to the canonical unit (days for ``os_days``, years
        for ``age``).
    unknown : frozenset of str
        Extra lower-case unknown markers.
    ignore : frozenset of str
        Source column keys to drop.
    """

    columns: Mapping[str, tuple[str, ...]]
    values: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    units: Mapping[str, float] = field(default_factory=dict)
    unknown: frozenset[str] = frozenset()
    ignore: frozenset[str] = frozenset()

    def resolve(self, header: Sequence[str], *, source: str = "table") -> ResolvedColumns:
        """Match a table's column names against the mapping.

        Parameters
        ----------
        header : sequence of str
            The table's column names.
        source : str
            File name, for error messages.

        Returns
        -------
        ResolvedColumns

        Raises
        ------
        MappingError
            If two columns of the table have the same matching key (ambiguous), or if
            no column maps onto ``patient_id``.
        """
        by_key: dict[str, str] = {}
        for name in header:
            key = column_key(name)
            if key in by_key:
                raise MappingError(
                    f"{source}: columns {by_key[key]!r} and {name!r} both read as {key!r}; "
                    "rename one, or list one under [columns] ignore = [...] in a --mapping file")
            by_key[key] = name
        source_of: dict[str, str] = {}
        used: set[str] = set()
        for canonical in MAPPABLE_COLUMNS:
            for key in self.columns.get(canonical, ()):
                if key in by_key and key not in self.ignore and key not in used:
                    source_of[canonical] = by_key[key]
                    used.add(key)
                    break
        if "patient_id" not in source_of:
            raise MappingError(
                f"{source}: no patient id column among {list(header)}; name it 'patient_id' "
                "or map it with [columns] patient_id = [\"<your column>\"] in a --mapping file")
        ignored = tuple(name for key, name in by_key.items() if key not in used)
        return ResolvedColumns(MappingProxyType(source_of), ignored)

    def factor_for(self, source_column: str) -> float:
        """Unit factor of *source_column* (1.0 when none is configured)."""
        return float(self.units.get(column_key(source_column), 1.0))

    def words_for(self, canonical: str) -> Mapping[str, Any]:
        """Extra value words of *canonical* (lower-case word -> canonical value)."""
        return self.values.get(canonical, {})


def _check_str_list(value: object, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise MappingError(f"{where} must be a list of strings, got {value!r}")
    return value


def _parse(doc: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Validate one mapping document; returns plain dicts with normalised keys."""
    allowed_top = {"columns", "values", "units", "unknown"}
    for key in doc:
        if key not in allowed_top:
            raise MappingError(f"{where}: unknown section {key!r}; use {sorted(allowed_top)}")
    columns: dict[str, list[str]] = {}
    ignore: list[str] = []
    for canonical, names in dict(doc.get("columns", {})).items():
        if canonical == "ignore":
            ignore = [column_key(n) for n in _check_str_list(names, f"{where} [columns] ignore")]
            continue
        if canonical not in MAPPABLE_COLUMNS:
            raise MappingError(f"{where}: [columns] {canonical!r} is not a canonical column; "
                               f"use one of {list(MAPPABLE_COLUMNS)}")
        columns[canonical] = [column_key(n) for n in
                              _check_str_list(names, f"{where} [columns] {canonical}")]
    values: dict[str, dict[str, Any]] = {}
    for canonical, words in dict(doc.get("values", {})).items():
        if canonical not in CANONICAL_COLUMNS:
            raise MappingError(f"{where}: [values.{canonical}] is not a canonical column; "
                               f"use one of {list(CANONICAL_COLUMNS)}")
        if not isinstance(words, Mapping):
            raise MappingError(f"{where}: [values.{canonical}] must be a table of word = value")
        for word, value in words.items():
            if canonical in BOOL_COLUMNS and not isinstance(value, bool):
                raise MappingError(f"{where}: [values.{canonical}] {word!r} = {value!r}; "
                                   "a boolean column needs true or false")
        values[canonical] = {_word_key(w): v for w, v in words.items()}
    units: dict[str, float] = {}
    for name, factor in dict(doc.get("units", {})).items():
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or factor <= 0:
            raise MappingError(f"{where}: [units] {name!r} = {factor!r}; use a positive number")
        units[column_key(name)] = float(factor)
    unknown = [_word_key(w) for w in _check_str_list(doc.get("unknown", []), f"{where} unknown")]
    return {"columns": columns, "values": values, "units": units, "unknown": unknown,
            "ignore": ignore}


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise MappingError(f"mapping file {path} does not exist; check the --mapping path") from None
    except tomllib.TOMLDecodeError as exc:
        raise MappingError(f"mapping file {path} is not valid TOML: {exc}") from None


def load_mapping(path: str | Path | None = None) -> ColumnMapping:
    """Load the default mapping, extended/overridden by a user TOML file.

    Parameters
    ----------
    path : str or Path, optional
        A user mapping file (same sections as the default; see
        ``neurofeat/data/ingest_mapping.toml``).

    Returns
    -------
    ColumnMapping

    Raises
    ------
    MappingError
        If a file is missing, not valid TOML, or names a non-canonical column.

    Examples
    --------
    >>> m = load_mapping()
    >>> m.resolve(["ID", "IDH status", "MGMT status"]).source_of["idh1"]
    'IDH status'
    """
    text = (resources.files("neurofeat") / "data" / DEFAULT_MAPPING_FILE).read_text("utf-8")
    base = _parse(tomllib.loads(text), f"default mapping {DEFAULT_MAPPING_FILE}")
    user = _parse(_read_toml(Path(path)), f"mapping file {path}") if path is not None else None

    columns: dict[str, list[str]] = {c: [column_key(c)] for c in MAPPABLE_COLUMNS}
    user_claimed: set[str] = set()
    if user is not None:
        for canonical, keys in user["columns"].items():
            user_claimed.update(keys)
            columns[canonical].extend(keys)
    for canonical, keys in base["columns"].items():
        columns[canonical].extend(k for k in keys if k not in user_claimed)
    # A name the user maps belongs to that column only.
    for canonical, keys in columns.items():
        mine = set(user["columns"].get(canonical, ())) if user is not None else set()
        columns[canonical] = [k for k in dict.fromkeys(keys)
                              if k not in user_claimed or k in mine or k == column_key(canonical)]

    values = {c: dict(w) for c, w in base["values"].items()}
    units = dict(base["units"])
    unknown = set(base["unknown"])
    ignore = set(base["ignore"])
    if user is not None:
        for canonical, words in user["values"].items():
            values.setdefault(canonical, {}).update(words)
        units.update(user["units"])
        unknown.update(user["unknown"])
        ignore.update(user["ignore"])
    return ColumnMapping(
        columns=MappingProxyType({c: tuple(k) for c, k in columns.items()}),
        values=MappingProxyType({c: MappingProxyType(w) for c, w in values.items()}),
        units=MappingProxyType(units),
        unknown=frozenset(unknown),
        ignore=frozenset(ignore),
    )
