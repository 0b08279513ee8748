-- Registered patients that have no (unperturbed) embedding for a backbone.
-- Set the backbone with: neurofeat sql --file missing_embeddings.sql --param backbone=dino_dro
SELECT p.patient_id, p.site
FROM patients AS p
ANTI JOIN (
    SELECT patient_id FROM embeddings
    WHERE backbone = getvariable('backbone') AND perturbation = 'none'
) AS e USING (patient_id)
ORDER BY p.site, p.patient_id;
