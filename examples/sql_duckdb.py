# %% [markdown]
# # Reading a neurofeat store with plain DuckDB
#
# A store is a folder of Parquet files; nothing here imports neurofeat. The same
# queries work from the DuckDB CLI, R (duckdb package), or any engine that reads
# Hive-partitioned Parquet.
#
#     store/patients/part-*.parquet       one row per patient (site, age, sex, grade, ...)
#     store/clinical/part-*.parquet       canonical labels (idh1, mgmt, ..., os_days, os_event)
#     store/embeddings/backbone=<b>/perturbation=<p>/part-<uuid>.parquet
#     store/runs/<run_id>/metrics.parquet results of probe/survival runs (+ tests.parquet
#                                         of `stats compare`, run.json, figures)
#
# Run as a script (`python examples/sql_duckdb.py --store S`), or open it in VS Code /
# Jupytext and run the `# %%` cells one by one.

# %%
import argparse

import duckdb
import numpy as np

parser = argparse.ArgumentParser(description="Read a neurofeat store with plain DuckDB.")
parser.add_argument("--store", default="neurofeat-store",
                    help="store directory (default: neurofeat-store)")
parser.add_argument("--backbone", default=None,
                    help="backbone to load as a matrix (default: the first one stored)")
parser.add_argument("--task", default="idh1", help="label to pair with it (default: idh1)")
args, _ = parser.parse_known_args()  # "known": a notebook kernel passes its own arguments
STORE = args.store

con = duckdb.connect()  # in-memory: we only read files

# %% [markdown]
# ## Patients and labels: prevalence by site
#
# `union_by_name` reads every part file even if later appends added columns.
# Unknown labels are NULL (never a sentinel), so `count(idh1)` counts the known ones and
# `avg(idh1::INT)` is the prevalence among them.

# %%
con.sql(f"""
    CREATE VIEW patients AS SELECT * FROM read_parquet('{STORE}/patients/*.parquet', union_by_name = true);
    CREATE VIEW labels   AS SELECT * FROM read_parquet('{STORE}/clinical/*.parquet', union_by_name = true);
""")
prevalence = con.sql("""
    SELECT p.site,
           count(*)                        AS patients,
           count(l.idh1)                   AS idh1_known,
           round(avg(l.idh1::INT), 3)      AS idh1_mutant,
           round(avg(l.mgmt::INT), 3)      AS mgmt_methylated,
           round(avg((p.grade = 4)::INT), 3) AS grade4,
           sum(l.os_event::INT)            AS deaths
    FROM patients AS p LEFT JOIN labels AS l USING (patient_id)
    GROUP BY p.site ORDER BY p.site
""")
print(prevalence)

# %% [markdown]
# ## Embeddings: what is stored
#
# `backbone` and `perturbation` come from the folder names (Hive partitioning). Their
# values are strings: say so with `hive_types`, or DuckDB may guess a number from a
# name such as `backbone=2024`.

# %%
con.sql(f"""
    CREATE VIEW embeddings AS
    SELECT * FROM read_parquet('{STORE}/embeddings/*/*/*.parquet',
                               hive_partitioning = true,
                               hive_types = {{'backbone': VARCHAR, 'perturbation': VARCHAR}},
                               union_by_name = true)
""")
stored = con.sql("""
    SELECT backbone, perturbation, count(*) AS patients, len(any_value(embedding)) AS dim,
           any_value(checkpoint_sha256)[:12] AS checkpoint, min(extracted_at) AS first_extracted
    FROM embeddings GROUP BY ALL ORDER BY ALL
""")
print(stored)

# %% [markdown]
# ## One backbone as a numpy matrix, paired with a label
#
# A partition filter (`backbone = ...`) reads only that backbone's folder.

# %%
backbone = args.backbone or stored.fetchall()[0][0]
rows = con.sql(f"""
    SELECT e.patient_id, e.site, e.embedding, l.{args.task} AS y
    FROM embeddings AS e JOIN labels AS l USING (patient_id)
    WHERE e.backbone = ? AND e.perturbation = 'none' AND l.{args.task} IS NOT NULL
    ORDER BY e.patient_id
""", params=[backbone]).fetchnumpy()
X = np.stack(rows["embedding"]).astype(np.float32)  # (n_patients, dim)
y = rows["y"].astype(float)
sites = rows["site"]
print(f"{backbone}: X {X.shape} {X.dtype}, {args.task} positives {int(y.sum())} of {len(y)}, "
      f"sites {sorted(set(sites))}")

# %% [markdown]
# ## Nearest neighbours in SQL
#
# Parquet stores a fixed-size list, which DuckDB reads back as a variable `FLOAT[]`;
# cast it to `FLOAT[dim]` to use the array functions.

# %%
dim = X.shape[1]
anchor = str(rows["patient_id"][0])
neighbours = con.sql(f"""
    WITH e AS (SELECT patient_id, site, embedding::FLOAT[{dim}] AS v FROM embeddings
               WHERE backbone = ? AND perturbation = 'none')
    SELECT b.patient_id, b.site, round(array_cosine_similarity(a.v, b.v), 4) AS cosine
    FROM e AS a, e AS b
    WHERE a.patient_id = ? AND b.patient_id <> a.patient_id
    ORDER BY cosine DESC LIMIT 5
""", params=[backbone, anchor])
print(f"nearest neighbours of {anchor} in {backbone}:")
print(neighbours)

# %% [markdown]
# ## Results of probe and survival runs
#
# Each run writes `runs/<run_id>/metrics.parquet`. Every metric row says whether it is
# the run's primary (calibrated) estimate, the estimand, the CI method and level, and
# the provenance (checkpoint and preprocessing hashes, seed, version). `"primary"` is
# quoted because PRIMARY is an SQL keyword.

# %%
results = con.sql(f"""
    SELECT backbone, task, protocol, metric, round(estimate, 3) AS estimate,
           round(ci_low, 3) AS ci_low, round(ci_high, 3) AS ci_high, ci_method, n, run_id
    FROM read_parquet('{STORE}/runs/*/metrics.parquet', union_by_name = true)
    WHERE "primary" AND site = 'all'
    ORDER BY task, backbone, metric, run_id
""")
print(results.df().to_string(index=False))
