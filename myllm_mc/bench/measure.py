"""One benchmark run: N warm-up + M timed steps of `run_training` — the stage `myllm train` runs — and the figures.

Every figure is derived here from measured seconds and bytes and from the planner's formulas, so measured and
predicted numbers share one definition:
  tokens/s        global_batch × seq_length / median step time (per GPU: ÷ world size)
  TFLOP/s per GPU plan.flops.flops_per_iteration (Megatron-LM's formula, at this run's padded vocabulary)
                  ÷ median step time ÷ world size
  MFU             TFLOP/s per GPU ÷ peak (the GPU table's dense peak; on CPU a measured FP32 matmul peak)
  bubble          the 1F1B / interleaved schedule's idle share, (p − 1) / (v · m) of the ideal step: a formula,
                  because the schedule's waits happen inside megatron's p2p calls where no timer of ours sits
  memory          peak per rank (see probe.MemoryWatcher) beside plan.memory.memory_per_gpu(cfg).total
"""

from __future__ import annotations

import statistics
from typing import List, Sequence

from myllm_mc.config import Config
from myllm_mc.parallel.hardware import cuda_available  # imports torch when called: only for a run auto compiles
from myllm_mc.plan.compile_choice import cpu_compile_choice
from myllm_mc.plan.cpu_memory import cpu_memory_per_process
from myllm_mc.plan.memory import memory_per_gpu
from myllm_mc.train.metrics import flops_per_step as step_flops  # the same count as training metrics
from myllm_mc.train.metrics import peak_tflops

from .probe import MemoryWatcher, StepProbe


def bench_overrides(warmup: int, steps: int, log_dir: str) -> List[str]:
    """What turns a training config into a benchmark of its step: no evaluation, no checkpoints, one log line."""
    total = warmup + steps
    return [f"training.steps={total}", "training.eval_interval=0", "checkpoint.dir=null", "checkpoint.resume=null",
            "checkpoint.init_from=null", f"logging.dir={log_dir}", "logging.tensorboard=false",
            "logging.plot=false", f"logging.log_interval={total}"]


def compile_override(cfg: Config) -> List[str]:
    """`model.compile: auto` decided for the run being benchmarked (its own training.steps), not for the
    benchmark's few steps, and pinned as an explicit override: the benchmark times the step that run would take."""
    if cfg.model.compile != "auto":
        return []
    on = cpu_compile_choice(cfg)[0]
    return [f"model.compile={'true' if on and not cuda_available() else 'false'}"]   # auto is off on GPUs


def bubble_fraction(cfg: Config) -> float:
    """Pipeline bubble as a share of the *whole* step: b / (1 + b) with b = (p − 1) / (v · m) of the ideal."""
    p = cfg.parallel
    if p.pipeline == 1:
        return 0.0
    ideal = (p.pipeline - 1) / ((p.virtual_pipeline or 1) * cfg.num_microbatches)
    return ideal / (1 + ideal)


def layout_label(cfg: Config) -> str:
    """A short name for a layout, e.g. tp2-pp1-dp1-mbs4-selective; an MoE model adds its experts and EP
    (tp1-pp1-dp2-ep2-mbs4-none-moe16), so a sweep over model.moe.num_experts keeps its runs apart."""
    p, m = cfg.parallel, cfg.model
    label = f"tp{p.tensor}-pp{p.pipeline}-dp{p.data}"
    label += f"-vp{p.virtual_pipeline}" if p.virtual_pipeline and p.virtual_pipeline > 1 else ""
    label += f"-cp{p.context}" if p.context > 1 else ""
    label += f"-ep{p.expert}" if p.expert > 1 else ""
    label += "-sp" if p.sequence_parallel else ""
    label += f"-mbs{cfg.training.micro_batch_size}-{m.recompute}"
    return label + (f"-moe{m.moe.num_experts}" if m.moe.num_experts else "")


def _import_training_modules() -> None:
    """Import what a run imports, before its memory is measured (the imports are the point of this function)."""
    import megatron.core.datasets.gpt_dataset  # noqa: F401
    import megatron.core.distributed  # noqa: F401
    import megatron.core.optimizer  # noqa: F401
    import megatron.core.pipeline_parallel  # noqa: F401

    import myllm_mc.data.datasets  # noqa: F401
    import myllm_mc.model  # noqa: F401


