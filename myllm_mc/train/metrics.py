"""Metrics each logging interval: loss, perplexity, LR, grad norm, tokens/s, TFLOP/s and MFU, memory, data share,
ETA — to the console, a JSONL file, TensorBoard, and `loss.png` at the end.

MFU uses `myllm_mc.plan.flops.flops_per_iteration`, the very function the planner uses, so measured and predicted
MFU cannot disagree about the formula. Only the logging rank (last pipeline stage, first TP/DP/CP rank: the
one that has the loss) writes.
"""

from __future__ import annotations

import json
import math
import resource
import sys
import time
from pathlib import Path
from typing import List, Optional

from myllm_mc.parallel.hardware import cuda_available  # hardware is decided in parallel/, once
from myllm_mc.parallel.launch import launcher_rank
from myllm_mc.plan.flops import flops_per_iteration
from myllm_mc.plan.hardware import gpu_spec
from myllm_mc.plan.params import padded_vocab_size

from .callbacks import Callback, Control, StepRecord


def peak_memory_bytes() -> int:
    """Peak memory of this process: CUDA allocator peak on GPU, peak resident set (VmHWM) on CPU.

    Not `ru_maxrss`: Linux carries it across fork and exec, so a run launched from a large parent (pytest, a
    notebook) would report the parent's peak. VmHWM belongs to this process's own address space.
    """
    # torch in the functions: bench/measure.py imports this module, and `myllm benchmark`'s launching parent
    # imports that to lay out its runs, without torch
    import torch
    if cuda_available():
        return int(torch.cuda.max_memory_allocated())
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024          # reported in kB
    except OSError:
        pass
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024   # no procfs: Linux reports KiB


def write_peak_memory(out_dir) -> None:
    """This rank's peak memory as `peak_memory.rank<R>.json` (no collective: each rank writes its own file)."""
    rank = launcher_rank()
    measure = "CUDA allocator peak" if cuda_available() else "process peak resident set (VmHWM)"
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    (Path(out_dir) / f"peak_memory.rank{rank}.json").write_text(
        json.dumps({"rank": rank, "peak_bytes": peak_memory_bytes(), "measure": measure}))


