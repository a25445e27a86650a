"""`run_training(cfg)`: the pretraining stage as one function — what `myllm train`, Slurm scripts and tests call.
`run_objective(cfg, objective, make_data)`: the same for any objective (`myllm_mc.align` uses it for SFT/DPO).

Order matters and mirrors Megatron-LM's `pretrain`: state set-up (`setup.setup_state`: process groups → model →
DDP → optimizer/scheduler → resume) → the objective's data (positioned at the checkpoint's consumed samples) → loop.
"""

from __future__ import annotations

import math
from typing import Callable

import torch.distributed as dist
from megatron.core import parallel_state as ps

from myllm_mc.checkpoint.lock import release_all
from myllm_mc.config import Config
from myllm_mc.data.datasets import build_data_loader, build_datasets, samples_needed
from myllm_mc.data.tokenizer import Tokenizer
from myllm_mc.data.webdataset_stream import build_webdataset_loader
from myllm_mc.parallel.state import destroy, init_distributed

from .callbacks import CallbackList
from .diagnostics import InitialLossCheck, LossSpikeDetector, NonFiniteGuard
from .faults import NONE as NO_FAULTS
from .faults import Faults
from .lm_eval_callback import lm_eval_callbacks
from .metrics import MetricsLogger, echo_stderr, flops_per_step, peak_tflops
from .objective import Objective, PretrainObjective
from .router_stats import RouterStatistics
from .setup import TrainState, setup_state
from .task_eval import task_eval_callbacks
from .tracking import tracking_callbacks
from .trainer import ObjectiveData, Trainer, TrainResult


def default_callbacks(cfg: Config, is_logging_rank: bool, echo=print, from_scratch: bool = True) -> CallbackList:
    """Diagnostics and metrics; `from_scratch=False` (fine-tuning) drops the ln(vocab) initial-loss check."""
    warn = echo_stderr if is_logging_rank else (lambda message: None)
    peak, label = peak_tflops(cfg)
    flops = flops_per_step(cfg)
    d = cfg.diagnostics
    return CallbackList([
        *([InitialLossCheck(cfg.model.vocab_size, d.init_loss_tolerance, warn)] if from_scratch else []),
        LossSpikeDetector(d.spike_window, d.spike_zscore, warn),
        NonFiniteGuard(d.max_skipped_steps, warn),
        *([RouterStatistics(cfg)] if cfg.model.moe.num_experts else []),   # before the logger: it adds metrics
        MetricsLogger(cfg.logging.dir, cfg.logging.log_interval, cfg.training.steps, cfg.parallel.world_size,
                      flops, peak, label, write=is_logging_rank, tensorboard=cfg.logging.tensorboard,
                      plot=cfg.logging.plot, echo=echo if is_logging_rank else (lambda message: None)),
    ])


def pretraining_data(cfg: Config, state: TrainState) -> ObjectiveData:
    """megatron GPTDataset splits of `data.*`, each data-parallel rank reading its share."""
    tokenizer = Tokenizer(cfg.data.tokenizer)
    dp_rank, dp_size = ps.get_data_parallel_rank(), ps.get_data_parallel_world_size()
    if cfg.data.loader == "webdataset":          # streamed shards: no split, so no validation iterator
        return ObjectiveData(lambda consumed: iter(build_webdataset_loader(cfg, tokenizer, dp_rank, dp_size, consumed)))
    train_set, valid_set, _ = build_datasets(cfg, tokenizer, samples_needed(cfg))

    def make_train_iterator(consumed_samples: int):
        return iter(build_data_loader(train_set, cfg, consumed_samples, dp_rank, dp_size))

    def make_valid_iterator():
        return iter(build_data_loader(valid_set, cfg, 0, dp_rank, dp_size))

    return ObjectiveData(make_train_iterator, make_valid_iterator if valid_set is not None else None)


def run_objective(cfg: Config, objective: Objective, make_data: Callable[[Config, TrainState], ObjectiveData],
                  faults: Faults = NO_FAULTS, extra_callbacks=(), echo_summary: bool = True) -> TrainResult:
    """Train `objective` per `cfg` (already resolved for this world size). Collective: every rank calls it.

    Leaves the torch.distributed process group up (megatron's groups are torn down), so one launch can train
    several layouts in turn; `myllm_mc.parallel.state.destroy()` ends it.
    """
    runtime = init_distributed(cfg, seed=cfg.training.seed)
    try:
        echo = print if dist.get_rank() == 0 else (lambda message: None)
        state = setup_state(cfg, echo, runtime, pretraining=isinstance(objective, PretrainObjective))
        data = make_data(cfg, state)
        callbacks = default_callbacks(cfg, dist.get_rank() == 0, echo, from_scratch=objective.from_scratch)
        callbacks.callbacks.extend(extra_callbacks)
        if cfg.training.eval_tasks:                 # task accuracy by greedy generation (pretrain, SFT, DPO, GRPO)
            callbacks.callbacks.extend(task_eval_callbacks(cfg))
        if cfg.training.eval_lm_eval:               # lm-eval tasks on the training weights, rank 0 (same backend)
            callbacks.callbacks.extend(lm_eval_callbacks(cfg))
        callbacks.callbacks.extend(tracking_callbacks(cfg, dist.get_rank() == 0))   # W&B / MLflow: after every row
        trainer = Trainer(cfg, state, objective, data, callbacks, faults=faults, echo=echo)
        result = trainer.fit()
        if result.losses and echo_summary:
            finite = [x for x in result.losses if math.isfinite(x)]
            echo(f"done: step {result.step}/{cfg.training.steps}, last loss {result.losses[-1]:.4f}"
                 f" (ppl {math.exp(min(finite[-1], 50)) if finite else float('nan'):.1f}),"
                 f" checkpoint {result.last_checkpoint or 'none'}, exit code {result.exit_code};"
                 f" callbacks {100 * result.callback_seconds / max(result.step_seconds, 1e-9):.2f}% of step time")
        return result
    finally:
        release_all()
        destroy(process_group=False)


def run_training(cfg: Config, faults: Faults = NO_FAULTS, extra_callbacks=()) -> TrainResult:
    """Pretrain per `cfg`: `run_objective` with next-token loss on the GPTDataset splits."""
    return run_objective(cfg, PretrainObjective(), pretraining_data, faults, extra_callbacks)
