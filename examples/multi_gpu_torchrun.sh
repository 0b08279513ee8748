#!/usr/bin/env bash
# Pretrain a Group-DRO encoder and extract its embeddings on every GPU of one machine.
#
#   bash examples/multi_gpu_torchrun.sh [STORE] [NPROC]
#
# STORE   a store holding an ingested cohort (default: $NEUROFEAT_STORE or neurofeat-store)
# NPROC   GPUs to use (default: all that nvidia-smi lists)
#
# Environment (optional):
#   METHOD          SSL method: simclr, moco, byol, dino (default) or mae
#   PRETRAIN_ARGS   extra `neurofeat pretrain` options, e.g. the study's recipe
#                   "--arch resnet50 --input-size 128 --spacing 1.5 --epochs 100"
#                   or a smoke test "--arch resnet10 --widen-factor 0.25 --input-size 32 --epochs 1"
#   EXTRACT_ARGS    extra `neurofeat extract` options (e.g. "--cache-dir /scratch/nf-cache")
#   NEUROFEAT_MODELS  where backbones are written and read (default: ./models)
#
# What happens (README, "Multi-GPU machines"): each rank uses cuda:$LOCAL_RANK.
# Pretraining all-reduces the per-group loss sums and counts, so every rank holds the
# same Group-DRO weights q; only rank 0 writes the checkpoint. Extraction gives each rank
# every N-th batch of the patients still to do (no patient is padded in or embedded
# twice); ranks stage their own Parquet parts and rank 0 commits once. A killed job
# resumes when the same command is run again, with any number of GPUs and the same
# --batch-size.
set -euo pipefail

STORE="${1:-${NEUROFEAT_STORE:-neurofeat-store}}"
NPROC="${2:-$(nvidia-smi -L | wc -l)}"
METHOD="${METHOD:-dino}"
read -r -a PRETRAIN_EXTRA <<< "${PRETRAIN_ARGS:-}"
read -r -a EXTRACT_EXTRA <<< "${EXTRACT_ARGS:-}"

if [ "$NPROC" -lt 1 ]; then
    echo "no GPU found (nvidia-smi lists none); on a CPU run neurofeat pretrain/extract directly" >&2
    exit 1
fi
echo "store $STORE, $NPROC GPU(s), method $METHOD + Group-DRO over sites"

# 1. pretrain <method>_dro: Group-DRO over the sites of the store's patients
#    (--standalone: a single machine, torchrun picks a free rendezvous port)
torchrun --standalone --nproc-per-node "$NPROC" -m neurofeat pretrain \
    --method "$METHOD" --dro --group-by site --store "$STORE" \
    ${PRETRAIN_EXTRA[@]+"${PRETRAIN_EXTRA[@]}"}

# 2. embed every registered patient with it (workers decode NIfTI while the GPUs run)
torchrun --standalone --nproc-per-node "$NPROC" -m neurofeat extract \
    --backbone "${METHOD}_dro" --store "$STORE" --batch-size 8 --workers 4 \
    ${EXTRACT_EXTRA[@]+"${EXTRACT_EXTRA[@]}"}

# 3. one row per patient, whatever the number of GPUs
neurofeat sql "SELECT backbone, count(*) AS rows, count(DISTINCT patient_id) AS patients
               FROM embeddings WHERE backbone = '${METHOD}_dro' GROUP BY backbone" --store "$STORE"
