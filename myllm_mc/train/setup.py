"""Training state set-up shared by every stage that trains (pretraining, SFT, DPO, GRPO): process groups →
model (fresh, `checkpoint.init_from`, or resumed) → mixed precision → DDP → optimizer → scheduler → resume.
Mirrors Megatron-LM's `setup_model_and_optimizer`; the objective's data comes after, from the caller.

`build_frozen_model` is the other reusable piece: a reference model in the same layout (no DDP, no gradients,
no optimizer state) for DPO and GRPO.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig, finalize_model_grads
from megatron.core.transformer.module import Float16Module

from myllm_mc import checkpoint
from myllm_mc.checkpoint import base_pointer, compat, lock, vocab_growth
from myllm_mc.checkpoint.collective import on_rank0
from myllm_mc.checkpoint.errors import CheckpointError
from myllm_mc.config import Config
from myllm_mc.lora import checkpoints as lora_checkpoints
from myllm_mc.lora.apply import apply_lora, install_tp_gradient_sum
from myllm_mc.lora.apply import summary as lora_summary
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
    checkpoint_meta: dict = field(default_factory=dict)   # saved with every checkpoint (LoRA: config + base pointer)
    trainable_only: bool = False                          # checkpoints hold only trainable parameters (LoRA)


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


def setup_state(cfg: Config, echo=print, runtime=None, pretraining: bool = False) -> TrainState:
    """Initialise distributed state and everything the optimizer step needs. Collective; the caller ends it with
    `myllm_mc.parallel.state.destroy(process_group=False)`. pretraining: `model.compile: auto` may compile."""
    if runtime is None:
        runtime = init_distributed(cfg, seed=cfg.training.seed)
    if cfg.checkpoint.dir:                  # one run per checkpoint.dir; refused here, before anything is written
        on_rank0(lambda: lock.acquire(cfg.checkpoint.dir))
    resume_from = on_rank0(lambda: checkpoint.resolve_resume(cfg.checkpoint.resume, cfg.checkpoint.dir, echo))
    if resume_from is not None:             # same model shape and tokenizer, or one line saying what differs
        on_rank0(lambda: compat.check(checkpoint.read_meta(resume_from), cfg, resume_from))
    chunks = build_model(cfg, pretraining=pretraining)
    lora = cfg.align.lora
    if resume_from is not None and not lora.enabled and checkpoint.read_meta(resume_from).get("lora"):
        raise CheckpointError(f"cannot resume from {resume_from} without LoRA: it holds only adapters — fix:"
                              " --set align.lora.enabled=true (its adapter config is in the checkpoint's meta)")
    source = _lora_resume_base(cfg, resume_from) if lora.enabled and resume_from is not None else (
        cfg.checkpoint.init_from if resume_from is None or lora.enabled else None)
    base = checkpoint.resolve_weights(source) if source else None
    if base is not None and lora_checkpoints.lora_meta(base) is not None:   # adapters on a base: merged, then trained
        lora_checkpoints.load_weights(chunks, base, merge=True, echo=echo)
    elif base is not None:
        weights = base
        if checkpoint.is_complete(weights):          # a training checkpoint records its shape and tokenizer
            on_rank0(lambda: compat.check(checkpoint.read_meta(weights), cfg, weights, init=True))
        grown = vocab_growth.load_model(chunks, str(weights), cfg.checkpoint.allow_vocab_growth)
        echo(f"initialised weights from {source}" + (
            f" (vocabulary grown from {grown[0]:,} to {grown[1]:,} rows; new rows = the mean of the old)"
            if grown else ""))
    extra = {}
    if lora.enabled:                                 # after the base is loaded, before bf16 and DDP
        adapters = apply_lora(chunks, lora, cfg.training.seed)
        echo(lora_summary(adapters, chunks, lora))
        extra = dict(checkpoint_meta=lora_checkpoints.run_meta(lora, base), trainable_only=True)
    model = wrap_ddp(cfg, mixed_precision(cfg, chunks))
    if lora.enabled:
        install_tp_gradient_sum(model)
    optimizer = build_optimizer(cfg, model)
    scheduler = build_scheduler(cfg, optimizer)
    state = TrainState(runtime, model, optimizer, scheduler, resumed_from=resume_from, **extra)
    if resume_from is not None:
        meta = checkpoint.load_training_state(resume_from, model, optimizer, scheduler,
                                              trainable_only=state.trainable_only)
        state.step, state.consumed_samples = meta["step"], meta["consumed_samples"]
        echo(f"resumed from {resume_from} at step {state.step} ({state.consumed_samples} samples consumed"
             f"{'' if meta['rng_restored'] else '; new layout, RNG states re-seeded'})")
    return state


def _lora_resume_base(cfg: Config, resume_from: Path) -> str:
    """The base a LoRA run resumes on: the one its checkpoint points at (present and unchanged, or one line)."""
    saved = checkpoint.read_meta(resume_from).get("lora")
    if not saved:
        raise CheckpointError(f"cannot resume a LoRA run from {resume_from}: it is a full checkpoint — fix: resume"
                              " with align.lora.enabled=false, or start the LoRA run from it with"
                              " checkpoint.init_from")
    return str(base_pointer.check_base(saved, str(resume_from)))


def build_frozen_model(cfg: Config, weights: Optional[str]) -> List:
    """A frozen copy of the model in the current layout (after `setup_state`): loaded from `weights` (any layout,
    via `checkpoint.resolve_weights`), in eval mode, `requires_grad=False`, never wrapped in DDP nor given to an
    optimizer. megatron's schedules call `.set_input_tensor` on chunks, which GPTModel has itself."""
    chunks = build_model(cfg)
    if weights:
        lora_checkpoints.load_weights(chunks, weights, merge=True)     # an adapter checkpoint: base + adapters
    chunks = mixed_precision(cfg, chunks)
    for chunk in chunks:
        chunk.eval()
        for param in chunk.parameters():
            param.requires_grad_(False)
    return chunks
