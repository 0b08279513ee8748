"""Shared helpers of the trust-analysis run tests: a small probe store and a check that a
stored run table equals its declared schema and the table the run returned."""

from __future__ import annotations

import sys
from pathlib import Path

import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "analysis"))
from probe_store_helpers import make_probe_store  # noqa: E402,F401

from neurofeat.store.schema import RUN_TABLE_SCHEMAS  # noqa: E402


def check_stored(info, command: str, tables: dict) -> None:
    """Every returned table is stored with exactly its declared schema and values."""
    assert set(info.tables) == set(tables)
    for name, table in tables.items():
        stored = pq.read_table(info.path / f"{name}.parquet")
        declared = RUN_TABLE_SCHEMAS[command][name]
        assert stored.schema.names == declared.names, (command, name)
        assert [f.type for f in stored.schema] == [f.type for f in declared], (command, name)
        frame = stored.to_pandas()[list(table.columns)]
        assert frame.shape == table.shape, (command, name)
        for column in table.columns:
            left, right = frame[column].tolist(), table[column].tolist()
            assert [x if x == x else None for x in left] == \
                [x if x == x else None for x in right], (command, name, column)
    for name in info.figures:
        assert (info.path / f"{name}.png").stat().st_size > 0
        assert (info.path / f"{name}.svg").stat().st_size > 0
