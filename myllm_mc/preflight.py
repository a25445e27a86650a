"""Checks of what a config points at (tokenizer, data prefixes, checkpoints, task names), run before any training
process starts; and `myllm config show|check`, their command.

Why not in config/: `load()` validates the config itself everywhere (the planner, `config show`) even where the
data does not exist yet, and config/ sits below every stage; these checks read the file system through data/,
checkpoint/ and tasks/ and run where a run is about to start — `myllm config check` (the Slurm scripts'
fail-fast step), `myllm train` / `myllm finetune` before they start torchrun, and each rank under srun/mpirun
before the process group forms. Each failure is one ConfigError line (exit 2).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Tuple

from myllm_mc.checkpoint import compat, is_complete, lock, read_meta, resolve_resume, resolve_weights
from myllm_mc.checkpoint.errors import CheckpointError
from myllm_mc.config import Config, ConfigError, dump, load
from myllm_mc.config.arguments import add_config_arguments
from myllm_mc.data.datasets import parse_blend
from myllm_mc.data.index_file import read_index, split_sizes, tokenizer_problem
from myllm_mc.data.readers import InputError
from myllm_mc.data.tokenizer import Tokenizer, TokenizerError
from myllm_mc.tasks.selection import eval_task_names

MANY_EPOCHS = 10          # beyond this a run mostly memorises its data


def dataset_tokens(prefix: str, split: str | None = None) -> int:
    """Tokens in an indexed dataset, its .bin checked against what its .idx describes (no megatron-core import);
    with `split`, a split that would get none of its documents is refused too (megatron-core gives an empty train
    split None, and loops forever on an empty valid/test split it was asked samples of)."""
    try:
        index = read_index(prefix)
    except InputError as err:
        raise ConfigError(str(err)) from None
    if split is not None:
        weights = [float(x) for x in split.split(",")]
        if weights[0] == 0:
            raise ConfigError(f"data.split: {split} gives training no documents — fix: a positive first share,"
                              f" e.g. --set data.split=969,30,1 (or 100,0,0 to train on everything)")
        for name, weight, size in zip(("train", "valid", "test"), weights, split_sizes(index.sequences, split)):
            if weight > 0 and size == 0:
                raise ConfigError(f"data.split: {split} gives the {name} split 0 of the {index.sequences:,} documents"
                                  f" of {prefix} — fix: preprocess more documents or a split that gives every used"
                                  f" split at least one (e.g. data.split=90,9,1, or 100,0,0 for train only)")
    return index.tokens


def check_tokenizer(cfg: Config):
    if not cfg.data.tokenizer:
        raise ConfigError("data.tokenizer: not set — fix: --set data.tokenizer=path/to/tokenizer.json")
    try:
        tokenizer = Tokenizer(cfg.data.tokenizer)
    except TokenizerError as err:
        raise ConfigError(f"data.tokenizer: {err}") from None
    if tokenizer.vocab_size > cfg.model.vocab_size:
        raise ConfigError(f"data.tokenizer: {tokenizer.path} has {tokenizer.vocab_size:,} tokens but model.vocab_size"
                          f" is {cfg.model.vocab_size:,} (ids above it would index past the embedding) — fix: --set"
                          f" model.vocab_size={tokenizer.vocab_size} or use a tokenizer of at most"
                          f" {cfg.model.vocab_size:,} tokens")
    return tokenizer


def check_data(cfg: Config, tokenizer=None) -> List[Tuple[str, int]]:
    """(prefix, tokens) of every data.blend entry; raises ConfigError when one is missing or unreadable, or (with
    `tokenizer`) was tokenized by another tokenizer (`index_file.tokenizer_problem`)."""
    if cfg.data.loader != "megatron":
        return []
    try:
        prefixes, _ = parse_blend(cfg.data.blend)
    except InputError as err:
        raise ConfigError(str(err)) from None
    sizes = [(prefix, dataset_tokens(prefix, cfg.data.split)) for prefix in prefixes]
    for prefix in prefixes if tokenizer is not None else ():
        problem = tokenizer_problem(prefix, tokenizer)
        if problem:
            raise ConfigError(f"data.blend: {problem}")
    return sizes


def epochs_warning(cfg: Config, sizes: List[Tuple[str, int]]) -> str | None:
    """A warning when the run would read its training split more than MANY_EPOCHS times."""
    tokens = sum(n for _, n in sizes)
    if not tokens:
        return None
    weights = [float(x) for x in cfg.data.split.split(",")]
    train_tokens = tokens * weights[0] / sum(weights)
    needed = cfg.training.steps * cfg.training.global_batch_size * cfg.model.seq_length
    epochs = needed / max(train_tokens, 1)
    if epochs <= MANY_EPOCHS:
        return None
    return (f"warning: the training split holds ~{train_tokens:,.0f} tokens but {cfg.training.steps:,} steps read "
            f"{needed:,} — about {epochs:,.0f} epochs: the model will memorise it rather than learn — fix: more "
            f"data or fewer training.steps")


def check_output_dirs(cfg: Config) -> None:
    """checkpoint.dir and logging.dir are directories or can be made ones: neither they nor a parent is a file (the
    run would stop at its first save or log line with a bare FileExistsError / NotADirectoryError)."""
    for key, value in (("checkpoint.dir", cfg.checkpoint.dir), ("logging.dir", cfg.logging.dir)):
        if not value:
            continue
        path = Path(value)
        for at in (path, *path.parents):
            if at.exists():
                if not at.is_dir():
                    what = "is a file" if at == path else f"has a parent {at} that is a file"
                    raise ConfigError(f"{key}: {value} {what}, not a directory — fix: --set {key}=ANOTHER_PATH"
                                      f" or move {at} away")
                break


def check_checkpoint(cfg: Config) -> None:
    """checkpoint.dir not held by a live run; the checkpoint a resume would pick matches the model and tokenizer."""
    c = cfg.checkpoint
    check_output_dirs(cfg)
    try:
        if c.dir:
            lock.refuse_if_held(c.dir)
        candidate = resolve_resume(c.resume, c.dir, verify=False)   # checksums: verified by the run itself
        if candidate is not None:
            compat.check(read_meta(candidate), cfg, candidate)
        elif c.init_from and Path(c.init_from).exists():       # a missing one: the run says so
            weights = resolve_weights(c.init_from)
            if is_complete(weights):
                compat.check(read_meta(weights), cfg, weights, init=True)
    except (CheckpointError, FileNotFoundError) as err:
        raise ConfigError(str(err)) from None


def check_inputs(cfg: Config, warn=None) -> None:
    """Tokenizer, data and checkpoint of a run that is about to start; warnings (many epochs) go to `warn`."""
    warn = warn or (lambda message: print(message, file=sys.stderr, flush=True))
    tokenizer = check_tokenizer(cfg)
    check_checkpoint(cfg)
    eval_task_names(cfg)
    message = epochs_warning(cfg, check_data(cfg, tokenizer))
    if message:
        warn(message)


def compile_summary(cfg: Config) -> str:
    """What `model.compile` means for a CPU pretraining run of `cfg`, and why (plan/compile_choice.py). CPU: asking
    torch whether this machine has a GPU would make `myllm config` import it; auto is off on GPUs."""
    from myllm_mc.plan.compile_choice import cpu_compile_choice
    on, why = cpu_compile_choice(cfg)
    return f"{'on' if on else 'off'} for a CPU pretraining run ({why})"


def main(argv) -> int:
    """`myllm config show|check CONFIG [--set k=v ...] [--world-size N]`: the resolved config in full, or `ok`
    after the file checks above; otherwise one line."""
    parser = argparse.ArgumentParser(prog="myllm config", description=__doc__)
    parser.add_argument("action", choices=["show", "check"], help="show: print in full; check: validate only")
    add_config_arguments(parser)
    parser.add_argument("--no-data", dest="data", action="store_false",
                        help="check: skip the tokenizer and data.blend files (e.g. before they are built)")
    args = parser.parse_args(argv)
    cfg = load(args.config, args.overrides, args.world_size)
    if args.action == "check" and args.data:
        check_inputs(cfg)
    if args.action == "show":
        print(dump(cfg), end="")
        print(f"# model.compile resolves to {compile_summary(cfg)}")
    else:
        p = cfg.parallel
        print(f"ok: {args.config} — world {p.world_size} = tensor {p.tensor} × pipeline {p.pipeline}"
              f" × context {p.context} × data {p.data}")
    return 0
