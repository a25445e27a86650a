"""Training state set-up shared by every stage that trains (pretraining, SFT, DPO, GRPO): process groups →
model (fresh, `checkpoint.init_from`, or resumed) → mixed precision → DDP → optimizer → scheduler → resume.
Mirrors Megatron-LM's `setup_model_and_optimizer`; the objective's data comes after, from the caller.

`build_frozen_model` is the other reusable piece: a reference model in the same layout (no DDP, no gradients,
no optimizer state) for DPO and GRPO.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig, finalize_model_grads
from megatron.core.transformer.module import Float16Module

from myllm_mc import checkpoint
from myllm_mc.checkpoint import compat, lock, vocab_growth
from myllm_mc.checkpoint.collective import on_rank0
from myllm_mc.config import Config
from myllm_mc.model import build_model
from myllm_mc.parallel.state import init_distributed

from .optimizer import build_optimizer, build_scheduler


@dataclass
class TrainState:
    runtime: object                 # myllm_mc.parallel.state.Runtime
    model: List                     # DDP-wrapped chunks
    optimizer: object
    scheduler: object
    step: int = 0
    consumed_samples: int = 0
    resumed_from: Optional[Path] = None


def mixed_precision(cfg: Config, chunks):
    """bf16/fp8: megatron's Float16Module casts inputs and keeps the loss in fp32, as Megatron-LM does."""
    if cfg.model.precision == "fp32":
        return chunks
    return [Float16Module(chunk.config, chunk) for chunk in chunks]


def wrap_ddp(cfg: Config, chunks: List) -> List:
    """megatron-core DDP around each model chunk, with the hooks its schedules expect on the shared config."""
    p = cfg.parallel
    model_config = chunks[0].config
    model_config.calculate_per_token_loss = True        # see step.py: loss = mean over all global tokens
    ddp_config = DistributedDataParallelConfig(
        grad_reduce_in_fp32=True, overlap_grad_reduce=p.overlap_grad_reduce,
        overlap_param_gather=p.overlap_param_gather and p.distributed_optimizer,
        use_distributed_optimizer=p.distributed_optimizer, average_in_collective=False)
    model = [DistributedDataParallel(config=model_config, ddp_config=ddp_config, module=chunk,
                                     disable_bucketing=i > 0) for i, chunk in enumerate(chunks)]
    for chunk in model:
        chunk.broadcast_params()   # identical replicas even if a rank's init drifted
    no_sync = [chunk.no_sync for chunk in model]
    model_config.no_sync_func = no_sync[0] if len(no_sync) == 1 else no_sync
    model_config.finalize_model_grads_func = finalize_model_grads
    return model


def setup_state(cfg: Config, echo=print, runtime=None) -> TrainState:
    """Initialise distributed state and everything the optimizer step needs. Collective; the caller ends it with
    `myllm_mc.parallel.state.destroy(process_group=False)`."""
    if runtime is None:
        runtime = init_distributed(cfg, seed=cfg.training.seed)
    if cfg.checkpoint.dir:                  # one run per checkpoint.dir; refused here, before anything is written
        on_rank0(lambda: lock.acquire(cfg.checkpoint.dir))
    resume_from = on_rank0(lambda: checkpoint.resolve_resume(cfg.checkpoint.resume, cfg.checkpoint.dir, echo))
    if resume_from is not None:             # same model shape and tokenizer, or one line saying what differs
        on_rank0(lambda: compat.check(checkpoint.read_meta(resume_from), cfg, resume_from))
    chunks = build_model(cfg)
    if resume_from is None and cfg.checkpoint.init_from:
        weights = checkpoint.resolve_weights(cfg.checkpoint.init_from)
        if checkpoint.is_complete(weights):          # a training checkpoint records its shape and tokenizer
            on_rank0(lambda: compat.check(checkpoint.read_meta(weights), cfg, weights, init=True))
        grown = vocab_growth.load_model(chunks, str(weights), cfg.checkpoint.allow_vocab_growth)
        echo(f"initialised weights from {cfg.checkpoint.init_from}" + (
            f" (vocabulary grown from {grown[0]:,} to {grown[1]:,} rows; new rows = the mean of the old)"
            if grown else ""))
    model = wrap_ddp(cfg, mixed_precision(cfg, chunks))
    optimizer = build_optimizer(cfg, model)
    scheduler = build_scheduler(cfg, optimizer)
    state = TrainState(runtime, model, optimizer, scheduler, resumed_from=resume_from)
    if resume_from is not None:
        meta = checkpoint.load_training_state(resume_from, model, optimizer, scheduler)
        state.step, state.consumed_samples = meta["step"], meta["consumed_samples"]
        echo(f"resumed from {resume_from} at step {state.step} ({state.consumed_samples} samples consumed"
             f"{'' if meta['rng_restored'] else '; new layout, RNG states re-seeded'})")
    return state


def build_frozen_model(cfg: Config, weights: Optional[str]) -> List:
    """A frozen copy of the model in the current layout (after `setup_state`): loaded from `weights` (any layout,
    via `checkpoint.resolve_weights`), in eval mode, `requires_grad=False`, never wrapped in DDP nor given to an
    optimizer. megatron's schedules call `.set_input_tensor` on chunks, which GPTModel has itself."""
    chunks = build_model(cfg)
    if weights:
        checkpoint.load_model(chunks, str(checkpoint.resolve_weights(weights)))
    chunks = mixed_precision(cfg, chunks)
    for chunk in chunks:
        chunk.eval()
        for param in chunk.parameters():
            param.requires_grad_(False)
    return chunks
