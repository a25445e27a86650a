"""The loop's extension points: everything cross-cutting (metrics, diagnostics, checkpoints, signals) is a
callback, so the loop body stays the few lines of a training step.

A callback sees a `StepRecord` after every step and may ask the loop to act through `Control`
(save now, stop, skip the update). Hooks are no-ops by default; override what you need.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, List, Optional


@dataclass
class StepRecord:
    """What one optimizer step produced, as plain numbers (already reduced across ranks)."""

    step: int                       # 1-based index of the step just taken (or skipped)
    loss: float                     # mean next-token cross-entropy over non-padding tokens of the global batch
    grad_norm: Optional[float]      # L2 norm over all parameters before clipping (None if not computed)
    lr: float
    tokens: int                     # tokens in this step's global batch
    step_time: float                # seconds, wall clock, whole step
    data_time: float                # seconds spent waiting for data inside the step
    consumed_samples: int           # sequences consumed so far (after this step)
    skipped: bool = False           # update skipped (non-finite loss or gradient)
    optimizer_time: float = 0.0     # seconds in the update (grad norm, clip, Adam, param all-gather)
    extra: dict = field(default_factory=dict)


@dataclass
class Control:
    """Requests from callbacks to the loop, honoured at the step boundary."""

    save: bool = False
    stop: bool = False
    exit_code: int = 0
    reason: str = ""

    def request_stop(self, reason: str, exit_code: int = 0, save: bool = True) -> None:
        self.stop, self.exit_code, self.reason = True, exit_code, reason
        self.save = self.save or save


class Callback:
    def on_train_start(self, trainer) -> None: ...
    def on_step_end(self, trainer, record: StepRecord, control: Control) -> None: ...
    def on_eval_end(self, trainer, step: int, metrics: dict) -> None: ...
    def on_save(self, trainer, step: int, path: str) -> None: ...
    def on_train_complete(self, trainer) -> None: ...     # the last step ran (not stopped, no exception)
    def on_train_end(self, trainer) -> None: ...


class CallbackList(Callback):
    """Calls each callback in order; order matters (diagnostics before metrics before checkpoints)."""

    def __init__(self, callbacks: Iterable[Callback] = ()):
        self.callbacks: List[Callback] = list(callbacks)

    def on_train_start(self, trainer):
        for cb in self.callbacks:
            cb.on_train_start(trainer)

    def on_step_end(self, trainer, record, control):
        for cb in self.callbacks:
            cb.on_step_end(trainer, record, control)

    def on_eval_end(self, trainer, step, metrics):
        for cb in self.callbacks:
            cb.on_eval_end(trainer, step, metrics)

    def on_save(self, trainer, step, path):
        for cb in self.callbacks:
            cb.on_save(trainer, step, path)

    def on_train_complete(self, trainer):
        for cb in self.callbacks:
            cb.on_train_complete(trainer)

    def on_train_end(self, trainer):
        for cb in self.callbacks:
            cb.on_train_end(trainer)