class MetricsLogger(Callback):
    def __init__(self, out_dir: str, log_interval: int, total_steps: int, world_size: int,
                 flops_per_step: float, peak_tflops: Optional[float], peak_label: str,
                 write: bool = True, tensorboard: bool = True, plot: bool = True, echo=print):
        self.out_dir = Path(out_dir)
        self.log_interval, self.total_steps, self.world_size = log_interval, total_steps, world_size
        self.flops_per_step, self.peak_tflops, self.peak_label = flops_per_step, peak_tflops, peak_label
        self.write, self.use_tb, self.make_plot, self.echo = write, tensorboard, plot, echo
        self.window: List[StepRecord] = []
        self.history: List[dict] = []          # one row per logging interval (train) or eval
        self._jsonl = None
        self._tb = None
        self._start = time.perf_counter()

    # -- lifecycle -----------------------------------------------------------------------------------------
    def on_train_start(self, trainer) -> None:
        if not self.write:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._jsonl = open(self.out_dir / "metrics.jsonl", "a", buffering=1)
        if self.use_tb:
            from torch.utils.tensorboard import SummaryWriter  # TensorBoard (seconds to import) only when asked
            self._tb = SummaryWriter(str(self.out_dir / "tensorboard"))

    def on_step_end(self, trainer, record: StepRecord, control: Control) -> None:
        self.window.append(record)
        if record.step % self.log_interval == 0 or record.step == self.total_steps or control.stop:
            self._emit(self._summarise())
            self.window = []

    def on_eval_end(self, trainer, step: int, metrics: dict) -> None:
        row = {"kind": "valid", "step": step, **metrics}
        self.history.append(row)
        extra = "".join(f" {k} {v:.4g}" for k, v in metrics.items() if k not in ("loss", "ppl"))
        head = f" loss {metrics['loss']:.4f} ppl {metrics['ppl']:.2f}" if "loss" in metrics else ""
        self.echo(f"[valid] step {step}:{head}{extra}")
        self._write_row(row)

    def on_train_end(self, trainer) -> None:
        write_peak_memory(self.out_dir)          # every rank: `myllm plan --compare` reads one file per rank
        if self._tb is not None:
            self._tb.close()
        if self._jsonl is not None:
            self._jsonl.close()
        if self.write and self.make_plot and any(r["kind"] == "train" for r in self.history):
            plot_losses(self.history, self.out_dir / "loss.png")

    # -- work ----------------------------------------------------------------------------------------------
    def _summarise(self) -> dict:
        recs = [r for r in self.window if not r.skipped] or self.window
        last = self.window[-1]
        step_time = sum(r.step_time for r in self.window) / len(self.window)
        data_time = sum(r.data_time for r in self.window) / len(self.window)
        loss = sum(r.loss for r in recs) / len(recs)
        norms = [r.grad_norm for r in recs if r.grad_norm is not None]
        tokens_per_s = last.tokens / step_time if step_time > 0 else 0.0
        tflops_per_gpu = self.flops_per_step / step_time / self.world_size / 1e12 if step_time > 0 else 0.0
        row = {
            "kind": "train", "step": last.step, "loss": loss, "ppl": math.exp(min(loss, 50.0)), "lr": last.lr,
            "grad_norm": sum(norms) / len(norms) if norms else None,
            "tokens_per_s": tokens_per_s, "tokens_per_s_per_gpu": tokens_per_s / self.world_size,
            "tflops_per_gpu": tflops_per_gpu,
            "mfu": tflops_per_gpu / self.peak_tflops if self.peak_tflops else None,
            "step_time": step_time, "data_share": data_time / step_time if step_time > 0 else 0.0,
            "peak_memory_gib": peak_memory_bytes() / 2**30, "consumed_samples": last.consumed_samples,
            "skipped": sum(r.skipped for r in self.window),
            "eta_s": step_time * (self.total_steps - last.step), "elapsed_s": time.perf_counter() - self._start,
        }
        extra_keys = list(recs[-1].extra.get("metrics", {}))          # the objective's own metrics (DPO: accuracy ...)
        for key in extra_keys:
            row[key] = sum(r.extra.get("metrics", {}).get(key, 0.0) for r in recs) / len(recs)
        row["objective_metrics"] = extra_keys
        for key in recs[-1].extra.get("log_only", {}):              # file and TensorBoard only (MoE per layer)
            row[key] = sum(r.extra.get("log_only", {}).get(key, 0.0) for r in recs) / len(recs)
        return row

    def _emit(self, row: dict) -> None:
        self.history.append(row)
        mfu = f" MFU {row['mfu'] * 100:.1f}% ({self.peak_label})" if row["mfu"] is not None else ""
        gn = f"{row['grad_norm']:.3f}" if row["grad_norm"] is not None else "-"
        self.echo(f"step {row['step']}/{self.total_steps} | loss {row['loss']:.4f} ppl {row['ppl']:.1f}"
                  f" | lr {row['lr']:.2e} | gnorm {gn} | {row['tokens_per_s']:.0f} tok/s"
                  f" ({row['tokens_per_s_per_gpu']:.0f}/gpu) | {row['tflops_per_gpu']:.3f} TFLOP/s/gpu{mfu}"
                  f" | mem {row['peak_memory_gib']:.2f} GiB | data {row['data_share'] * 100:.0f}%"
                  f" | eta {_hms(row['eta_s'])}"
                  + "".join(f" | {key} {row[key]:.4g}" for key in row.pop("objective_metrics")))
        self._write_row(row)

    def _write_row(self, row: dict) -> None:
        if self._jsonl is not None:
            self._jsonl.write(json.dumps(row) + "\n")
        if self._tb is not None:
            prefix = row["kind"]
            for key, value in row.items():
                if isinstance(value, (int, float)) and key not in ("step", "kind"):
                    self._tb.add_scalar(f"{prefix}/{key}", value, row["step"])


