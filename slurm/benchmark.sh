#!/bin/bash
#SBATCH --job-name=myllm-bench
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=8
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=12
#SBATCH --exclusive
#SBATCH --time=02:00:00
#SBATCH --open-mode=append
#SBATCH --output=logs/%x-%j.out
#
# The layout sweep for the MyLLM preset on one 8-GPU node: tokens/s, MFU and peak memory of every combination,
# invalid ones listed as skipped with their reason (`myllm benchmark --sweep`, docs/launch.md):
#     mkdir -p logs && sbatch slurm/benchmark.sh
#     SWEEP="parallel.tensor=1,2 training.micro_batch_size=1,2" sbatch slurm/benchmark.sh
# Not requeued: a sweep is minutes long and a half-finished one still leaves its results file in OUT.
#
# Environment (defaults in brackets):
#   CONFIG     [$MYLLM_HOME/configs/myllm_1b.yaml]
#   SWEEP      [parallel.tensor=1,2 parallel.pipeline=1,2 training.micro_batch_size=1,2,4
#               model.recompute=none,selective,full]   space-separated KEY=V1,V2,... axes
#   OVERRIDES  [] space-separated KEY=VALUE applied to every run
#   OUT        [runs/benchmark/$SLURM_JOB_ID] results directory
#   VENV, PYTHON, MYLLM_HOME, CONTAINER_IMAGE, CPU test mode (SBATCH_GPUS_PER_NODE=0): as in pretrain_1b.sh

set -uo pipefail
source "${MYLLM_HOME:-${SLURM_SUBMIT_DIR:-$PWD}}/slurm/lib.sh" 2>/dev/null || {
    echo "myllm slurm: slurm/lib.sh not found under ${MYLLM_HOME:-${SLURM_SUBMIT_DIR:-$PWD}}" \
         "— fix: sbatch from the repository root or export MYLLM_HOME=/path/to/myllm_mc" >&2; exit 2; }
myllm_init

CONFIG=${CONFIG:-$MYLLM_HOME/configs/myllm_1b.yaml}
SWEEP=${SWEEP:-parallel.tensor=1,2 parallel.pipeline=1,2 training.micro_batch_size=1,2,4 model.recompute=none,selective,full}
OUT=${OUT:-runs/benchmark/${SLURM_JOB_ID:-local}}
WORLD=$(myllm_world_size)
overrides=("parallel.world_size=$WORLD")
read -r -a user_overrides <<< "${OVERRIDES:-}"
overrides+=("${user_overrides[@]}")
read -r -a sweep <<< "$SWEEP"

myllm_banner
myllm_log "config $CONFIG, sweep: ${sweep[*]}, overrides: ${overrides[*]}, results in $OUT"
myllm_one "${MYLLM[@]}" config check "$CONFIG" --no-data --world-size "$WORLD" --set "${overrides[@]}" \
    || myllm_fail "config check failed for $CONFIG (message above) — fix CONFIG/OVERRIDES and resubmit"
mkdir -p "$OUT"

# every task joins one process group and the sweep visits each layout in it (as `myllm train` under srun)
myllm_step --label "${MYLLM[@]}" benchmark "$CONFIG" --set "${overrides[@]}" --sweep "${sweep[@]}" --out "$OUT"
exit "$MYLLM_STEP_EXIT"
