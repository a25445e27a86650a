#!/bin/bash
#SBATCH --job-name=myllm-1b
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=8
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=12
#SBATCH --exclusive
#SBATCH --time=12:00:00
#SBATCH --signal=B:USR1@180
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=logs/%x-%j.out
#
# Pretrain MyLLM (configs/myllm_1b.yaml) on 8-GPU nodes; one task per GPU, the same script on 1 or N nodes:
#     mkdir -p logs && sbatch slurm/pretrain_1b.sh                # 1 node  = 8 GPUs, data parallel 8
#     mkdir -p logs && sbatch --nodes=4 slurm/pretrain_1b.sh      # 4 nodes = 32 GPUs, data parallel 32
# Run from the repository root (Slurm opens logs/ there before this script starts; it must exist).
#
# Environment (defaults in brackets; docs/launch.md has the details):
#   CONFIG           [$MYLLM_HOME/configs/myllm_1b.yaml] the YAML config
#   OVERRIDES        [] space-separated KEY=VALUE, e.g. "training.steps=1000 optimizer.lr=2e-4"
#   CKPT_DIR         [the config's checkpoint.dir] where checkpoints go and resume comes from
#   CONTAINER_IMAGE  [] pyxis/enroot image: every srun step runs in it (CONTAINER_MOUNTS, CONTAINER_NAME)
#   VENV             [] virtualenv with myllm_mc installed; PYTHON overrides the interpreter; else python3
#   MYLLM_HOME       [the submit directory] the myllm_mc checkout (put on PYTHONPATH)
#   MAX_REQUEUES     [20] stop requeueing after this many restarts (a crash loop must end)
#   CPU test mode:   SBATCH_GPUS_PER_NODE=0 (read by sbatch itself, it overrides the #SBATCH GPU line; Slurm
#                    22.05 accepts 0) — no GPU requested, CUDA hidden, gloo. With a small machine also pass
#                    `sbatch --ntasks-per-node=2 --cpus-per-task=1` and CONFIG=configs/tiny.yaml.
#
# Preemption and time limit. Slurm sends USR1 to this shell 180 s before --time (B: = batch shell only); this
# script forwards it to srun, every task finishes its current step, saves and exits 75, and the script runs
# `scontrol requeue`; the job restarts with `--resume auto` from `latest`. TERM (preemption, scontrol requeue)
# takes the same path. Why 180 s, with the planner's numbers (`myllm plan configs/myllm_1b.yaml`):
#   step time   9.22e15 FLOPs/step / (8 GPUs × 989e12 FLOP/s bf16 × 50% MFU)                   = 2.33 s
#   checkpoint  1,055,231,744 params × (2 B bf16 weights + 4 B fp32 master + 2 × 4 B Adam moments)
#               = 1.055e9 × 14 B                                                               = 14.8 GB
#               (distributed optimizer + fully parallel save: each of the 8 ranks writes 1/8 = 1.85 GB)
#   save time   at an assumed 1 GB/s aggregate write bandwidth per node to the shared filesystem
#               (a modest NFS; Lustre/GPFS or local NVMe are 5-20× faster): 14.8 GB / 1 GB/s       = 14.8 s
#   stop        finish the step in flight (≤ 2.33 s) + save (14.8 s) + exit (~5 s)                ≈ 22 s
#   lead time   180 s ≈ 8 × 22 s: room for a filesystem 8× slower than assumed. Slurm may deliver the signal
#               up to 60 s *earlier* than asked (never later), so at most 240 s of an allocation go unused:
#               0.6% of 12 h.
#   interval    checkpoint.save_interval = 500 steps × 2.33 s = 19.4 min: a hard crash (no signal) loses at
#               most 19.4 min of 8 GPUs, 9.7 min on average; each save blocks ≤ 14.8 s / 19.4 min = 1.3% of
#               the time, less with checkpoint.async_save: true (the preemption save always completes first).
#   17.0 h of training (the planner's Megatron-FLOPs wall-clock) = 2 allocations of 12 h, 1 requeue.

set -uo pipefail
source "${MYLLM_HOME:-${SLURM_SUBMIT_DIR:-$PWD}}/slurm/lib.sh" 2>/dev/null || {
    echo "myllm slurm: slurm/lib.sh not found under ${MYLLM_HOME:-${SLURM_SUBMIT_DIR:-$PWD}}" \
         "— fix: sbatch from the repository root or export MYLLM_HOME=/path/to/myllm_mc" >&2; exit 2; }
myllm_init

CONFIG=${CONFIG:-$MYLLM_HOME/configs/myllm_1b.yaml}
# the allocation decides the world size, so `sbatch --nodes=4` needs no edit of the config
myllm_pretrain "$CONFIG" "" "CONFIG/OVERRIDES" "parallel.world_size=$(myllm_world_size)"
