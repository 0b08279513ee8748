"""CLI: ``neurofeat sql`` — read-only SQL on the store's DuckDB catalog."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Annotated

import typer

from neurofeat.cli.common import StoreOption, console, fail, open_store, print_frame

_FORMATS = ("table", "csv", "json", "parquet")


def sql(
    query: Annotated[str | None, typer.Argument(help="SQL to run on the store's views.")] = None,
    file: Annotated[
        Path | None,
        typer.Option("--file", "-f", help="Read the query from a .sql file, or name a shipped example (see --examples)."),
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="table, csv, json or parquet (parquet needs --out).")] = "table",
    out: Annotated[Path | None, typer.Option(help="Write the result to this file instead of the terminal.")] = None,
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="NAME=VALUE, read in SQL with getvariable('NAME').")
    ] = None,
    examples: Annotated[bool, typer.Option("--examples", help="List the shipped example queries and exit.")] = False,
    max_rows: Annotated[int, typer.Option(help="Rows shown in table format.")] = 50,
    store: StoreOption = None,
) -> None:
    """Run SQL on the store's views (patients, scans, clinical, embeddings,
    emb_<backbone>, results, comparisons, runs, run_<table>, extract_failures,
    open_extract_failures, ingest_rejects).

    The SQL runs on an in-memory DuckDB that can read those views and nothing else: no
    file, URL or extension, and no setting can be changed. Tables it creates vanish
    when the command ends; --out must lie outside the store.

    Examples:
      neurofeat sql "SELECT site, count(*) FROM patients GROUP BY site" --store S
      neurofeat sql --file prevalence_by_site --format csv
      neurofeat sql --file nearest_neighbours -p backbone=dino_dro -p patient=siteA-0001
    """
    from neurofeat.store import ReadOnlyQueryError, example_queries, run_query

    shipped = example_queries()
    if examples:
        for name, text in shipped.items():
            first = next((line[3:] for line in text.splitlines() if line.startswith("-- ")), "")
            console().print(f"[bold]{name}[/]: {first}")
        return
    if fmt not in _FORMATS:
        fail(f"--format must be one of {', '.join(_FORMATS)}, got {fmt!r}")
    if (query is None) == (file is None):
        fail("give either a query or --file (not both)")
    if file is not None:
        if file.exists():
            query = file.read_text()
        elif file.stem in shipped and not file.parent.parts:
            query = shipped[file.stem]
        else:
            fail(f"{file} does not exist, and is not a shipped example ({', '.join(shipped)})")
    params = {}
    for item in param or []:
        if "=" not in item:
            fail(f"--param {item!r}: use NAME=VALUE")
        name, value = item.split("=", 1)
        if not re.fullmatch(r"[A-Za-z_]\w*", name.strip()):
            fail(f"--param {item!r}: the name {name.strip()!r} must be a plain identifier "
                 "(letters, digits, _), e.g. -p backbone=dino")
        params[name.strip()] = value
    opened = open_store(store)
    if out is not None:
        target = out.absolute().resolve()
        if target == opened.root.resolve() or opened.root.resolve() in target.parents:
            fail(f"--out {out} is inside the store {opened.root}; write results outside it "
                 "(the store only holds what neurofeat commits)")
    import duckdb

    from neurofeat.store.catalog import as_refusal

    if fmt == "parquet" and out is None:
        fail("--format parquet needs --out FILE")
    try:
        relation = run_query(opened, query or "", params)
        if relation is None:
            return
        result = relation.to_arrow_table() if fmt == "parquet" else relation.df()
    except ReadOnlyQueryError as error:
        fail(str(error))
    except duckdb.Error as error:
        refusal = as_refusal(error)
        fail(str(refusal) if refusal is not None else f"SQL error: {error}")
    if fmt == "parquet":
        import pyarrow.parquet as pq

        pq.write_table(result, out)
        console().print(f"wrote {out}")
        return
    frame = result
    if fmt == "table" and out is None:
        shown = frame.head(max_rows)
        print_frame(shown.map(lambda v: _short(v)) if len(shown) else shown)
        if len(frame) > max_rows:
            console().print(f"... {len(frame)} rows in all (use --format csv or --out to see every row)")
        return
    text = frame.to_csv(index=False) if fmt in ("csv", "table") else frame.to_json(orient="records", date_format="iso")
    if out is not None:
        out.write_text(text)
        console().print(f"wrote {out}")
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")


def _short(value: object) -> object:
    if hasattr(value, "__len__") and not isinstance(value, str) and len(value) > 6:  # vectors
        head = ", ".join(f"{v:.3g}" for v in list(value)[:3])
        return f"[{head}, … ({len(value)})]"
    return value


def register(app: typer.Typer) -> None:
    """Add ``neurofeat sql`` to *app*."""
    # A query may start with '-' (a "-- comment" line): it is the query, not an option.
    app.command("sql", context_settings={"ignore_unknown_options": True})(sql)
