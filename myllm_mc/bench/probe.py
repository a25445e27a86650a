"""What the benchmark measures inside the real training loop, as a callback plus a memory watcher.

Why a callback: the benchmark must time the step `myllm train` runs, not a copy of it. `StepRecord` already
carries the step's wall time and its data wait; the optimizer's share is taken by wrapping the three calls
`train.step.optimizer_update` makes on the optimizer *instance* (prepare_grads → get_grad_norm → clip →
step_with_ready_grads), so the loop itself is untouched. Forward/backward is the rest of the step (including the
gradient reduce-scatter that megatron's schedule runs at its end and the loss all-reduce).
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import List

from myllm_mc.train.callbacks import Callback, Control, StepRecord


def _synchronize() -> None:
    """On a GPU kernels run asynchronously: a timer is only honest after the queue drains."""
    import torch
    if torch.cuda.is_available():
        torch.cuda.synchronize()


@dataclass
class StepTiming:
    step: int
    step_time: float
    data_time: float
    optimizer_time: float
    loss: float


class StepProbe(Callback):
    """Records per-step timings after `warmup` steps; the optimizer timer wraps the optimizer instance."""

    def __init__(self, warmup: int):
        self.warmup = warmup
        self.timings: List[StepTiming] = []
        self.losses: List[float] = []
        self._opt_start = None
        self._opt_end = None

    def on_train_start(self, trainer) -> None:
        optimizer = trainer.optimizer
        for name, starts, ends in (("prepare_grads", True, True), ("get_grad_norm", False, True),
                                   ("step_with_ready_grads", False, True)):
            setattr(optimizer, name, self._timed(getattr(optimizer, name), starts, ends))

    def _timed(self, method, starts: bool, ends: bool):
        def wrapper(*args, **kwargs):
            if starts:
                _synchronize()            # the backward's kernels belong to forward/backward, not the optimizer
                self._opt_start = time.perf_counter()
            result = method(*args, **kwargs)
            if ends:
                _synchronize()
                self._opt_end = time.perf_counter()
            return result
        return wrapper

    def on_step_end(self, trainer, record: StepRecord, control: Control) -> None:
        self.losses.append(record.loss)
        optimizer_time = (self._opt_end - self._opt_start) if self._opt_start is not None else 0.0
        self._opt_start = self._opt_end = None
        if record.step > self.warmup:
            self.timings.append(StepTiming(record.step, record.step_time, record.data_time, optimizer_time,
                                           record.loss))


class MemoryWatcher:
    """Peak memory of this process over one run.

    GPU: the CUDA allocator's peak, reset at start (exactly what the planner models: tensors). CPU: there is no
    allocator peak, so a thread samples the resident set every few milliseconds and reports the peak *above*
    the anonymous resident set before the run (Python, torch and megatron code are not the run's memory). `label` says which.
    """

    def __init__(self, interval: float = 0.002):
        import torch
        self.cuda = torch.cuda.is_available()
        self.interval = interval
        self.label = "CUDA allocator peak" if self.cuda else "CPU anonymous resident set above pre-run, sampled"
        self.baseline = 0
        self.peak = 0
        self._stop = threading.Event()
        self._thread = None

    @staticmethod
    def resident_bytes() -> int:
        """Anonymous resident memory (resident − file-backed): tensors live there; mapped .bin shards and
        shared libraries, which the planner does not model, do not."""
        with open("/proc/self/statm") as f:
            fields = f.read().split()
        return (int(fields[1]) - int(fields[2])) * os.sysconf("SC_PAGE_SIZE")

    def __enter__(self):
        import torch
        if self.cuda:
            # the rank's own GPU (init_distributed picks it the same way); else every rank would touch GPU 0
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
            import gc
            gc.collect()
            torch.cuda.empty_cache()          # the previous run's cached blocks are not this run's memory
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.baseline = 0
            return self
        _release_free_heap()
        self.baseline = self.peak = self.resident_bytes()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, self.resident_bytes())

    def __exit__(self, *exc):
        import torch
        if self.cuda:
            torch.cuda.synchronize()
            self.peak = int(torch.cuda.max_memory_allocated())
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, self.resident_bytes())
        return False

    @property
    def measured(self) -> int:
        return self.peak - self.baseline


def _release_free_heap() -> None:
    """glibc keeps freed heap mapped; hand it back so one run's peak does not hide in the next run's baseline."""
    import gc
    gc.collect()
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
