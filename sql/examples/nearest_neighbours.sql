-- The 10 patients whose embeddings are closest (cosine similarity) to one patient's,
-- within one backbone. Uses the backbone's typed view emb_<backbone> (FLOAT[D]), since
-- DuckDB's array functions need fixed-size arrays.
-- neurofeat sql --file nearest_neighbours.sql --param backbone=dino_dro --param patient=siteA-0001
WITH query AS (
    SELECT embedding FROM embeddings
    WHERE backbone = getvariable('backbone') AND perturbation = 'none'
      AND patient_id = getvariable('patient')
)
SELECT e.patient_id, e.site,
       list_cosine_similarity(e.embedding, q.embedding) AS cosine_similarity
FROM embeddings AS e, query AS q
WHERE e.backbone = getvariable('backbone') AND e.perturbation = 'none'
  AND e.patient_id <> getvariable('patient')
ORDER BY cosine_similarity DESC
LIMIT 10;
