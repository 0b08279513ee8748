"""A walk through neurofeat's Python API, on a store that already holds embeddings.

Three layers, from the bottom up:

1. ``neurofeat.store``: open a store, query its DuckDB catalog, read ``(X, y)`` for a
   task and backbone as numpy arrays (``Store.open``, ``connect``, ``read_xy``).
2. ``neurofeat.runs``: the application layer; one function per analysis
   (``probe_run``, ``compare_run``, ``survival_run``), the same ones the CLI calls.
   Each reads through the store, runs the statistics, writes ``runs/<run_id>/`` and
   returns a frozen result whose ``.tables`` are exactly the stored tables.
3. ``neurofeat.analysis``: pure statistics on arrays (no store, no torch), for your own
   protocols.

Needs two backbones (e.g. after ``external_checkpoint.py`` and ``import_features.py``)::

    python examples/python_api.py --store S --backbone-a monai_resnet10 \
        --backbone-b myfeatures --task idh1

The survival task ``os`` (IDH1 wild-type grade 4) needs at least 20 such patients; on a
small cohort define a wider task in ``neurofeat.toml`` and pass ``--survival-task``::

    [tasks.os_all]
    label = "os_days"
    kind = "survival"
    time_column = "os_days"
    event_column = "os_event"
"""

from __future__ import annotations

import argparse

import pandas as pd

from neurofeat.runs import compare_run, probe_run, survival_run
from neurofeat.store import Store, connect, read_xy

pd.set_option("display.width", 160)
pd.set_option("display.max_columns", 20)


def primary_rows(table: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """The run's headline rows: primary estimate/test, all sites pooled."""
    rows = table[table["primary"].fillna(False).astype(bool)]
    if "site" in rows:
        rows = rows[rows["site"] == "all"]
    return rows[[c for c in columns if c in rows]].reset_index(drop=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", default="neurofeat-store",
                        help="store directory (default: neurofeat-store)")
    parser.add_argument("--backbone-a", default="monai_resnet10",
                        help="first backbone (default: monai_resnet10)")
    parser.add_argument("--backbone-b", default="myfeatures",
                        help="second backbone, compared with the first (default: myfeatures)")
    parser.add_argument("--task", default="idh1", help="classification task (default: idh1)")
    parser.add_argument("--survival-task", default="os", help="survival task (default: os)")
    parser.add_argument("--repeats", type=int, default=5, help="CV repeats (default: 5)")
    parser.add_argument("--folds", type=int, default=5, help="CV folds (default: 5)")
    parser.add_argument("--bootstrap", type=int, default=2000,
                        help="bootstrap resamples (default: 2000)")
    args = parser.parse_args(argv)
    cv = {"n_repeats": args.repeats, "n_splits": args.folds, "n_boot": args.bootstrap, "seed": 0}

    # -- 1. the store ------------------------------------------------------------------
    store = Store.open(args.store)           # raises StoreError if it is not a store
    con = connect(store)                     # DuckDB with the catalog's views
    print(con.sql("SELECT site, count(*) AS patients, count(idh1) AS idh1_known "
                  "FROM clinical GROUP BY site ORDER BY site").pl())
    print(con.sql("SELECT backbone, perturbation, count(*) AS patients "
                  "FROM embeddings GROUP BY ALL ORDER BY ALL").pl())

    # (X, y) of one backbone and task: only patients with both an embedding and a label
    data = read_xy(store, args.backbone_a, args.task)
    sites = sorted(set(map(str, data.sites)))
    print(f"read_xy({args.backbone_a!r}, {args.task!r}): X {data.X.shape} {data.X.dtype}, "
          f"y {data.y.shape} ({int(data.y.sum())} positive), sites {sites}, "
          f"checkpoint {data.checkpoint_sha256[:12]}")

    # -- 2. a linear probe ----------------------------------------------------------------
    probe = probe_run(store, args.backbone_a, args.task, fractions=(), knn=False, **cv)
    print(f"\nprobe_run -> {probe.info.run_id} (tables: {', '.join(probe.tables)})")
    print(primary_rows(probe.metrics, ["backbone", "task", "probe", "metric", "estimate",
                                       "ci_low", "ci_high", "ci_method", "estimand", "n"]))
    # what was returned is what was stored: the results view shows the same rows
    stored = con.sql(f"SELECT metric, estimate FROM results WHERE run_id = '{probe.info.run_id}' "
                     "AND \"primary\" AND site = 'all' ORDER BY metric").df()
    returned = (primary_rows(probe.metrics, ["metric", "estimate"])
                .sort_values("metric").reset_index(drop=True))
    pd.testing.assert_frame_equal(stored, returned, check_dtype=False)

    # -- 3. a paired comparison of two backbones -----------------------------------------
    # same folds and bootstrap indices on both sides; A - B with a calibrated test
    comparison = compare_run(store, args.backbone_a, args.backbone_b, args.task, **cv)
    print(f"\ncompare_run -> {comparison.info.run_id}")
    print(primary_rows(comparison.tests, ["task", "metric", "backbone_a", "backbone_b",
                                          "estimate_a", "estimate_b", "diff", "diff_ci_low",
                                          "diff_ci_high", "test", "p_value"]))

    # -- 4. survival ------------------------------------------------------------------------
    survival = survival_run(store, args.backbone_a, args.survival_task, model="pca-cox",
                            n_components=5, **cv)
    print(f"\nsurvival_run -> {survival.info.run_id} ({survival.data.X.shape[0]} patients, "
          f"Uno's C truncated at {survival.tau:.0f} days; figures: {', '.join(survival.figures)})")
    print(primary_rows(survival.metrics, ["backbone", "task", "model", "metric", "estimate",
                                          "ci_low", "ci_high", "ci_method", "n"]))

    # every run is also in the catalog, with its parameters
    print(con.sql("SELECT command, count(*) AS rows FROM results GROUP BY command "
                  "ORDER BY command").pl())


if __name__ == "__main__":
    main()
