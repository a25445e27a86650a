# Shared helpers for the myllm Slurm scripts (sourced, not run). docs/launch.md explains every variable.
#
# Why a batch script needs more than `srun myllm train`:
#  - sbatch runs a *copy* of the script from Slurm's spool directory, so the repository is found through
#    MYLLM_HOME (default: the directory sbatch was called from), never through $0.
#  - bash runs a `trap` only between foreground commands; a 17-hour `srun` in the foreground would swallow the
#    USR1 that Slurm sends before the time limit. So the step runs in the background and the shell waits in a
#    loop, forwarding USR1/TERM to srun, which passes them on to every task.
#  - the training loop saves at the next step boundary and exits 75 (EX_TEMPFAIL); only then (or when a signal
#    arrived and the tasks died before saving) does the job requeue itself; a finished or failed run never does.

PREEMPTED_EXIT=75          # myllm_mc/train/signals.py PREEMPTED_EXIT

myllm_log() { echo "[myllm $(date '+%F %T')] $*"; }

myllm_fail() {             # one line naming the problem and the fix, then exit 2 (the CLI's bad-input code)
    echo "myllm slurm: $*" >&2
    exit 2
}

# Resolve where the code is and how to run it; fills MYLLM_HOME, PYTHON, MYLLM (array) and CONTAINER_ARGS (array).
myllm_init() {
    MYLLM_HOME=$(cd "${MYLLM_HOME:-${SLURM_SUBMIT_DIR:-$PWD}}" && pwd)
    [[ -f $MYLLM_HOME/myllm_mc/cli.py ]] || myllm_fail "MYLLM_HOME=$MYLLM_HOME is not a myllm_mc checkout" \
        "— fix: sbatch from the repository root or export MYLLM_HOME=/path/to/myllm_mc"
    CONTAINER_ARGS=()
    if [[ -n ${CONTAINER_IMAGE:-} ]]; then            # pyxis/enroot: every srun step runs inside the image
        CONTAINER_ARGS=(--container-image="$CONTAINER_IMAGE" --container-name="${CONTAINER_NAME:-myllm}"
                        --container-mounts="${CONTAINER_MOUNTS:-$MYLLM_HOME:$MYLLM_HOME,$PWD:$PWD}"
                        --container-workdir="$PWD")
        PYTHON=${PYTHON:-python}
    elif [[ -n ${VENV:-} ]]; then
        [[ -x $VENV/bin/python ]] || myllm_fail "VENV=$VENV has no bin/python — fix: python -m venv \$VENV &&" \
            "\$VENV/bin/pip install -e '.[all]', or unset VENV to use python3 from PATH"
        PYTHON=${PYTHON:-$VENV/bin/python}
    else
        PYTHON=${PYTHON:-python3}
    fi
    # `python -m myllm_mc.cli` works whether or not the package is pip-installed: the checkout is on PYTHONPATH
    export PYTHONPATH="$MYLLM_HOME${PYTHONPATH:+:$PYTHONPATH}"
    MYLLM=("$PYTHON" -m myllm_mc.cli)
    export PYTHONUNBUFFERED=1             # log lines reach logs/ as they happen, not when a buffer fills
    # one BLAS thread pool per task, sized to its CPUs (torch would otherwise start one thread per core per task)
    export OMP_NUM_THREADS=${OMP_NUM_THREADS:-${SLURM_CPUS_PER_TASK:-1}}
    if [[ ${SLURM_GPUS_PER_NODE-} == 0 || ${MYLLM_CPU_TEST:-0} == 1 ]]; then
        # CPU test mode (SBATCH_GPUS_PER_NODE=0): hide any GPU so backend/spec `auto` resolve to gloo/local
        MYLLM_CPU_TEST=1
        export CUDA_VISIBLE_DEVICES=""
    else
        MYLLM_CPU_TEST=""
    fi
    # trap from the start: USR1/TERM during the config check would otherwise kill this shell (bash's default)
    MYLLM_SIGNALLED="" MYLLM_STEP_PID=""
    trap '_myllm_forward USR1' USR1
    trap '_myllm_forward TERM' TERM
}

# Processes the allocation will start: SLURM_NTASKS, or nodes × tasks per node when only those were given.
myllm_world_size() {
    if [[ -n ${SLURM_NTASKS:-} ]]; then
        echo "$SLURM_NTASKS"
    else
        echo $(( ${SLURM_JOB_NUM_NODES:-1} * ${SLURM_NTASKS_PER_NODE:-1} ))
    fi
}

