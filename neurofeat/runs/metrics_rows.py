"""Rows for a run's ``metrics`` table (the ``results`` view) from any analysis frame.

:data:`~neurofeat.store.schema.METRICS_SCHEMA` is shared by every command and grows
(issue 9 added ``primary``/``estimand``/``rare``/``warning``); the trust commands fill the
declared columns they know and leave the others NULL, so their rows keep fitting it.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from neurofeat.runs.tables import shape
from neurofeat.store.schema import RUN_AUTO_COLUMNS, run_table_schema

__all__ = ["metrics_rows"]

_AUTO = {field.name for field in RUN_AUTO_COLUMNS}


def metrics_rows(frame: pd.DataFrame, run_command: str, /, **constants: Any) -> pd.DataFrame:
    """``frame`` + ``constants`` shaped as ``run_command``'s ``metrics`` table.

    Columns of ``frame`` the schema does not declare are dropped; declared columns
    neither in ``frame`` nor in ``constants`` are NULL (``primary`` defaults to the
    rows whose ``ci_method`` is not 'percentile'/'bca'/'delong' when declared).
    """
    declared = [n for n in run_table_schema(run_command, "metrics").names if n not in _AUTO]
    out = frame.assign(**constants) if constants else frame.copy()
    if "primary" in declared and "primary" not in out.columns and "ci_method" in out.columns:
        out["primary"] = ~out["ci_method"].isin(["percentile", "bca", "delong"])
    for name in declared:
        if name not in out.columns:
            out[name] = None
    return shape(out[declared], run_command, "metrics")
