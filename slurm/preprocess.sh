#!/bin/bash
#SBATCH --job-name=myllm-preprocess
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=8
#SBATCH --cpus-per-task=8
#SBATCH --time=04:00:00
#SBATCH --open-mode=append
#SBATCH --output=logs/%x-%j.out
#
# Tokenize corpora into megatron-core .bin/.idx on CPUs: one MPI rank per Slurm task, each rank tokenizes a
# contiguous block of the input files with WORKERS processes, rank 0 merges the shards in order, so the output
# is byte-identical to a single `tools/preprocess_data.py` run.
#     mkdir -p logs && INPUT="data/a.jsonl.zst data/b.jsonl.zst" OUTPUT_PREFIX=runs/data/corpus \
#         TOKENIZER=runs/tokenizer-65k/tokenizer.json sbatch slurm/preprocess.sh
# More tasks than input files leaves ranks idle: split big corpora into at least SLURM_NTASKS files.
#
# Environment (defaults in brackets):
#   INPUT            (required) space-separated files, directories or globs, as tools/preprocess_data.py --input
#   OUTPUT_PREFIX    (required) writes OUTPUT_PREFIX_text_document.{bin,idx}
#   TOKENIZER        tokenizer.json; or CONFIG to take data.tokenizer from a config (one of the two)
#   WORKERS          [SLURM_CPUS_PER_TASK] tokenizing processes per rank
#   EXTRA_ARGS       [] more tools/preprocess_data.py flags, e.g. "--json-keys text --strict"
#   MPIRUN           [mpirun] the MPI launcher; MPIRUN_ARGS [] more of its flags
#   VENV, PYTHON, MYLLM_HOME, CONTAINER_IMAGE as in slurm/pretrain_1b.sh
#
# Why mpirun inside the allocation, not `srun --mpi=...`: with Debian's Slurm 22.05 and OpenMPI 4.1, srun's
# pmix plugin finds no PMIx library and OpenMPI is not built for pmi2 (both measured), while mpirun reads the
# allocation (SLURM_NODELIST, tasks per node) itself and starts its daemons through srun on the other nodes.
# As root, OpenMPI needs OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 (sbatch passes your env on).

set -uo pipefail
source "${MYLLM_HOME:-${SLURM_SUBMIT_DIR:-$PWD}}/slurm/lib.sh" 2>/dev/null || {
    echo "myllm slurm: slurm/lib.sh not found under ${MYLLM_HOME:-${SLURM_SUBMIT_DIR:-$PWD}}" \
         "— fix: sbatch from the repository root or export MYLLM_HOME=/path/to/myllm_mc" >&2; exit 2; }
myllm_init

[[ -n ${INPUT:-} ]] || myllm_fail "INPUT is not set — fix: INPUT=\"data/a.jsonl data/b.jsonl\" sbatch slurm/preprocess.sh"
[[ -n ${OUTPUT_PREFIX:-} ]] || myllm_fail "OUTPUT_PREFIX is not set — fix: OUTPUT_PREFIX=runs/data/corpus"
read -r -a inputs <<< "$INPUT"
for path in "${inputs[@]}"; do
    compgen -G "$path" > /dev/null || myllm_fail "INPUT: $path does not exist (relative to $PWD) — fix the path"
done
tokenizer_args=()
if [[ -n ${TOKENIZER:-} ]]; then
    [[ -f $TOKENIZER ]] || myllm_fail "TOKENIZER: $TOKENIZER does not exist — fix: train one with" \
        "tools/train_tokenizer.py or point TOKENIZER at a tokenizer.json"
    tokenizer_args=(--tokenizer "$TOKENIZER")
elif [[ -n ${CONFIG:-} ]]; then
    myllm_one "${MYLLM[@]}" config check "$CONFIG" --no-data > /dev/null \
        || myllm_fail "config check failed for $CONFIG (message above) — fix CONFIG"
    tokenizer_args=(--config "$CONFIG")
else
    myllm_fail "neither TOKENIZER nor CONFIG is set — fix: TOKENIZER=path/to/tokenizer.json"
fi
mkdir -p "$(dirname "$OUTPUT_PREFIX")" || myllm_fail "cannot create the directory of OUTPUT_PREFIX=$OUTPUT_PREFIX"
read -r -a extra <<< "${EXTRA_ARGS:-}"
read -r -a mpirun_args <<< "${MPIRUN_ARGS:-}"

myllm_banner
ranks=$(myllm_world_size)
myllm_log "preprocess: $ranks MPI ranks × ${WORKERS:-${SLURM_CPUS_PER_TASK:-1}} workers: ${inputs[*]} → $OUTPUT_PREFIX"
# mpirun runs in the batch shell (it starts the ranks itself); in a container the whole mpirun runs in it
myllm_one "${MPIRUN:-mpirun}" -np "$ranks" --bind-to none "${mpirun_args[@]}" -x PYTHONPATH -x OMP_NUM_THREADS \
    -x PYTHONUNBUFFERED "$PYTHON" "$MYLLM_HOME/tools/preprocess_data.py" --mpi --no-progress \
    --workers "${WORKERS:-${SLURM_CPUS_PER_TASK:-1}}" --input "${inputs[@]}" --output-prefix "$OUTPUT_PREFIX" \
    "${tokenizer_args[@]}" "${extra[@]}"
code=$?
myllm_log "preprocess exited with code $code"
exit "$code"
