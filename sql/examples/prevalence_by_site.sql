-- Label prevalence per site: patients, labelled patients and positives for each marker.
SELECT site,
       count(*)                                   AS n_patients,
       count(idh1)                                AS idh1_known,
       round(avg(idh1::INT), 3)                   AS idh1_mutant_rate,
       count(mgmt)                                AS mgmt_known,
       round(avg(mgmt::INT), 3)                   AS mgmt_methylated_rate,
       count(codel_1p19q)                         AS codel_known,
       round(avg(codel_1p19q::INT), 3)            AS codel_rate,
       count(cdkn2a)                              AS cdkn2a_known,
       round(avg(cdkn2a::INT), 3)                 AS cdkn2a_deleted_rate,
       round(avg(os_event::INT), 3)               AS death_rate,
       round(median(os_days), 1)                  AS median_os_days
FROM clinical
GROUP BY site
ORDER BY site;
