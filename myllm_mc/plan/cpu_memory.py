"""Predicted peak memory of one training process on CPU, term by term, checked against measured runs.

`memory_per_gpu` models what the CUDA allocator holds. A CPU rank differs, and measured memory was 2.1–3.8× that
figure until the terms below were added (docs/planner.md has the measurements):

  weights              fp32 on CPU (4 B/param), in megatron DDP's contiguous parameter buffer
  DDP gradient buffer  4 B/param: `wrap_ddp` sets grad_reduce_in_fp32, so main_grad is fp32 whatever the precision
  optimizer states     the Adam moments (+ fp32 master copy below fp32), sharded over DP×CP (distributed optimizer)
  activations, logits  as on GPU (`memory.layer_activation_bytes`); SDPA attention keeps no s×s scores on CPU
                       either (torch's CPU flash kernel stores the log-sum-exp only)
  backward working set the gradients of one layer's activations, alive while that layer's backward runs
  dataset index        megatron GPTDataset's shuffle (int64) + sample (2 × int32) + document (int32) indexes
  runtime working set  allocator slack, OpenMP thread pools, gloo / DataLoader buffers and the Python objects a
                       run creates: a constant per process, measured on the reference CPU (RUNTIME_WORKING_SET)

Measured figure it predicts: the process's anonymous resident set above its level before the run (what
`myllm benchmark` samples), with glibc's mmap threshold pinned by the CPU bridge (`parallel/cpu_allocator.py`);
without the pin the resident set grows by fragmentation every step and no formula predicts it.
The interpreter, torch and megatron-core themselves (~290 MiB anonymous, ~370 MiB resident after import) are
listed separately as `runtime`: they are in a process's total RSS but are not the run's memory.
"""

from __future__ import annotations

from dataclasses import dataclass

from myllm_mc.config.validate import resolve_layout

from .memory import layer_activation_bytes, memory_per_gpu
from .moe import expert_data

MiB = 2**20
# Measured 2026-12-01 on the reference machine (2 shared EPYC cores, torch 2.13.0+cpu, megatron-core 0.16.1):
# single-rank tiny runs at micro-batch 1 and 4 both left 28–29 MiB above the tensor terms.
RUNTIME_WORKING_SET = 28 * MiB
# python 3.11 + `import torch` + the megatron-core modules training imports, anonymous resident bytes (measured)
RUNTIME_IMPORTED = 286 * MiB


@dataclass(frozen=True)
class Term:
    key: str
    label: str
    bytes: int
    why: str


@dataclass(frozen=True)
class CpuMemory:
    terms: tuple
    total: int                  # the run's own memory: every term but `runtime`
    runtime: Term               # interpreter + libraries, outside `total`

    def as_dict(self) -> dict:
        return {t.key: t.bytes for t in self.terms} | {"total": self.total, "runtime": self.runtime.bytes}


def cpu_memory_per_process(cfg, samples: int | None = None) -> CpuMemory:
    """Peak bytes of the busiest CPU rank for `cfg`. `samples`: training samples the dataset indexes cover
    (default steps × global batch)."""
    m, p, t = cfg.model, cfg.parallel, cfg.training
    gpu = memory_per_gpu(cfg)
    params = gpu.parameters_on_gpu
    if p.data == "auto" or p.world_size == "auto":
        p = resolve_layout(p, None)
    element = 4 if m.precision == "fp32" else 2
    shards = p.data * p.context if p.distributed_optimizer else 1
    # megatron's distributed optimizer shards routed-expert state over the expert data-parallel group instead
    experts = gpu.expert_parameters_on_gpu
    dense = params - experts
    expert_shards = expert_data(p) if p.distributed_optimizer else 1
    adam = 8 if element == 4 else 12
    layer = layer_activation_bytes(m, p, t.micro_batch_size, m.recompute)
    backward = layer["stored"] + layer["working"]
    samples = samples if samples is not None else t.steps * t.global_batch_size
    index = 16 * samples
    terms = (
        Term("weights", "weights", element * params,
             f"{params:,} parameters on this rank × {element} B ({m.precision}; DDP's contiguous param buffer)"),
        Term("ddp_grad_buffer", "DDP gradient buffer", 4 * params,
             "× 4 B: fp32 main_grad (grad_reduce_in_fp32), one contiguous buffer"),
        Term("optimizer_states", "optimizer states", int(adam * (dense / shards + experts / expert_shards)),
             f"× {adam} B ({'2 Adam moments' if adam == 8 else 'fp32 master + 2 moments'}) / {shards} (DP×CP shards)"
             + (f"; routed experts' ({experts:,}) / {expert_shards} (expert DP)" if experts else "")),
        Term("activations", "activations", gpu.activations,
             f"{gpu.activation_bytes_per_layer / MiB:.1f} MiB per layer-micro-batch × {gpu.layer_microbatches:g}"
             " in flight (as on GPU)"),
        Term("logits", "logits", gpu.logits, "s·b·V/TP × (logits + fp32 softmax of the cross-entropy)"),
        Term("backward_working_set", "backward working set", int(backward),
             "gradients of one layer's stored activations while its backward runs"),
        Term("dataset_index", "dataset index", index,
             f"{samples:,} samples × 16 B (shuffle int64 + sample 2×int32 + document int32)"),
        Term("runtime_working_set", "runtime working set", RUNTIME_WORKING_SET,
             "allocator slack, thread pools, gloo/loader buffers, run objects: measured constant per process"),
    )
    runtime = Term("runtime", "runtime (python, torch, megatron-core)", RUNTIME_IMPORTED,
                   "anonymous memory of the imported libraries, before the run (not counted in the total)")
    return CpuMemory(terms=terms, total=sum(term.bytes for term in terms), runtime=runtime)
