"""Convergence diagnostics as callbacks: loss at init, loss spikes, non-finite steps.

Why these three: an untrained model predicting uniformly has loss ln(V), so a step-0 loss far from it means
broken init or data; a spike (robust z-score, so earlier spikes do not hide later ones) points at a bad batch
or too high a learning rate; NaN/Inf must not silently poison the weights.
"""

from __future__ import annotations

import math
from collections import deque
from statistics import median
from typing import Callable, Deque, List, Optional

from .callbacks import Callback, Control, StepRecord

NONFINITE_EXIT = 3   # documented exit code: too many non-finite steps


def initial_loss_message(loss: float, vocab_size: int, tolerance: float) -> Optional[str]:
    """A warning when the first loss is not ≈ ln(V), else None."""
    expected = math.log(vocab_size)
    if not math.isfinite(loss) or abs(loss - expected) > tolerance:
        return (f"step-0 loss {loss:.3f} is {loss - expected:+.3f} from ln({vocab_size}) = {expected:.3f}"
                f" (tolerance {tolerance}): check initialisation (init_std) and the data (tokens beyond vocab?)")
    return None


class InitialLossCheck(Callback):
    def __init__(self, vocab_size: int, tolerance: float, warn: Callable[[str], None]):
        self.vocab_size, self.tolerance, self.warn = vocab_size, tolerance, warn
        self.checked = False
        self.message: Optional[str] = None

    def on_step_end(self, trainer, record: StepRecord, control: Control) -> None:
        if self.checked or record.skipped or record.step > 1:   # a resumed run has no step-0 loss to judge
            self.checked = True
            return
        self.checked = True
        self.message = initial_loss_message(record.loss, self.vocab_size, self.tolerance)
        if self.message:
            self.warn(self.message)


def robust_zscore(value: float, window: List[float]) -> float:
    """(value - median) / (1.4826 · MAD): a z-score that one earlier outlier cannot inflate."""
    med = median(window)
    mad = median(abs(x - med) for x in window) * 1.4826
    if mad == 0:
        return 0.0 if value == med else math.copysign(math.inf, value - med)
    return (value - med) / mad


class LossSpikeDetector(Callback):
    """Logs a spike when the loss is `threshold` robust standard deviations above the recent window."""

    def __init__(self, window: int, threshold: float, warn: Callable[[str], None], min_history: int = 10):
        self.history: Deque[float] = deque(maxlen=window)
        self.threshold, self.warn, self.min_history = threshold, warn, min_history
        self.spikes: List[dict] = []

    def on_step_end(self, trainer, record: StepRecord, control: Control) -> None:
        if record.skipped or not math.isfinite(record.loss):
            return
        if len(self.history) >= self.min_history:
            z = robust_zscore(record.loss, list(self.history))
            if z > self.threshold:
                batch_start = record.consumed_samples - record.extra.get("global_batch_size", 0)
                spike = {"step": record.step, "loss": record.loss, "zscore": z, "median": median(self.history),
                         "first_sample": batch_start}
                self.spikes.append(spike)
                self.warn(f"loss spike at step {record.step}: {record.loss:.4f} (robust z {z:.1f} over the last"
                          f" {len(self.history)} steps, median {spike['median']:.4f}); batch starts at sample {batch_start}")
        self.history.append(record.loss)


class NonFiniteGuard(Callback):
    """Counts steps whose update the loop skipped for NaN/Inf; stops the run past `max_skipped`.

    The loop decides to skip *before* the optimizer step (see `is_finite`); this callback only counts and,
    once the budget is spent, stops with a message naming the step, the last good checkpoint and what to try.
    """

    def __init__(self, max_skipped: int, warn: Callable[[str], None]):
        self.max_skipped, self.warn = max_skipped, warn
        self.skipped_steps: List[int] = []

    @staticmethod
    def is_finite(loss: float, grad_norm: Optional[float]) -> bool:
        return math.isfinite(loss) and (grad_norm is None or math.isfinite(grad_norm))

    def on_step_end(self, trainer, record: StepRecord, control: Control) -> None:
        if not record.skipped:
            return
        self.skipped_steps.append(record.step)
        self.warn(f"step {record.step}: non-finite loss {record.loss} or grad norm {record.grad_norm};"
                  f" update skipped ({len(self.skipped_steps)}/{self.max_skipped} allowed)")
        if len(self.skipped_steps) > self.max_skipped:
            last_good = getattr(trainer, "last_checkpoint", None) or "none saved yet"
            control.request_stop(
                f"stopping at step {record.step}: {len(self.skipped_steps)} non-finite steps"
                f" ({', '.join(map(str, self.skipped_steps))}) exceed diagnostics.max_skipped_steps={self.max_skipped};"
                f" last good checkpoint: {last_good}; try a lower optimizer.lr, longer warmup, or check the data"
                f" around these steps", exit_code=NONFINITE_EXIT, save=False)
