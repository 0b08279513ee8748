"""Shaping a run's result tables against their declared schemas.

A run function builds each table it stores with :func:`shape`: the analysis output plus
the constants of the run (command, backbone, provenance...). The shaped frame is what
the run returns *and* what :func:`neurofeat.store.write_run` stores, so a test that
inspects a run's result sees exactly the stored table.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from neurofeat.store.schema import CI_LEVEL, RUN_AUTO_COLUMNS, run_table_schema

__all__ = ["shape", "provenance_columns", "inference_columns", "CI_LEVEL"]

_AUTO = {field.name for field in RUN_AUTO_COLUMNS}


def shape(frame: pd.DataFrame, command: str, table: str, /, **constants: Any) -> pd.DataFrame:
    """``frame`` plus ``constants`` as columns, in the declared column order.

    Parameters
    ----------
    frame : DataFrame
        The analysis output.
    command, table : str
        Which declared schema (``RUN_TABLE_SCHEMAS[command][table]``).
    **constants
        Columns with one value for every row; a column the analysis does not fill and
        that does not apply to this run must be passed explicitly as ``None``.

    Raises
    ------
    ValueError
        A declared column is neither in ``frame`` nor in ``constants``, or ``frame`` has a
        column the schema does not declare (a programming error: declare it first).
    """
    schema = run_table_schema(command, table)
    declared = [name for name in schema.names if name not in _AUTO]
    shaped = frame.assign(**constants) if constants else frame.copy()
    missing = [c for c in declared if c not in shaped.columns]
    unknown = [c for c in shaped.columns if c not in schema.names]
    if missing or unknown:
        raise ValueError(f"{command} table '{table}': missing {missing}, undeclared {unknown} "
                         "(neurofeat/store/schema.py RUN_TABLE_SCHEMAS)")
    return shaped[declared].reset_index(drop=True)


def provenance_columns(seed: int, checkpoint_sha256: str | None,
                       preprocess_sha256: str | None) -> Mapping[str, Any]:
    """The provenance constants of one backbone's rows."""
    return {"seed": seed, "checkpoint_sha256": checkpoint_sha256,
            "preprocess_sha256": preprocess_sha256}


_INFERENCE_DEFAULTS = {"primary": False, "estimand": None, "rare": None, "warning": None,
                       "method": None, "df": float("nan"), "n_train": float("nan")}


def inference_columns(frame: pd.DataFrame, command: str, table: str) -> pd.DataFrame:
    """``frame`` with the inference columns its schema declares (``primary``,
    ``estimand``, ``rare``, ``warning``, ...) filled where the analysis gave none, and the
    analysis' ``level`` stored as ``ci_level``."""
    schema = run_table_schema(command, table)
    frame = frame.rename(columns={"level": "ci_level"}) if "level" in frame.columns else frame
    missing = {name: value for name, value in _INFERENCE_DEFAULTS.items()
               if name in schema.names and name not in frame.columns}
    if "ci_level" not in frame.columns:
        missing["ci_level"] = CI_LEVEL
    return frame.assign(**missing) if missing else frame
