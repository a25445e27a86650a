"""Every valid parallel layout for a GPU count, with predicted memory, and the one to start from.

Validity is decided by `myllm_mc.config.validate` (the same checks `myllm train` runs at load time), so the
planner can never list a layout the trainer would reject.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from myllm_mc.config import ConfigError
from myllm_mc.config.validate import resolve_and_validate

from .hardware import gpu_spec
from .memory import MemoryBreakdown, memory_per_gpu
from .report import layout_name

# Share of the card the planner counts as usable: the CUDA context, NCCL and cuBLAS workspaces and the caching
# allocator's fragmentation typically take 5-15 % of an 80 GiB card in megatron-core runs.
USABLE_FRACTION = 0.85


@dataclass(frozen=True)
class LayoutOption:
    cfg: object                  # the validated Config with this layout
    memory: MemoryBreakdown
    fits: bool
    microbatches: int            # micro-batches per optimizer step per data-parallel rank
    bubble: float                # pipeline bubble as a fraction of ideal step time: (p − 1) / (v · m)

    @property
    def parallel(self):
        return self.cfg.parallel

    @property
    def model_parallel(self) -> int:
        p = self.parallel
        return p.tensor * p.pipeline * p.context


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _expert_options(cfg, gpus: int, tensor: int, pipeline: int):
    """(expert, expert_tensor) pairs: every EP that divides the experts and, with ETP, the GPUs of a pipeline stage;
    expert TP either follows TP (megatron's default, null) or is 1. A dense model has only (1, null)."""
    experts = cfg.model.moe.num_experts
    if not experts:
        return [(1, None)]
    stage = gpus // pipeline
    options = []
    for etp in sorted({tensor, 1}):
        for ep in _divisors(stage // etp):
            if experts % ep == 0:
                options.append((ep, None if etp == tensor else etp))
    return options


def candidate_layouts(cfg, gpus: int):
    """Every tensor × pipeline × context × data factorisation of `gpus`, with SP on/off and VPP sizes, and for
    MoE every expert × expert-tensor split (expert parallelism reuses the data/context/tensor ranks)."""
    for tensor in _divisors(gpus):
        for pipeline in _divisors(gpus // tensor):
            for context in _divisors(gpus // (tensor * pipeline)):
                data = gpus // (tensor * pipeline * context)
                virtual_options = [None] + list(range(2, cfg.model.num_layers // pipeline + 1))
                for sequence_parallel in (False, True):
                    for virtual in virtual_options:
                        for expert, expert_tensor in _expert_options(cfg, gpus, tensor, pipeline):
                            yield dataclasses.replace(
                                cfg.parallel, world_size=gpus, tensor=tensor, pipeline=pipeline, context=context,
                                data=data, sequence_parallel=sequence_parallel, virtual_pipeline=virtual,
                                expert=expert, expert_tensor=expert_tensor)


def layout_options(cfg, gpus: int, gpu_name: str) -> tuple[list[LayoutOption], list[str]]:
    """Valid layouts, best first, and the validation errors of the rejected ones (one per distinct reason)."""
    gpu = gpu_spec(gpu_name)
    usable = gpu.memory_bytes * USABLE_FRACTION
    options, rejected = [], {}
    for parallel in candidate_layouts(cfg, gpus):
        try:
            valid = resolve_and_validate(dataclasses.replace(cfg, parallel=parallel))
        except ConfigError as err:
            kind = re.sub(r"\d+", "#", str(err).split(" — ")[0])   # one example per kind of failure
            rejected.setdefault(kind, str(err))
            continue
        p = valid.parallel
        microbatches = valid.num_microbatches
        bubble = (p.pipeline - 1) / ((p.virtual_pipeline or 1) * microbatches)
        memory = memory_per_gpu(valid)
        options.append(LayoutOption(valid, memory, memory.total <= usable, microbatches, bubble))
    options.sort(key=_rank)
    return options, list(rejected.values())


def _rank(option: LayoutOption):
    """Fitting layouts first; then the fewest model-parallel ways (each adds per-layer collectives or a pipeline
    bubble to the critical path, while data parallelism's gradient traffic overlaps with compute); then the
    smaller bubble; tensor before context parallelism; sequence parallelism on; experts unsplit by tensor
    parallelism (ETP 1: expert GEMMs stay whole, megatron's advice); then the smaller footprint, which among
    MoE layouts favours the larger expert parallelism (expert weights, gradients and Adam state ÷ EP)."""
    p = option.parallel
    expert_tensor = p.expert_tensor if p.expert_tensor is not None else p.tensor
    return (not option.fits, option.model_parallel, option.bubble, p.context, not p.sequence_parallel,
            expert_tensor > 1, option.memory.total)


def recommendation(options: list[LayoutOption], gpu_name: str) -> str:
    """One sentence naming the first-ranked layout and why it wins."""
    gpu = gpu_spec(gpu_name)
    usable_gib = gpu.memory_gib * USABLE_FRACTION
    if not options:
        return "no valid layout for this GPU count — see the rejected reasons above"
    best = options[0]
    used = best.memory.total / 2**30
    if not best.fits:
        return (f"nothing fits in {usable_gib:.1f} GiB usable per {gpu.label}: the smallest is {layout_name(best.parallel)}"
                f" at {min(o.memory.total for o in options) / 2**30:.1f} GiB — enable recompute, a smaller micro-batch or more GPUs")
    p = best.parallel
    if best.model_parallel == 1:
        why = ("pure data parallelism: the whole model fits on each GPU, so no tensor/pipeline/context"
               " collectives or pipeline bubble sit on the critical path; the distributed optimizer shards the"
               " Adam state and gradient reduce-scatter overlaps with backward")
    else:
        why = (f"the fewest model-parallel ways ({best.model_parallel}) that fit; pure data parallelism needs more"
               " memory than the card offers")
    return f"recommended: {layout_name(p)} — {used:.1f} of {usable_gib:.1f} GiB usable; {why}"
