#!/usr/bin/env bash
# A BraTS-style folder + a hospital clinical sheet -> a neurofeat store.
#
#   bash examples/brats_folder/run.sh [WORKDIR] [COHORT]
#
# WORKDIR (default: brats-example) receives the imitated cohort (brats/) and the store
# (store/). COHORT is an existing `neurofeat synth` output to copy the images from;
# without it a small synthetic cohort is made first (30 patients, 16^3 voxels, seconds).
# With a real cohort you only need the last command, pointed at your folder and sheet.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
WORK="${1:-brats-example}"
COHORT="${2:-}"
PYTHON="${PYTHON:-python}"
mkdir -p "$WORK"

# 1. source images: a tiny synthetic multi-site cohort (with known truth)
if [ -z "$COHORT" ]; then
    COHORT="$WORK/cohort"
    neurofeat synth --out "$COHORT" --n 30 --size 16 --spacing 8 --seed 0
fi

# 2. lay them out as BraTS 2021 does (<id>/<id>-t1n.nii.gz, -t1c, -t2w, -t2f) and write a
#    clinical sheet in the hospital's own words (UCSF-PDGM-like)
"$PYTHON" "$HERE/make_brats_folder.py" --cohort "$COHORT" --out "$WORK/brats"

# 3. check first (reads every scan, writes nothing), then register scans and labels;
#    mapping.toml says what the sheet's columns and words mean
neurofeat ingest --discover "$WORK/brats/images" --clinical "$WORK/brats/clinical.csv" \
    --mapping "$HERE/mapping.toml" --store "$WORK/store" --dry-run
neurofeat ingest --discover "$WORK/brats/images" --clinical "$WORK/brats/clinical.csv" \
    --mapping "$HERE/mapping.toml" --store "$WORK/store"

# 4. what was registered, straight from the store
neurofeat sql "SELECT site, count(*) AS patients, count(idh1) AS idh1_known,
               avg(idh1::INT) AS idh1_mutant, count(os_days) AS with_survival
               FROM clinical GROUP BY site ORDER BY site" --store "$WORK/store"
