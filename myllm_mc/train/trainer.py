"""The training loop, for any objective (`objective.py`). Everything megatron-core provides is used as is (DDP, optimizer, schedules, scheduler,
dist_checkpointing); everything cross-cutting is a callback. Read `Trainer.fit` top to bottom: that is the loop.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, List, Optional

import torch
import torch.distributed as dist
from megatron.core import parallel_state as ps
from megatron.core.dist_checkpointing.strategies.async_utils import AsyncCallsQueue

from myllm_mc import checkpoint
from myllm_mc.checkpoint import compat, space
from myllm_mc.checkpoint.collective import on_rank0
from myllm_mc.config import Config
from myllm_mc.parallel.hardware import comm_device, cuda_available  # hardware is decided in parallel/, once

from .callbacks import CallbackList, Control, StepRecord
from .faults import NONE as NO_FAULTS
from .faults import Faults
from .loop_callbacks import CheckpointCallback, EvaluationCallback, PreemptionCallback
from .objective import Objective
from .setup import TrainState
from .step import DataTimer, make_forward_step, optimizer_update, run_schedule


@dataclass
class TrainResult:
    exit_code: int
    step: int
    losses: List[float] = field(default_factory=list)      # per step, global mean token loss
    valid: List[dict] = field(default_factory=list)
    last_checkpoint: Optional[str] = None
    reason: str = ""
    step_seconds: float = 0.0          # time inside train_step, all steps
    callback_seconds: float = 0.0      # time inside the callbacks' on_step_end (logging, diagnostics): overhead


@dataclass
class ObjectiveData:
    """The objective's data: a train iterator positioned at `consumed_samples`, and optionally a fresh
    validation iterator (None: no evaluation)."""

    make_train_iterator: Callable[[int], object]
    make_valid_iterator: Optional[Callable[[], object]] = None


class Trainer:
    def __init__(self, cfg: Config, state: TrainState, objective: Objective, data: ObjectiveData,
                 callbacks: CallbackList, faults: Faults = NO_FAULTS, echo=print):
        self.cfg, self.state, self.objective, self.data = cfg, state, objective, data
        self.model, self.optimizer, self.scheduler = state.model, state.optimizer, state.scheduler
        self.make_train_iterator, self.make_valid_iterator = data.make_train_iterator, data.make_valid_iterator
        self.echo = echo
        self.step, self.consumed_samples = state.step, state.consumed_samples
        self.faults = faults
        self.async_queue = None
        self._parameters: Optional[int] = None
        self._compat: Optional[dict] = None     # model shape + tokenizer fingerprint saved with every checkpoint
        if cfg.checkpoint.async_save and cfg.checkpoint.dir:
            self.async_queue = AsyncCallsQueue()
        self.last_checkpoint: Optional[str] = None
        self.valid_history: List[dict] = []
        self.loop_seconds = 0.0                 # evaluation, signals and saves inside callbacks: not overhead
        self.num_microbatches = cfg.num_microbatches
        # the loop's own duties, in order after the user's callbacks: evaluation, preemption, checkpoints
        loop = [EvaluationCallback(), PreemptionCallback(), CheckpointCallback()]
        self.callbacks = CallbackList([*callbacks.callbacks, *loop])

    # -- the loop ------------------------------------------------------------------------------------------
    def fit(self) -> TrainResult:
        t = self.cfg.training
        result = TrainResult(exit_code=0, step=self.step)
        self.callbacks.on_train_start(self)
        train_iters = self._train_iterators()
        try:
            while self.step < t.steps:
                record = self.train_step(train_iters)
                self.finish_pending_saves(blocking=False)       # publish an async save once all ranks wrote it
                result.losses.append(record.loss)
                control = Control()
                started = time.perf_counter()
                self.callbacks.on_step_end(self, record, control)   # diagnostics, metrics, eval, signals, saves
                result.callback_seconds += time.perf_counter() - started - self.loop_seconds
                self.loop_seconds = 0.0
                result.step_seconds += record.step_time
                if control.stop:
                    result.exit_code, result.reason = control.exit_code, control.reason
                    self.echo(control.reason)
                    break
            else:
                self.callbacks.on_train_complete(self)
            self.finish_pending_saves()
        finally:
            self.callbacks.on_train_end(self)
            dist.barrier()
        result.step, result.last_checkpoint, result.valid = self.step, self.last_checkpoint, self.valid_history
        return result

    def run_schedule(self, iterators: List, forward_only: bool, poison: Optional[Callable[[], bool]] = None):
        """One global batch of the objective through megatron's schedule; returns its metrics (every rank)."""
        iterators = self.objective.prepare(self, iterators, forward_only)
        store = run_schedule(self.model, make_forward_step(self.objective.forward_step, poison), iterators,
                             self.num_microbatches, self.cfg.model.seq_length, self.cfg.training.micro_batch_size,
                             forward_only)
        return self.objective.metrics(store)            # a host sync: the backward has finished here

    def train_step(self, train_iters) -> StepRecord:
        start = time.perf_counter()
        for chunk in self.model:
            chunk.zero_grad_buffer()
        self.optimizer.zero_grad()
        poison_now = (self.step + 1) in self.faults.poison_steps
        metrics = self.run_schedule(train_iters, forward_only=False,
                                    poison=(lambda: poison_now) if self.faults.poison_steps else None)
        loss = metrics.pop("loss")
        optimizer_start = time.perf_counter()
        applied, grad_norm = optimizer_update(self.optimizer, self.scheduler, loss)
        _synchronize()
        optimizer_time = time.perf_counter() - optimizer_start
        self.step += 1
        self.consumed_samples += self.cfg.training.global_batch_size
        data_time = sum(it.seconds for it in train_iters) / len(train_iters)
        for it in train_iters:
            it.seconds = 0.0
        return StepRecord(step=self.step, loss=loss, grad_norm=grad_norm, lr=self._lr(), tokens=self.cfg.tokens_per_step,
                          step_time=time.perf_counter() - start, data_time=data_time,
                          consumed_samples=self.consumed_samples, skipped=not applied,
                          optimizer_time=optimizer_time,
                          extra={"global_batch_size": self.cfg.training.global_batch_size, "metrics": metrics})

    def evaluate(self) -> dict:
        """Mean metrics over `training.eval_steps` global batches of the validation split."""
        if self.make_valid_iterator is None:
            return {}
        iters = [DataTimer(self.make_valid_iterator()) for _ in self.model]
        for chunk in self.model:
            chunk.eval()
        batches = []
        with torch.no_grad():
            for _ in range(self.cfg.training.eval_steps):
                batches.append(self.run_schedule(iters, forward_only=True))
        for chunk in self.model:
            chunk.train()
        means = {key: sum(b[key] for b in batches) / len(batches) for key in batches[0]}
        loss = means.pop("loss")               # every pretraining validation batch has the same token count
        metrics = {"step": self.step, "loss": loss, "ppl": math.exp(min(loss, 50.0)), **means}
        self.callbacks.on_eval_end(self, self.step, {k: v for k, v in metrics.items() if k != "step"})
        self.valid_history.append(metrics)
        return metrics

    def save(self) -> None:
        """Checkpoint this step. Async saves overlap training; at most one is in flight (the next save, the end of
        the run and a preemption wait for it), so a preempted job always leaves its checkpoint published."""
        self.finish_pending_saves()
        if self._parameters is None:                     # a collective; the count never changes during a run
            self._parameters = _count_parameters(self.model)
        root = self.cfg.checkpoint.dir
        previous = self.last_checkpoint or self.state.resumed_from
        needed = space.estimate_bytes(self._parameters, self.cfg.model.precision, previous)
        on_rank0(lambda: space.check(root, needed))     # a full disk: one line, before any file is written
        if self._compat is None:
            self._compat = compat.record(self.cfg)
        meta = {"config": self.cfg.model.name, "tokens_seen": self.consumed_samples * self.cfg.model.seq_length,
                "parameters": self._parameters, **self._compat, **self.state.checkpoint_meta}
        checkpoint.save_training_state(self.cfg.checkpoint.dir, self.step, self.model, self.optimizer, self.scheduler,
                           self.consumed_samples, meta, self.faults, self.async_queue, self._published,
                           needed_bytes=needed, trainable_only=self.state.trainable_only)

    def finish_pending_saves(self, blocking: bool = True) -> None:
        if self.async_queue is not None:
            self.async_queue.maybe_finalize_async_calls(blocking=blocking)

    def _published(self, step: int, path) -> None:
        if dist.get_rank() == 0:
            checkpoint.prune(self.cfg.checkpoint.dir, self.cfg.checkpoint.keep_last)
        self.last_checkpoint = str(path)
        self.callbacks.on_save(self, step, str(path))

    # -- helpers -------------------------------------------------------------------------------------------
    def _train_iterators(self) -> List[DataTimer]:
        """One iterator per model chunk (interleaved schedules pull micro-batches per chunk), all at the same position."""
        return [DataTimer(self.make_train_iterator(self.consumed_samples)) for _ in self.model]

    def _lr(self) -> float:
        groups = self.optimizer.param_groups
        return float(next((g["lr"] for g in groups if g.get("default_config", True)), groups[0]["lr"]))


def _synchronize() -> None:
    """GPU kernels run asynchronously: a timer is only honest once the queue has drained."""
    if cuda_available():
        torch.cuda.synchronize()


def _count_parameters(model: List) -> int:
    """Global parameter count (each tensor-parallel shard and pipeline stage counted once)."""
    local = 0
    for chunk in model:
        for param in chunk.module.parameters():
            shared = getattr(param, "shared_embedding", False) and not ps.is_pipeline_first_stage(ignore_virtual=True)
            if not shared:
                local += param.numel() if getattr(param, "tensor_model_parallel", False) or ps.get_tensor_model_parallel_rank() == 0 else 0
    total = torch.tensor([local if ps.get_data_parallel_rank() == 0 and ps.get_context_parallel_rank() == 0 else 0],
                         dtype=torch.int64, device=comm_device())
    dist.all_reduce(total)
    return int(total.item())