def run_benchmark(cfg: Config, warmup: int) -> dict:
    """Train `cfg` (already carrying `bench_overrides`) and return the figures. Collective: every rank calls it;
    every rank gets the same dict."""
    # torch-bound imports stay in the functions here: `myllm benchmark`'s launching parent imports this module
    # (bench_overrides, layout_label) to lay out its runs, before torchrun starts them, without torch
    import torch.distributed as dist

    from myllm_mc.train.run import run_training

    _import_training_modules()          # their one-time allocations are not the run's memory
    probe = StepProbe(warmup)
    with MemoryWatcher() as memory:
        result = run_training(cfg, extra_callbacks=[probe])
    mine = {"timings": [vars(t) for t in probe.timings], "memory": memory.measured, "memory_absolute": memory.peak,
            "losses": probe.losses}
    ranks: List[dict] = [None] * dist.get_world_size()
    dist.all_gather_object(ranks, mine)
    predicted = memory_per_gpu(cfg)
    total = predicted.total
    if not memory.cuda:      # a CPU rank holds more than the CUDA model: fp32 grad buffer, working sets (plan/cpu_memory.py)
        total = cpu_memory_per_process(cfg).total
    row = summarise(cfg, ranks, step_flops(cfg), *peak_tflops(cfg), memory.label, total)
    row.update(exit_code=result.exit_code, planner_stage=predicted.stage)
    return row


def summarise(cfg: Config, ranks: Sequence[dict], flops: float, peak: float, peak_label: str,
              memory_label: str, predicted_memory: int) -> dict:
    """Per-rank raw timings and bytes → the benchmark's row. A step lasts as long as its slowest rank."""
    world = cfg.parallel.world_size
    steps = len(ranks[0]["timings"])
    if steps == 0:
        raise ValueError("no timed steps were recorded — fix: --steps 1 or more")
    step_times = [max(r["timings"][i]["step_time"] for r in ranks) for i in range(steps)]
    data = [statistics.fmean(r["timings"][i]["data_time"] for r in ranks) for i in range(steps)]
    optimizer = [statistics.fmean(r["timings"][i]["optimizer_time"] for r in ranks) for i in range(steps)]
    median = statistics.median(step_times)
    tflops = flops / median / world / 1e12
    memory = [int(r["memory"]) for r in ranks]
    share_data = statistics.median(data) / median
    share_optimizer = statistics.median(optimizer) / median
    losses = next((r["losses"] for r in ranks if r["losses"]), [])
    return {
        "layout": layout_label(cfg), "world_size": world, "tensor": cfg.parallel.tensor,
        "pipeline": cfg.parallel.pipeline, "data": cfg.parallel.data,
        "virtual_pipeline": cfg.parallel.virtual_pipeline or 1, "context": cfg.parallel.context,
        "sequence_parallel": cfg.parallel.sequence_parallel, "micro_batch_size": cfg.training.micro_batch_size,
        "global_batch_size": cfg.training.global_batch_size, "seq_length": cfg.model.seq_length,
        "recompute": cfg.model.recompute, "precision": cfg.model.precision, "compile": cfg.model.compile,
        "timed_steps": steps,
        "step_times": step_times, "step_time_median": median, "step_time_min": min(step_times),
        "step_time_max": max(step_times), "step_time_spread": (max(step_times) - min(step_times)) / median,
        "tokens_per_step": cfg.tokens_per_step, "tokens_per_s": cfg.tokens_per_step / median,
        "tokens_per_s_per_gpu": cfg.tokens_per_step / median / world,
        "flops_per_step": flops, "tflops_per_gpu": tflops, "peak_tflops": peak, "peak_label": peak_label,
        "mfu": tflops / peak if peak else None,
        "share_data": share_data, "share_optimizer": share_optimizer,
        "share_forward_backward": max(0.0, 1.0 - share_data - share_optimizer),
        "bubble_formula": bubble_fraction(cfg),
        "memory_per_rank": memory, "memory_max": max(memory), "memory_label": memory_label,
        "planner_memory": predicted_memory, "memory_ratio": max(memory) / predicted_memory if predicted_memory else None,
        "loss_first": losses[0] if losses else None, "loss_last": losses[-1] if losses else None,
    }
