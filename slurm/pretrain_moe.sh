#!/bin/bash
#SBATCH --job-name=myllm-moe
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=8
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=12
#SBATCH --exclusive
#SBATCH --time=12:00:00
#SBATCH --signal=B:USR1@600
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=logs/%x-%j.out
#
# Pretrain MyLLM-MoE (configs/myllm_moe.yaml: 16 experts, top-2, 6.0B parameters, 1.06B active) on 8-GPU nodes,
# experts spread over the 8 GPUs of a node (expert parallelism 8: two experts per GPU, tokens exchanged by
# all-to-all over NVLink, never across the network); more nodes add expert data parallelism:
#     mkdir -p logs && sbatch slurm/pretrain_moe.sh               # 1 node  = 8 GPUs: EP 8, DP 8, expert DP 1
#     mkdir -p logs && sbatch --nodes=4 slurm/pretrain_moe.sh     # 4 nodes = 32 GPUs: EP 8, DP 32, expert DP 4
# Run from the repository root (Slurm opens logs/ there before this script starts; it must exist).
# Why EP = the GPUs of a node: megatron puts consecutive ranks in an expert-parallel group and Slurm numbers a
# node's tasks consecutively, so the all-to-all (88.8 GB per GPU per step, `myllm plan configs/myllm_moe.yaml`)
# stays on NVLink (~0.2 s a step at ~450 GB/s); through one 400 Gb/s NIC per GPU (50 GB/s) it would take ~1.8 s
# of the 2.33 s step. The expert weights' gradients are then all-reduced over the expert-DP group across nodes:
# 706,019,328 × 2 B = 1.4 GB per GPU per step, like the dense part's 350M × 2 B = 0.7 GB.
#
# Environment (defaults in brackets; docs/launch.md has the details):
#   CONFIG           [$MYLLM_HOME/configs/myllm_moe.yaml] the YAML config
#   EP               [tasks per node] parallel.expert; must divide model.moe.num_experts (16) and the world size
#   OVERRIDES        [] space-separated KEY=VALUE, e.g. "training.steps=1000 model.moe.aux_loss_coeff=1e-3"
#   CKPT_DIR         [the config's checkpoint.dir] where checkpoints go and resume comes from
#   CONTAINER_IMAGE  [] pyxis/enroot image: every srun step runs in it (CONTAINER_MOUNTS, CONTAINER_NAME)
#   VENV             [] virtualenv with myllm_mc installed; PYTHON overrides the interpreter; else python3
#   MYLLM_HOME       [the submit directory] the myllm_mc checkout (put on PYTHONPATH)
#   MAX_REQUEUES     [20] stop requeueing after this many restarts (a crash loop must end)
#   CPU test mode:   SBATCH_GPUS_PER_NODE=0 with `sbatch --ntasks-per-node=2 --cpus-per-task=1` and
#                    CONFIG=configs/tiny_moe.yaml (16 experts of the tiny model): EP 2 over gloo, as
#                    tests/launch/test_slurm_moe.py runs it.
#
# Preemption and time limit as in slurm/pretrain_1b.sh (USR1 → save → exit 75 → `scontrol requeue` → resume
# from `latest` at any EP: expert weights are saved with their global index). Only the checkpoint differs, and
# it sets the lead time (`myllm plan configs/myllm_moe.yaml`):
#   step time   9.23e15 FLOPs/step / (8 GPUs × 989e12 FLOP/s bf16 × 50% MFU)                   = 2.33 s
#               (the dense preset's: a token runs through the same 1.06B parameters)
#   checkpoint  5,998,141,184 params × (2 B bf16 weights + 4 B fp32 master + 2 × 4 B Adam moments)
#               = 6.0e9 × 14 B                                                                 = 84.0 GB
#               (every GPU holds its 2 experts and 1/8 of the dense state: each writes ~10.5 GB)
#   save time   at the assumed 1 GB/s aggregate write bandwidth per node: 84.0 GB / 1 GB/s     = 84 s
#               (with 4 nodes each writes a quarter: 21 s)
#   stop        finish the step in flight (≤ 2.33 s) + save (84 s) + exit (~5 s)              ≈ 91 s
#   lead time   600 s ≈ 6.6 × 91 s: room for a filesystem 6× slower than assumed. Slurm may deliver the signal
#               up to 60 s earlier than asked, so at most 660 s of an allocation go unused: 1.5% of 12 h.
#   interval    checkpoint.save_interval = 500 steps × 2.33 s = 19.4 min: a hard crash loses at most 19.4 min;
#               a save blocks ≤ 84 s / 19.4 min = 7.2% of the time without checkpoint.async_save (the preset
#               sets it true: training goes on while the forked writer writes).
#   memory      29.39 GiB per H100 at EP 8 on one node, 23.11 GiB on 4 nodes (expert Adam state sharded over
#               expert DP 4); the dense preset's 19.51 GiB.
#   17.0 h of training (the planner's Megatron-FLOPs wall-clock) = 2 allocations of 12 h, 1 requeue.

set -uo pipefail
source "${MYLLM_HOME:-${SLURM_SUBMIT_DIR:-$PWD}}/slurm/lib.sh" 2>/dev/null || {
    echo "myllm slurm: slurm/lib.sh not found under ${MYLLM_HOME:-${SLURM_SUBMIT_DIR:-$PWD}}" \
         "— fix: sbatch from the repository root or export MYLLM_HOME=/path/to/myllm_mc" >&2; exit 2; }
myllm_init

CONFIG=${CONFIG:-$MYLLM_HOME/configs/myllm_moe.yaml}
WORLD=$(myllm_world_size)
PER_NODE=${SLURM_NTASKS_PER_NODE:-8}
EP=${EP:-${PER_NODE%%(*}}                 # one node's tasks (Slurm may write "8(x4)")
# the allocation decides the world size and the expert-parallel size, so `sbatch --nodes=4` needs no edit; the
# check refuses an EP that does not divide the experts before any task starts
myllm_pretrain "$CONFIG" "expert parallelism $EP of $WORLD tasks" "CONFIG/EP/OVERRIDES" \
    "parallel.world_size=$WORLD" "parallel.expert=$EP"