def _hms(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600:d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def plot_losses(history: List[dict], path: Path) -> Path:
    """Train and validation loss against step, learning rate on a second axis; below them, when the run scored
    tasks (`training.eval_tasks`), task accuracy and format compliance, and when it ran lm-eval tasks
    (`training.eval_lm_eval`), their figures: shares (acc, exact_match) on the left axis, the others (perplexity,
    bits per byte) on a log right axis."""
    import matplotlib  # only for the plot, and the backend is chosen before pyplot is imported
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [r for r in history if r["kind"] == "train"]
    valid = [r for r in history if r["kind"] == "valid" and "loss" in r]
    tasks = [r for r in history if r["kind"] == "valid" and "task_accuracy" in r]
    lm_rows = [r for r in history if r["kind"] == "valid" and any(k.startswith("lm_eval/") for k in r)]
    panels = 1 + bool(tasks) + bool(lm_rows)
    fig, axes = plt.subplots(panels, 1, figsize=(8, 4.5 + 3 * (panels - 1)), dpi=110, squeeze=False)
    ax = axes[0][0]
    ax.plot([r["step"] for r in train], [r["loss"] for r in train], label="train loss", color="tab:blue")
    if valid:
        ax.plot([r["step"] for r in valid], [r["loss"] for r in valid], "o-", label="validation loss",
                color="tab:orange")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats)")
    lr_ax = ax.twinx()
    lr_ax.plot([r["step"] for r in train], [r["lr"] for r in train], "--", color="tab:gray", label="learning rate")
    lr_ax.set_ylabel("learning rate")
    lines = ax.get_legend_handles_labels()
    lr_lines = lr_ax.get_legend_handles_labels()
    ax.legend(lines[0] + lr_lines[0], lines[1] + lr_lines[1], loc="upper right")
    ax.grid(alpha=0.3)
    if tasks:
        ax = axes[1][0]
        steps = [r["step"] for r in tasks]
        ax.plot(steps, [r["task_accuracy"] for r in tasks], "o-", label="task accuracy (greedy, exact answer)")
        ax.plot(steps, [r["task_format"] for r in tasks], "s--", label="format")
        for key in sorted(k for k in tasks[-1] if k.startswith("acc_")):
            ax.plot(steps, [r.get(key, 0.0) for r in tasks], ":", alpha=0.7, label=key[len("acc_"):])
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("step")
        ax.legend(fontsize=7, ncol=2)
        ax.grid(alpha=0.3)
    if lm_rows:
        _plot_lm_eval(axes[-1][0], lm_rows)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _plot_lm_eval(ax, rows: List[dict]) -> None:
    keys = sorted({k for r in rows for k in r if k.startswith("lm_eval/")})
    steps = {k: [r["step"] for r in rows if k in r] for k in keys}
    values = {k: [r[k] for r in rows if k in r] for k in keys}
    shares = [k for k in keys if all(0.0 <= v <= 1.0 for v in values[k])]
    other = ax.twinx() if len(shares) < len(keys) else None
    for n, key in enumerate(keys):                          # one colour per metric across both axes
        side = ax if key in shares else other
        side.plot(steps[key], values[key], "o-" if key in shares else "s--", color=f"C{n % 10}",
                  label=key[len("lm_eval/"):])
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("step")
    ax.set_ylabel("lm-eval share (acc, exact match)")
    handles, labels = ax.get_legend_handles_labels()
    if other is not None:
        other.set_yscale("log")
        other.set_ylabel("lm-eval perplexity / bits per byte")
        more = other.get_legend_handles_labels()
        handles, labels = handles + more[0], labels + more[1]
    ax.legend(handles, labels, fontsize=7, ncol=2)
    ax.grid(alpha=0.3)


def measured_cpu_peak_tflops(size: int = 1024, seconds: float = 0.5) -> float:
    """Peak FP32 matmul throughput of this CPU with this process's threads, measured: the denominator of "MFU"
    when there is no GPU table. The best of repeated matmuls over `seconds`, so a busy moment does not count."""
    import torch
    a = torch.randn(size, size)
    b = torch.randn(size, size)
    torch.matmul(a, b)
    best, deadline = math.inf, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * size ** 3 / best / 1e12


def flops_per_step(cfg) -> float:
    """Model FLOPs of one optimizer step: the planner's function at the vocabulary padded for this tensor size,
    so training metrics, the benchmark and `myllm plan` count identically."""
    return flops_per_iteration(cfg.model, cfg.training.global_batch_size,
                               padded_vocab=padded_vocab_size(cfg.model, cfg.parallel.tensor))


_CPU_PEAK: dict = {}


def peak_tflops(cfg):
    """(peak TFLOP/s per device, label): the GPU table's dense peak for plan.gpu at the run's precision; on CPU a
    measured FP32 matmul peak, once per process and thread count (every run of a sweep shares one denominator)."""
    import torch
    if cuda_available():
        spec = gpu_spec(cfg.plan.gpu)
        return spec.peak_flops(cfg.model.precision) / 1e12, f"{spec.label} dense {cfg.model.precision} peak"
    threads = torch.get_num_threads()
    if threads not in _CPU_PEAK:
        _CPU_PEAK[threads] = measured_cpu_peak_tflops()
    return _CPU_PEAK[threads], f"CPU fp32 matmul peak, measured ({threads} thread(s)/rank)"


def echo_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
