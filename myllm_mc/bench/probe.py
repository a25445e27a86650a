"""What the benchmark measures inside the real training loop, as a callback plus a memory watcher.

Why a callback: the benchmark must time the step `myllm train` runs, not a copy of it. `StepRecord` already
carries the step's wall time, its data wait and the optimizer update's time (grad norm, clip, Adam, param
all-gather), all measured by the loop itself. Forward/backward is the rest of the step (including the gradient
reduce-scatter that megatron's schedule runs at its end and the loss all-reduce).
"""

from __future__ import annotations

import ctypes
import gc
import os
import threading
from dataclasses import dataclass
from typing import List

from myllm_mc.parallel.hardware import cuda_available
from myllm_mc.parallel.launch import launcher_local_rank, local_device
from myllm_mc.train.callbacks import Callback, Control, StepRecord


@dataclass
class StepTiming:
    step: int
    step_time: float
    data_time: float
    optimizer_time: float
    loss: float


class StepProbe(Callback):
    """Records per-step timings after `warmup` steps."""

    def __init__(self, warmup: int):
        self.warmup = warmup
        self.timings: List[StepTiming] = []
        self.losses: List[float] = []

    def on_step_end(self, trainer, record: StepRecord, control: Control) -> None:
        self.losses.append(record.loss)
        if record.step > self.warmup:
            self.timings.append(StepTiming(record.step, record.step_time, record.data_time, record.optimizer_time,
                                           record.loss))


class MemoryWatcher:
    """Peak memory of this process over one run.

    GPU: the CUDA allocator's peak, reset at start (exactly what the planner models: tensors). CPU: there is no
    allocator peak, so a thread samples the resident set every few milliseconds and reports the peak *above*
    the anonymous resident set before the run (Python, torch and megatron code are not the run's memory). `label` says which.
    """

    def __init__(self, interval: float = 0.002):
        self.cuda = cuda_available()
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
        import torch  # in the methods: bench/measure.py imports this module in the benchmark's torch-free parent
        if self.cuda:
            # the rank's own GPU, picked as init_distributed does (torchrun, srun or mpirun); else every rank
            # would touch GPU 0
            torch.cuda.set_device(local_device(launcher_local_rank(), torch.cuda.device_count()))
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
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
