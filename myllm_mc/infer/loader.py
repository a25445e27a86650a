"""Config + checkpoint (saved at any layout) → a `Generator` in this process's TP/PP layout.

    cfg = inference_config("configs/tiny.yaml", ["parallel.tensor=2"], world_size=2)
    gen = load_generator(cfg, "runs/tiny/checkpoints")     # a checkpoint.dir (its `latest`) or one step directory

Generation runs one model chunk per rank: virtual pipelining, sequence parallelism and context parallelism are
training layouts, so they are switched off here (megatron's inference wrapper refuses a list of chunks). The
checkpoint's tensors are stored by global shape, so dist_checkpointing reshards them into whatever TP/PP this is.
A LoRA checkpoint loads as its base plus its adapters, kept separate (`myllm_mc.lora.checkpoints.load_weights`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Optional

from myllm_mc.checkpoint import resolve_weights
from myllm_mc.checkpoint.compat import check_checkpoint
from myllm_mc.config import load
from myllm_mc.data.tokenizer import Tokenizer

from .generator import Generator
from .sampling import GenerationError

INFERENCE_LAYOUT = ("parallel.virtual_pipeline=null", "parallel.sequence_parallel=false", "parallel.context=1")


def resolve_checkpoint(path, cfg=None, tokenizer=None) -> Path:
    """`checkpoint.resolve_weights` (a step directory, the one a root's `latest` names, or a bare
    dist_checkpointing directory) with its failure as a GenerationError line that names the fix. With `cfg`, the
    checkpoint must have been saved with its model and tokenizer (`compat.check_reading`; CheckpointError)."""
    if not Path(path).exists():
        raise GenerationError(f"checkpoint {str(path)!r} does not exist — fix: pass the checkpoint.dir of a"
                              " training run (e.g. runs/tiny/checkpoints) or one of its step_NNNNNNN directories")
    try:
        target = resolve_weights(str(path))
    except FileNotFoundError:
        raise GenerationError(f"{str(path)!r} holds no complete checkpoint — fix: pass the checkpoint.dir of a"
                              " training run or one of its step_NNNNNNN directories") from None
    if cfg is not None:
        check_checkpoint(cfg, target, tokenizer)
    return target


def inference_config(config, overrides: Iterable[str] = (), world_size: Optional[int] = None):
    """The config with the layout switches generation needs (see the module docstring)."""
    return load(config, [*INFERENCE_LAYOUT, *overrides], world_size=world_size)


def load_tokenizer(cfg, tokenizer_path=None):
    path = tokenizer_path or cfg.data.tokenizer
    if not path:
        raise GenerationError("the config names no tokenizer (data.tokenizer) — fix: --set data.tokenizer=PATH")
    return Tokenizer(path)


def load_model_for_inference(cfg, checkpoint):
    """This rank's GPTModel filled from `checkpoint` (needs init_distributed(cfg) first); bf16 runs wrapped in
    megatron's Float16Module as in training. `checkpoint=None` keeps the random initial weights: for timing
    decode only (`myllm_mc.bench.decode`), where the values do not change the work."""
    # the model and megatron-core on use: see generator.py
    from myllm_mc.lora.checkpoints import load_weights
    from myllm_mc.model import build_model

    chunks = build_model(cfg)
    if checkpoint is not None:      # a LoRA checkpoint: its base, then its adapters attached (not merged)
        load_weights(chunks, resolve_checkpoint(checkpoint, cfg))
    model = chunks[0]
    if cfg.model.precision == "bf16":
        from megatron.core.transformer.module import Float16Module
        from megatron.core.utils import get_model_config
        model = Float16Module(get_model_config(model), model)
    return model


PREFIX_CACHE_MIB = 256      # the prefix cache of a generator on frozen weights (generate, chat, serve)


def load_generator(cfg, checkpoint, max_batch_size: int = 8, max_seq_length: Optional[int] = None,
                   seed: Optional[int] = None, tokenizer_path=None, prefix_cache_mib: float = PREFIX_CACHE_MIB,
                   forward: str = "auto", speculative: int = 0, drafter=None):
    """Initialise the process group for cfg's layout, load the model and the tokenizer, return a Generator
    (the weights are frozen, so its prefix cache is on). `drafter`: speculative decoding's drafter (default prompt
    lookup; `draft_model.load_drafter` for a draft model)."""
    from myllm_mc.parallel.state import init_distributed

    resolve_checkpoint(checkpoint, cfg, tokenizer_path)    # a bad path or config fails before anything heavy
    tokenizer = load_tokenizer(cfg, tokenizer_path)
    init_distributed(cfg)
    model = load_model_for_inference(cfg, checkpoint)
    if tokenizer.vocab_size > cfg.model.vocab_size:
        raise GenerationError(f"tokenizer has {tokenizer.vocab_size} entries but the model {cfg.model.vocab_size}"
                              " — fix: use the tokenizer the model was trained with (data.tokenizer)")
    return Generator(model, tokenizer, cfg.model, max_batch_size=max_batch_size, max_seq_length=max_seq_length,
                     seed=seed, forward=forward, prefix_cache_mib=prefix_cache_mib, speculative=speculative,
                     drafter=drafter)
