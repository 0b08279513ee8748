-- The catalog: views that neurofeat.store.connect() creates on a DuckDB connection.
--
-- Each block starts with "-- view: <name> | <glob relative to the store>". When the
-- glob matches no file yet, the view is created over an empty table of the right
-- schema instead, so that queries on a young store return no rows rather than fail.
-- {root} is replaced by the store's absolute path (quoted for SQL).
-- Partition values are strings: hive_types says so explicitly.

-- view: patients | patients/*.parquet
CREATE VIEW patients AS
SELECT * FROM read_parquet('{root}/patients/*.parquet', union_by_name = true);

-- view: scans | scans/*.parquet
CREATE VIEW scans AS
SELECT * FROM read_parquet('{root}/scans/*.parquet', union_by_name = true);

-- view: clinical_labels | clinical/*.parquet
CREATE VIEW clinical_labels AS
SELECT * FROM read_parquet('{root}/clinical/*.parquet', union_by_name = true);

-- view: clinical | -
-- Everything known about a patient: demographics from patients, labels from clinical.
CREATE VIEW clinical AS
SELECT p.patient_id, p.site, p.cohort, p.age, p.sex, p.grade, p.histology,
       c.idh1, c.mgmt, c.codel_1p19q, c.egfr, c.atrx, c.tp53, c.cdkn2a, c.tert,
       c.ki67, c.p53_ihc, c.os_days, c.os_event
FROM patients AS p LEFT JOIN clinical_labels AS c USING (patient_id);

-- view: embeddings | embeddings/*/*/*.parquet
CREATE VIEW embeddings AS
SELECT * FROM read_parquet(
    '{root}/embeddings/*/*/*.parquet',
    hive_partitioning = true,
    hive_types = {'backbone': VARCHAR, 'perturbation': VARCHAR},
    union_by_name = true
);

-- view: results | runs/*/metrics.parquet
-- One backbone's performance; {metrics_columns} = the columns of METRICS_SCHEMA
-- (neurofeat/store/schema.py). Intervals are two-sided at ci_level.
CREATE VIEW results AS
SELECT {metrics_columns}
FROM read_parquet('{root}/runs/*/metrics.parquet', union_by_name = true);

-- view: comparisons | runs/*/tests.parquet
-- Paired comparisons of backbones; {tests_columns} = the columns of TESTS_SCHEMA; diff = A - B.
CREATE VIEW comparisons AS
SELECT {tests_columns}
FROM read_parquet('{root}/runs/*/tests.parquet', union_by_name = true);

-- view: runs | runs/*/run.json
CREATE VIEW runs AS
SELECT * FROM read_json_auto('{root}/runs/*/run.json', union_by_name = true, format = 'auto');

-- view: extract_failures | extract_failures/*.parquet
CREATE VIEW extract_failures AS
SELECT * FROM read_parquet('{root}/extract_failures/*.parquet', union_by_name = true);

-- view: ingest_rejects | ingest_rejects/*.parquet
CREATE VIEW ingest_rejects AS
SELECT * FROM read_parquet('{root}/ingest_rejects/*.parquet', union_by_name = true);

-- view: open_extract_failures | -
-- The failures still standing: per patient, backbone and perturbation, the latest
-- failure, unless an embedding has been stored since (a later run succeeded).
CREATE VIEW open_extract_failures AS
SELECT f.* FROM extract_failures AS f
WHERE NOT EXISTS (
    SELECT 1 FROM embeddings AS e
    WHERE e.patient_id = f.patient_id AND e.backbone = f.backbone AND e.perturbation = f.perturbation
)
QUALIFY row_number() OVER (
    PARTITION BY f.patient_id, f.backbone, f.perturbation ORDER BY f.failed_at DESC, f.run_id DESC
) = 1;
