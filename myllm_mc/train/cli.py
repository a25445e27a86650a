"""`myllm train CONFIG [--set k=v ...] [--nproc-per-node N] [--resume auto|PATH]`.

Under a launcher (torchrun, srun, mpirun) it joins that process group; with `--nproc-per-node N` and no launcher
it starts torchrun itself. The config is validated for the final world size *before* any process starts.

Exit codes: 0 finished; 2 bad config; 3 stopped after too many non-finite steps; 75 preempted (SIGTERM/SIGUSR1):
a checkpoint of the current step was saved, requeue and `--resume auto` to continue; 130 interrupted (Ctrl-C /
SIGINT): the current step was saved (a second Ctrl-C stops without saving).

With `--nproc-per-node N` this process supervises torchrun (train/supervise.py): signals sent to it or to its
process group are forwarded to every rank, and it returns only after the ranks have saved and exited.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

from myllm_mc.config import ConfigError, load
from myllm_mc.config.arguments import add_config_arguments
from myllm_mc.data.shipped import prepare_shipped_corpus
from myllm_mc.errors import MyllmError, fail
from myllm_mc.parallel.launch import launcher_rank, launcher_world_size, torchrun_invocation
from myllm_mc.plan.compare import end_of_run
from myllm_mc.preflight import check_inputs

from .faults import Faults
from .signals import INTERRUPTED_EXIT, install_early
from .supervise import PID_DIR_ENV, Supervisor, announce_rank

EXIT_FILE_ENV = "MYLLM_EXIT_CODE_FILE"   # where ranks leave the loop's exit code for the parent of torchrun
PREFLIGHT_ENV = "MYLLM_PREFLIGHT_DONE"   # the parent checked tokenizer and data already


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="myllm train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser)
    parser.add_argument("--nproc-per-node", type=int, default=None,
                        help="start this many local processes with torchrun (ignored under a launcher)")
    parser.add_argument("--resume", default=None, help="auto (latest under checkpoint.dir) or a checkpoint path")
    parser.add_argument("--poison-step", type=int, action="append", default=[], help=argparse.SUPPRESS)
    parser.add_argument("--kill-in-save-step", type=int, default=None, help=argparse.SUPPRESS)
    return parser


def main(argv) -> int:
    args = _parser().parse_args(argv)
    overrides = list(args.overrides) + ([f"checkpoint.resume={args.resume}"] if args.resume else [])
    launched = launcher_world_size()
    if launched is None:                         # the launching parent: prepare the preset's data once
        prepare_shipped_corpus(load(args.config, overrides, world_size=args.nproc_per_node or args.world_size or 1))
    if launched is None and args.nproc_per_node and args.nproc_per_node > 1:
        cfg = load(args.config, overrides, world_size=args.nproc_per_node)    # fail fast, before torchrun
        check_inputs(cfg)                                                       # tokenizer, data, epochs
        check_lm_eval(cfg)                           # training.eval_lm_eval: task names, their data, the layout
        target = ["-m", "myllm_mc.cli", "train", args.config]
        if overrides:
            target += ["--set", *overrides]
        target += [f"--poison-step={s}" for s in args.poison_step]
        if args.kill_in_save_step is not None:
            target.append(f"--kill-in-save-step={args.kill_in_save_step}")
        with tempfile.TemporaryDirectory() as tmp:
            command, env = torchrun_invocation(target, args.nproc_per_node, {
                EXIT_FILE_ENV: os.path.join(tmp, "exit_code"), PID_DIR_ENV: tmp, PREFLIGHT_ENV: "1"})
            code = Supervisor(command, env, tmp).run()      # forwards signals to every rank
            # the ranks leave the loop's documented code here (torchrun would turn it into 1)
            if os.path.exists(env[EXIT_FILE_ENV]):
                code = int(open(env[EXIT_FILE_ENV]).read() or code)
            if code == 0:
                _print_plan_vs_measured(cfg)
            return code
    install_early()              # a signal during the seconds of start-up is honoured at the first step
    announce_rank(launcher_rank())
    cfg = load(args.config, overrides, world_size=launched or args.world_size or 1)
    if not os.environ.get(PREFLIGHT_ENV):       # under srun/mpirun each rank checks; only rank 0 says so
        quiet = launcher_rank() != 0
        try:
            check_inputs(cfg, warn=(lambda message: None) if quiet else None)
            check_lm_eval(cfg)
        except ConfigError:
            if quiet:
                return 2
            raise
    # torch and megatron-core load only here, in a rank: the launching parent (which supervises torchrun) never
    # needs them, and the signal handlers above are in place during the seconds this import takes
    from myllm_mc.parallel.state import destroy

    from .run import run_training
    try:
        code = run_training(cfg, Faults(tuple(args.poison_step), args.kill_in_save_step)).exit_code
    except MyllmError as err:   # the same on every rank (rank 0 decided, or the same data):
        # one line, from rank 0
        if launcher_rank() == 0:
            fail("myllm train", str(err), 2, err)
        code = 2
    except KeyboardInterrupt:    # a second Ctrl-C: no traceback, the last saved checkpoint stays as it was
        print("myllm train: stopped without saving (second Ctrl-C)", file=sys.stderr)
        code = INTERRUPTED_EXIT
    finally:
        destroy()
    if os.environ.get(EXIT_FILE_ENV):
        if code != 0:
            with open(os.environ[EXIT_FILE_ENV], "w") as f:
                f.write(str(code))
        return 0                 # towards torchrun: a documented stop is not a failure to report or restart
    if code == 0 and launched is None:       # one plain process; under srun/mpirun see `myllm plan --compare`
        _print_plan_vs_measured(cfg)
    return code


def check_lm_eval(cfg) -> None:
    """`training.eval_lm_eval` checked before training (one ConfigError line); lm_eval and the evaluate package
    (torch) are imported only when the config names lm-eval tasks, so `myllm train --help` stays light."""
    if cfg.training.eval_lm_eval:
        from myllm_mc.evaluate.lm_eval_run import training_lm_eval

        training_lm_eval(cfg)


def _print_plan_vs_measured(cfg) -> None:
    """Every finished pretraining run ends with the planner's figures against what it measured (docs/planner.md)."""
    print(end_of_run(cfg), flush=True)
