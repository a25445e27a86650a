"""Checks of what a config points at (tokenizer, data prefixes), run before any training process starts.

Why separate from validate.py: `load()` validates the config itself everywhere (the planner, `config show`) even
where the data does not exist yet; these checks read the file system and run where a run is about to start —
`myllm config check` (the Slurm scripts' fail-fast step), `myllm train` before it starts torchrun, and each rank
under srun/mpirun before the process group forms. Each failure is one ConfigError line (exit 2).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import List, Tuple

from .loader import ConfigError
from .schema import Config

MANY_EPOCHS = 10          # beyond this a run mostly memorises its data
_IDX_DTYPE_BYTES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 8, 7: 4, 8: 2}   # megatron-core's .idx dtype codes


def dataset_tokens(prefix: str) -> int:
    """Tokens in an indexed dataset from its .idx header and .bin size (no megatron-core import)."""
    with open(f"{prefix}.idx", "rb") as f:
        header = f.read(18)
    if len(header) < 18 or not header.startswith(b"MMIDIDX"):
        raise ConfigError(f"data.blend: {prefix}.idx is not a megatron-core index — fix: re-run "
                          f"tools/preprocess_data.py for it")
    return os.path.getsize(f"{prefix}.bin") // _IDX_DTYPE_BYTES.get(header[17], 1)


def check_tokenizer(cfg: Config):
    from myllm_mc.data.tokenizer import Tokenizer, TokenizerError

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


def check_data(cfg: Config) -> List[Tuple[str, int]]:
    """(prefix, tokens) of every data.blend entry; raises ConfigError when one is missing or unreadable."""
    from myllm_mc.data.datasets import parse_blend
    from myllm_mc.data.readers import InputError

    if cfg.data.loader != "megatron":
        return []
    try:
        prefixes, _ = parse_blend(cfg.data.blend)
    except InputError as err:
        raise ConfigError(str(err)) from None
    return [(prefix, dataset_tokens(prefix)) for prefix in prefixes]


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


def check_checkpoint(cfg: Config) -> None:
    """checkpoint.dir not held by a live run; the checkpoint a resume would pick matches the model and tokenizer."""
    from myllm_mc.checkpoint import compat, lock, resolve_resume, read_meta
    from myllm_mc.checkpoint.errors import CheckpointError

    c = cfg.checkpoint
    try:
        if c.dir:
            lock.refuse_if_held(c.dir)
        candidate = resolve_resume(c.resume, c.dir, verify=False)   # checksums: verified by the run itself
        if candidate is not None:
            compat.check(read_meta(candidate), cfg, candidate)
        elif c.init_from and Path(c.init_from).exists():       # a missing one: the run says so
            from myllm_mc.checkpoint import is_complete, resolve_weights
            weights = resolve_weights(c.init_from)
            if is_complete(weights):
                compat.check(read_meta(weights), cfg, weights, init=True)
    except (CheckpointError, FileNotFoundError) as err:
        raise ConfigError(str(err)) from None


def eval_task_names(cfg: Config) -> List[str]:
    """`training.eval_tasks` with `all` expanded, checked where a run starts (after the stage's own layout checks,
    so a fine-tuning layout refusal comes first): a name without shipped test prompts, or a layout the generator
    cannot run in, is one ConfigError line."""
    from myllm_mc.data.tasks import task_files

    t, p = cfg.training, cfg.parallel
    names = list(t.eval_tasks)
    if not names:
        return []
    if t.eval_task_prompts < 1 or t.eval_task_max_new_tokens < 1:
        raise ConfigError("training.eval_task_prompts and eval_task_max_new_tokens must be ≥ 1 — fix: e.g. 32 and 48")
    if p.virtual_pipeline or p.context > 1 or p.sequence_parallel:
        raise ConfigError("training.eval_tasks generates with the training model, one chunk per rank without context"
                          " or sequence parallelism — fix: --set training.eval_tasks=[] for this layout (and score"
                          " its checkpoints with `myllm eval --tasks`)")
    shipped = [path.name[:-len(".test.jsonl")] for path in task_files("prompts", "test")]
    unknown = [name for name in names if name not in shipped] if names != ["all"] else []
    if unknown:
        raise ConfigError(f"training.eval_tasks: no shipped task {', '.join(map(repr, unknown))} — fix: any of"
                          f" {', '.join(shipped)}, or [all]")
    return shipped if names == ["all"] else names


def check_inputs(cfg: Config, warn=None) -> None:
    """Tokenizer, data and checkpoint of a run that is about to start; warnings (many epochs) go to `warn`."""
    warn = warn or (lambda message: print(message, file=sys.stderr, flush=True))
    check_tokenizer(cfg)
    check_checkpoint(cfg)
    eval_task_names(cfg)
    message = epochs_warning(cfg, check_data(cfg))
    if message:
        warn(message)
