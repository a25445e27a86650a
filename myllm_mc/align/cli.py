"""`myllm finetune sft|dpo|grpo CONFIG [--set k=v ...] [--nproc-per-node N] [--resume auto|PATH] [--strict]`.

Starts from `checkpoint.init_from` (a pretrained checkpoint at any layout). Like `myllm train`: under a launcher it
joins the process group; with `--nproc-per-node N` it starts torchrun itself after validating the config for N
processes. Exit codes as for `myllm train` (0, 2 bad config, 3 non-finite, 75 preempted); GRPO adds 4 (sampler and
trainer log-probs drifted apart).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

from myllm_mc.config import ConfigError, load
from myllm_mc.config.arguments import add_config_arguments
from myllm_mc.parallel.launch import launcher_world_size, relaunch_under_torchrun
from myllm_mc.preflight import check_output_dirs
from myllm_mc.tasks.selection import eval_task_names
from myllm_mc.train.cli import check_lm_eval

from .sft import check_align_layout, run_sft

EXIT_FILE_ENV = "MYLLM_EXIT_CODE_FILE"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="myllm finetune", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("method", choices=["sft", "dpo", "grpo"])
    add_config_arguments(parser)
    parser.add_argument("--nproc-per-node", type=int, default=None,
                        help="start this many local processes with torchrun (ignored under a launcher)")
    parser.add_argument("--resume", default=None, help="auto (latest under checkpoint.dir) or a checkpoint path")
    parser.add_argument("--strict", action="store_true", help="stop at the first bad chat record")
    return parser


def _check(cfg, method: str) -> None:
    check_align_layout(cfg, method)
    check_output_dirs(cfg)                                 # checkpoint.dir or logging.dir a file: one line, exit 2
    eval_task_names(cfg)                                   # a mistyped training.eval_tasks name: one line, exit 2
    check_lm_eval(cfg)                                     # training.eval_lm_eval: the same, for lm-eval tasks
    if method == "dpo" and not (cfg.align.reference or cfg.checkpoint.init_from):
        raise ConfigError("dpo needs a reference model — fix: set checkpoint.init_from (or align.reference)")
    if method == "grpo":
        from .grpo import check_grpo  # grpo.py imports the training engine (torch): only GRPO's check loads it
        check_grpo(cfg)
    if not cfg.checkpoint.init_from and not cfg.checkpoint.resume:
        print("warning: checkpoint.init_from is not set: fine-tuning a randomly initialised model", file=sys.stderr)


def main(argv) -> int:
    args = _parser().parse_args(argv)
    overrides = list(args.overrides) + ([f"checkpoint.resume={args.resume}"] if args.resume else [])
    overrides += ["align.strict=true"] if args.strict else []
    launched = launcher_world_size()
    world = launched or args.world_size or (args.nproc_per_node or 1)
    try:
        cfg = load(args.config, overrides, world_size=world)
        _check(cfg, args.method)
    except ConfigError as err:
        print(f"myllm finetune: {err}", file=sys.stderr)
        return 2
    if launched is None and args.nproc_per_node and args.nproc_per_node > 1:
        target = ["-m", "myllm_mc.cli", "finetune", args.method, args.config] + (
            ["--set", *overrides] if overrides else [])
        with tempfile.TemporaryDirectory() as tmp:
            exit_file = os.path.join(tmp, "exit_code")
            code = relaunch_under_torchrun(target, args.nproc_per_node, {EXIT_FILE_ENV: exit_file})
            if code != 0 and os.path.exists(exit_file):
                code = int(open(exit_file).read())
            return code
    # torch and megatron-core load here, in a rank (or the one process): the launching parent checks the config
    # and starts torchrun without them (GRPO's check aside, above)
    from myllm_mc.parallel.state import destroy

    from .dpo import run_dpo
    from .grpo import run_grpo
    try:
        code = {"sft": run_sft, "dpo": run_dpo, "grpo": run_grpo}[args.method](cfg).exit_code
    finally:
        destroy()
    if os.environ.get(EXIT_FILE_ENV) and code != 0:
        with open(os.environ[EXIT_FILE_ENV], "w") as f:
            f.write(str(code))
    return code