# Run one process (config checks): directly in the batch shell, or in a one-task step inside the container.
myllm_one() {
    if (( ${#CONTAINER_ARGS[@]} )); then
        srun --nodes=1 --ntasks=1 "${CONTAINER_ARGS[@]}" "$@"
    else
        "$@"
    fi
}

myllm_banner() {
    myllm_log "job ${SLURM_JOB_ID:-?} (${SLURM_JOB_NAME:-?}) restart ${SLURM_RESTART_COUNT:-0}:" \
        "${SLURM_JOB_NUM_NODES:-1} node(s) ${SLURM_JOB_NODELIST:-$(hostname)}, $(myllm_world_size) tasks," \
        "${SLURM_GPUS_PER_NODE:-0} GPUs/node${MYLLM_CPU_TEST:+ (CPU test mode)}"
    myllm_log "code $MYLLM_HOME ($(git -C "$MYLLM_HOME" rev-parse --short HEAD 2>/dev/null || echo 'no git'))," \
        "python ${CONTAINER_IMAGE:+in $CONTAINER_IMAGE: }$PYTHON, workdir $PWD"
}

_myllm_forward() {         # trap handler: remember the signal, pass it to the running step
    MYLLM_SIGNALLED=$1
    myllm_log "batch script received SIG$1: forwarding to the tasks (they save at the next step and exit $PREEMPTED_EXIT)"
    [[ -n ${MYLLM_STEP_PID:-} ]] && kill -s "$1" "$MYLLM_STEP_PID" 2>/dev/null
    return 0
}

# srun "$@" on every task of the allocation, in the background, forwarding USR1/TERM; sets MYLLM_STEP_EXIT.
myllm_step() {
    if [[ -n $MYLLM_SIGNALLED ]]; then        # the time is up before training began: come back later
        myllm_log "SIG$MYLLM_SIGNALLED arrived before the step started: not starting it"
        MYLLM_STEP_EXIT=$PREEMPTED_EXIT
        return
    fi
    # --kill-on-bad-exit=0 even where the site defaults to 1: exit 75 is "non-zero", and the first rank to exit
    # must not kill the others while they finish the same collective save
    srun --kill-on-bad-exit=0 "${CONTAINER_ARGS[@]}" "$@" &
    MYLLM_STEP_PID=$!
    while kill -0 "$MYLLM_STEP_PID" 2>/dev/null; do
        wait "$MYLLM_STEP_PID"    # returns early (status > 128) whenever a trapped signal arrives
    done
    wait "$MYLLM_STEP_PID"        # bash kept the step's real exit status
    MYLLM_STEP_EXIT=$?
    MYLLM_STEP_PID=""
    myllm_log "step exited with code $MYLLM_STEP_EXIT${MYLLM_SIGNALLED:+ after SIG$MYLLM_SIGNALLED}"
}

# After the step: requeue when the run stopped early and can resume (exit 75, or killed by a signal before it
# could save: it resumes from the previous checkpoint). MAX_REQUEUES bounds a crash loop.
myllm_requeue_or_exit() {
    local code=$MYLLM_STEP_EXIT restarts=${SLURM_RESTART_COUNT:-0}
    if (( code == PREEMPTED_EXIT )) || [[ -n $MYLLM_SIGNALLED && $code != 0 ]]; then
        if (( restarts >= ${MAX_REQUEUES:-20} )); then
            myllm_log "not requeueing: already restarted $restarts times (MAX_REQUEUES=${MAX_REQUEUES:-20})"
            exit "$code"
        fi
        myllm_log "run not finished: requeueing job $SLURM_JOB_ID (restart $((restarts + 1))); it resumes from latest"
        trap '' USR1 TERM         # requeue sends TERM to this shell; nothing left to forward
        scontrol requeue "$SLURM_JOB_ID" || myllm_log "scontrol requeue refused (cancelled job?): not requeued"
        exit "$code"
    fi
    (( code == 0 )) && myllm_log "run finished"
    exit "$code"
}

# The pretraining job of pretrain_1b.sh and pretrain_moe.sh: myllm_pretrain CONFIG LABEL KNOBS OVERRIDE...
# CKPT_DIR and the user's OVERRIDES join the script's own overrides; the config is checked in one process before
# a single task starts on the GPUs (a bad override costs seconds, not a queue wait + startup), then every task
# trains with --resume auto and the job requeues itself when the time runs out. LABEL goes in the log line, KNOBS
# names the variables a user fixes when the check fails.
myllm_pretrain() {
    local config=$1 label=$2 knobs=$3 user_overrides
    shift 3
    local overrides=("$@")
    [[ -n ${CKPT_DIR:-} ]] && overrides+=("checkpoint.dir=$CKPT_DIR")
    read -r -a user_overrides <<< "${OVERRIDES:-}"
    overrides+=("${user_overrides[@]}")
    myllm_banner
    myllm_log "config $config${label:+, $label}, overrides: ${overrides[*]}"
    myllm_one "${MYLLM[@]}" config check "$config" --world-size "$(myllm_world_size)" --set "${overrides[@]}" \
        || myllm_fail "config check failed for $config (message above) — fix $knobs and resubmit"
    myllm_step --label "${MYLLM[@]}" train "$config" --resume auto --set "${overrides[@]}"
    myllm_requeue_or_exit
}
