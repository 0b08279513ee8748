# %% [markdown]
# # Reading a neurofeat store with plain Polars
#
# The same store as `sql_duckdb.py`, read lazily with Polars; nothing here imports
# neurofeat. Layout:
#
#     store/patients/part-*.parquet       one row per patient (site, age, sex, grade, ...)
#     store/clinical/part-*.parquet       canonical labels (idh1, mgmt, ..., os_days, os_event)
#     store/embeddings/backbone=<b>/perturbation=<p>/part-<uuid>.parquet
#     store/runs/<run_id>/metrics.parquet results of probe/survival runs
#
# Run as a script (`python examples/sql_polars.py --store S`), or run the `# %%` cells
# in VS Code / Jupytext.

# %%
import argparse
from pathlib import Path

import polars as pl

parser = argparse.ArgumentParser(description="Read a neurofeat store with plain Polars.")
parser.add_argument("--store", default="neurofeat-store",
                    help="store directory (default: neurofeat-store)")
parser.add_argument("--backbone", default=None,
                    help="backbone to load as a matrix (default: the first one stored)")
parser.add_argument("--task", default="idh1", help="label to pair with it (default: idh1)")
args, _ = parser.parse_known_args()  # "known": a notebook kernel passes its own arguments
STORE = Path(args.store)

pl.Config.set_tbl_rows(30)
pl.Config.set_tbl_cols(12)
pl.Config.set_tbl_width_chars(160)
pl.Config.set_fmt_str_lengths(40)

# %% [markdown]
# ## A union-by-name scan
#
# Part files written at different times may hold different columns (a later version
# added one). `pl.concat(..., how="diagonal_relaxed")` of one lazy scan per file is
# Polars' equivalent of DuckDB's `union_by_name`: missing columns read as null.


# %%
def scan_union(pattern: str) -> pl.LazyFrame:
    files = sorted(STORE.glob(pattern))
    if not files:
        raise SystemExit(f"no file matches {STORE / pattern}: is {STORE} a neurofeat store?")
    return pl.concat([pl.scan_parquet(f) for f in files], how="diagonal_relaxed")


# %% [markdown]
# ## Patients and labels: prevalence by site
#
# Unknown labels are null, so `.mean()` of a boolean is the prevalence among the
# known ones.

# %%
patients = scan_union("patients/*.parquet")
labels = scan_union("clinical/*.parquet")
clinical = patients.join(labels.drop("site", strict=False), on="patient_id", how="left")
prevalence = (
    clinical.group_by("site")
    .agg(
        pl.len().alias("patients"),
        pl.col("idh1").count().alias("idh1_known"),
        pl.col("idh1").mean().round(3).alias("idh1_mutant"),
        pl.col("mgmt").mean().round(3).alias("mgmt_methylated"),
        (pl.col("grade") == 4).mean().round(3).alias("grade4"),
        pl.col("os_event").sum().alias("deaths"),
    )
    .sort("site")
    .collect()
)
print(prevalence)

# %% [markdown]
# ## Embeddings
#
# `hive_partitioning=True` turns `backbone=<b>/perturbation=<p>` into columns; the
# `hive_schema` says they are strings (a name such as `backbone=2024` would otherwise be
# read as a number). A filter on them prunes whole folders before any file is opened.
# Backbones differ in dimension, so the overview leaves the `embedding` column unread
# and the matrix is read from one backbone's folder.

# %%
HIVE = {"backbone": pl.String, "perturbation": pl.String}
stored = (
    pl.scan_parquet(STORE / "embeddings" / "**" / "*.parquet", hive_partitioning=True,
                    hive_schema=HIVE)
    .group_by("backbone", "perturbation")
    .agg(pl.len().alias("patients"),
         pl.col("checkpoint_sha256").first().str.slice(0, 12).alias("checkpoint"),
         pl.col("extracted_at").min().alias("first_extracted"))
    .sort("backbone", "perturbation")
    .collect()
)
print(stored)

# %% [markdown]
# ## One backbone as a numpy matrix, paired with a label
#
# The embedding is a fixed-size list in Parquet, a `pl.Array` in Polars: `.to_numpy()`
# gives the `(n_patients, dim)` matrix directly.

# %%
backbone = args.backbone or stored["backbone"][0]
frame = (
    pl.scan_parquet(STORE / "embeddings" / f"backbone={backbone}" / "**" / "*.parquet",
                    hive_partitioning=True, hive_schema=HIVE)
    .filter(pl.col("perturbation") == "none")
    .select("patient_id", "site", "embedding")
    .join(labels.select("patient_id", pl.col(args.task).alias("y")), on="patient_id")
    .filter(pl.col("y").is_not_null())
    .sort("patient_id")
    .collect()
)
X = frame["embedding"].to_numpy()  # (n_patients, dim) float32
y = frame["y"].cast(pl.Float64).to_numpy()
print(f"{backbone}: X {X.shape} {X.dtype}, {args.task} positives {int(y.sum())} of {len(y)}, "
      f"sites {frame['site'].unique().sort().to_list()}")

# %% [markdown]
# ## Results of probe and survival runs
#
# Each run writes `runs/<run_id>/metrics.parquet`. `primary` marks each run's
# calibrated headline estimates (one per metric).

# %%
results = (
    scan_union("runs/*/metrics.parquet")
    .filter(pl.col("primary") & (pl.col("site") == "all"))
    .select("backbone", "task", "protocol", "metric",
            pl.col("estimate", "ci_low", "ci_high").round(3), "ci_method", "n", "run_id")
    .sort("task", "backbone", "metric", "run_id")
    .collect()
)
print(results)
