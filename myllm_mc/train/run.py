"""`run_training(cfg)`: the pretraining stage as one function — what `myllm train`, Slurm scripts and tests call.

Order matters and mirrors Megatron-LM's `pretrain`: process groups → model → DDP → optimizer/scheduler →
resume → data (positioned at the checkpoint's consumed samples) → loop.
"""

from __future__ import annotations

import math

from myllm_mc.config import Config

from .callbacks import CallbackList
from myllm_mc.checkpoint import load_training_state as load_checkpoint
from myllm_mc.checkpoint import resolve_resume, resolve_weights
from .faults import NONE as NO_FAULTS
from .faults import Faults
from .diagnostics import InitialLossCheck, LossSpikeDetector, NonFiniteGuard
from .metrics import MetricsLogger, echo_stderr, flops_per_step, peak_tflops
from .optimizer import build_optimizer, build_scheduler
from .trainer import Trainer, TrainResult, wrap_ddp


def _mixed_precision(cfg: Config, chunks):
    """bf16/fp8: megatron's Float16Module casts inputs and keeps the loss in fp32, as Megatron-LM does."""
    if cfg.model.precision == "fp32":
        return chunks
    from megatron.core.transformer.module import Float16Module
    return [Float16Module(chunk.config, chunk) for chunk in chunks]


def default_callbacks(cfg: Config, is_logging_rank: bool, echo=print) -> CallbackList:
    warn = echo_stderr if is_logging_rank else (lambda message: None)
    peak, label = peak_tflops(cfg)
    flops = flops_per_step(cfg)
    d = cfg.diagnostics
    return CallbackList([
        InitialLossCheck(cfg.model.vocab_size, d.init_loss_tolerance, warn),
        LossSpikeDetector(d.spike_window, d.spike_zscore, warn),
        NonFiniteGuard(d.max_skipped_steps, warn),
        MetricsLogger(cfg.logging.dir, cfg.logging.log_interval, cfg.training.steps, cfg.parallel.world_size,
                      flops, peak, label, write=is_logging_rank, tensorboard=cfg.logging.tensorboard,
                      plot=cfg.logging.plot, echo=echo if is_logging_rank else (lambda message: None)),
    ])


def run_training(cfg: Config, faults: Faults = NO_FAULTS, extra_callbacks=()) -> TrainResult:
    """Train per `cfg` (already resolved for this world size). Collective: every rank calls it.

    Leaves the torch.distributed process group up (megatron's groups are torn down), so one launch can train
    several layouts in turn; `myllm_mc.parallel.state.destroy()` ends it.
    """
    import torch.distributed as dist
    from megatron.core import parallel_state as ps

    from myllm_mc.data.datasets import build_data_loader, build_datasets, samples_needed
    from myllm_mc.data.tokenizer import Tokenizer
    from myllm_mc.checkpoint import load_model
    from myllm_mc.model import build_model
    from myllm_mc.parallel.state import destroy, init_distributed

    init_distributed(cfg, seed=cfg.training.seed)
    try:
        echo = print if dist.get_rank() == 0 else (lambda message: None)
        resume_from = resolve_resume(cfg.checkpoint.resume, cfg.checkpoint.dir)
        chunks = build_model(cfg)
        if resume_from is None and cfg.checkpoint.init_from:
            load_model(chunks, str(resolve_weights(cfg.checkpoint.init_from)))
            echo(f"initialised weights from {cfg.checkpoint.init_from}")
        model = wrap_ddp(cfg, _mixed_precision(cfg, chunks))
        optimizer = build_optimizer(cfg, model)
        scheduler = build_scheduler(cfg, optimizer)
        start_step = consumed = 0
        if resume_from is not None:
            meta = load_checkpoint(resume_from, model, optimizer, scheduler)
            start_step, consumed = meta["step"], meta["consumed_samples"]
            echo(f"resumed from {resume_from} at step {start_step} ({consumed} samples consumed"
                 f"{'' if meta['rng_restored'] else '; new layout, RNG states re-seeded'})")
        tokenizer = Tokenizer(cfg.data.tokenizer)
        train_set, valid_set, _ = build_datasets(cfg, tokenizer, samples_needed(cfg))
        dp_rank, dp_size = ps.get_data_parallel_rank(), ps.get_data_parallel_world_size()

        def make_train_iterator(consumed_samples: int):
            return iter(build_data_loader(train_set, cfg, consumed_samples, dp_rank, dp_size))

        def make_valid_iterator():
            return iter(build_data_loader(valid_set, cfg, 0, dp_rank, dp_size))

        callbacks = default_callbacks(cfg, dist.get_rank() == 0, echo)
        callbacks.callbacks.extend(extra_callbacks)
        trainer = Trainer(cfg, model, optimizer, scheduler, make_train_iterator,
                          make_valid_iterator if valid_set is not None else None, callbacks,
                          start_step=start_step, consumed_samples=consumed, faults=faults, echo=echo)
        result = trainer.fit()
        if result.losses:
            finite = [x for x in result.losses if math.isfinite(x)]
            echo(f"done: step {result.step}/{cfg.training.steps}, last loss {result.losses[-1]:.4f}"
                 f" (ppl {math.exp(min(finite[-1], 50)) if finite else float('nan'):.1f}),"
                 f" checkpoint {result.last_checkpoint or 'none'}, exit code {result.exit_code};"
                 f" callbacks {100 * result.callback_seconds / max(result.step_seconds, 1e-9):.2f}% of step time")
        return result
    finally:
        destroy(process_group=False)
