"""The numbers a generation run ends with: throughput, time to first token, KV cache bytes measured vs planned,
and the memory-bandwidth bound on decode.

Decode is bandwidth-bound: each step reads every weight (and the live KV cache) once to produce one token per
row, with ~2 FLOPs per weight read, far below what the device computes in the time the read takes. The bound is
(rows × bandwidth) / (weight bytes + KV bytes read per step). On a GPU the bandwidth is the datasheet HBM figure
the planner uses; on a CPU it is measured here, in this process, with a STREAM-like copy (torch `copy_` of a
buffer far larger than the caches: bytes read + bytes written per second, best of a few repeats).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from myllm_mc.parallel.hardware import cuda_available
from myllm_mc.plan.hardware import gpu_spec
from myllm_mc.plan.inference import decode_step_bound, kv_cache_bytes


def measure_copy_bandwidth(megabytes: int = 256, repeats: int = 5) -> float:
    """Bytes/s of a large memory copy (read + write counted), best of `repeats`."""
    n = megabytes * 2**20 // 4
    src = torch.ones(n, dtype=torch.float32)
    dst = torch.empty_like(src)
    dst.copy_(src)                                    # touch the pages first
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        dst.copy_(src)
        best = min(best, time.perf_counter() - start)
    return 2 * src.nbytes / best


def device_bandwidth(plan_gpu: str) -> tuple[float, str]:
    """(bytes/s, where it comes from): the planner's HBM figure on a GPU, a measured copy on a CPU."""
    if cuda_available():
        spec = gpu_spec(plan_gpu)
        return spec.hbm_tb_per_s * 1e12, f"{spec.label} HBM datasheet"
    return measure_copy_bandwidth(), "measured CPU copy"


@dataclass(frozen=True)
class RunNumbers:
    prefill_tokens_per_s: float
    decode_tokens_per_s: float
    time_to_first_token_s: float        # mean over requests
    kv_bytes_measured: int              # this rank's allocated cache
    kv_bytes_planned: int               # the planner's per-token figure × token slots, this rank's share
    kv_dtype: str
    bandwidth_bytes_per_s: float
    bandwidth_source: str
    decode_bound_tokens_per_s: float    # at this run's mean batch and mean context
    prefix_reused_tokens: int = 0       # prompt tokens served by the prefix cache
    drafted_tokens: int = 0             # speculative decoding
    acceptance_rate: float = 0.0

    @property
    def bound_ratio(self) -> float:
        return self.decode_tokens_per_s / self.decode_bound_tokens_per_s if self.decode_bound_tokens_per_s else 0.0

    def line(self) -> str:
        return (f"prefill {self.prefill_tokens_per_s:,.0f} tok/s · decode {self.decode_tokens_per_s:,.1f} tok/s"
                f" · first token {self.time_to_first_token_s * 1e3:,.0f} ms · KV cache {_mib(self.kv_bytes_measured)}"
                f" {self.kv_dtype} allocated (planner {_mib(self.kv_bytes_planned)})"
                f" · decode bound {self.decode_bound_tokens_per_s:,.1f} tok/s"
                f" ({self.bandwidth_source} {self.bandwidth_bytes_per_s / 1e9:,.1f} GB/s;"
                f" {100 * self.bound_ratio:.0f}% of it)"
                + (f" · prefix cache {self.prefix_reused_tokens:,} prompt tokens reused" if self.prefix_reused_tokens
                   else "")
                + speculation_note(self.drafted_tokens, self.acceptance_rate))


def speculation_note(drafted: int, acceptance_rate: float) -> str:
    """" · speculative A% of N drafts accepted" (empty without drafts): the numbers line's and chat's."""
    return f" · speculative {100 * acceptance_rate:.0f}% of {drafted:,} drafts accepted" if drafted else ""


def _mib(n: int) -> str:
    return f"{n / 2**20:,.2f} MiB"


def run_numbers(gen, bandwidth: float, source: str) -> RunNumbers:
    """Summarise a Generator's stats against the planner and the bandwidth bound (this rank's view)."""
    # megatron-core on use: see generator.py
    from megatron.core import parallel_state as ps

    stats, cache = gen.stats, gen.cache
    dtype = cache.dtype() or gen.params_dtype
    element = torch.tensor([], dtype=dtype).element_size()
    # the largest cache of the run (sized to its requests; freed between batches)
    planned = kv_cache_bytes(gen.model_cfg, stats.kv_peak_tokens, element,
                             ps.get_tensor_model_parallel_world_size(), ps.get_pipeline_model_parallel_world_size())
    weights = sum(p.numel() * p.element_size() for p in gen.wrapper.model.parameters())
    steps = max(stats.decode_steps, 1)
    per_slot = kv_cache_bytes(gen.model_cfg, 1, element, ps.get_tensor_model_parallel_world_size(),
                              ps.get_pipeline_model_parallel_world_size())
    # pipeline stages run one after another within a decode step: the step reads every stage's share in turn
    stages = ps.get_pipeline_model_parallel_world_size()
    bound = decode_step_bound(stages * weights, stages * per_slot * stats.kv_slots_read / steps, bandwidth,
                              stats.decode_tokens / steps)
    ttft = sum(stats.first_token_s) / len(stats.first_token_s) if stats.first_token_s else 0.0
    return RunNumbers(stats.prefill_tokens_per_s, stats.decode_tokens_per_s, ttft, stats.kv_peak_bytes, planned,
                      str(dtype).replace("torch.", ""), bandwidth, source, bound if stats.decode_steps else 0.0,
                      stats.prefix_reused_tokens, stats.drafted_tokens, stats.acceptance_rate)
