-- The 10 patients whose embeddings are closest (cosine similarity) to one patient's,
-- within one backbone. Reads the backbone's typed view emb_<backbone> (embedding as
-- FLOAT[D]), since DuckDB's array functions need fixed-size arrays.
-- neurofeat sql --file nearest_neighbours.sql --param backbone=dino_dro --param patient=siteA-0001
WITH typed AS (
    SELECT * FROM query_table('emb_' || regexp_replace(getvariable('backbone'), '\W', '_', 'g'))
    WHERE perturbation = 'none'
),
query AS (
    SELECT embedding FROM typed WHERE patient_id = getvariable('patient')
)
SELECT t.patient_id, t.site,
       array_cosine_similarity(t.embedding, q.embedding) AS cosine_similarity
FROM typed AS t, query AS q
WHERE t.patient_id <> getvariable('patient')
ORDER BY cosine_similarity DESC
LIMIT 10;
