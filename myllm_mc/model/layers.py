"""The two modules megatron-core's local (non-Transformer-Engine) spec lacks for MyLLM's layouts.

`RMSNorm`: the local spec's `WrappedTorchNorm` asserts `not config.sequence_parallel`. Under sequence
parallelism each tensor-parallel rank normalises a different slice of the sequence, so the norm weight's
gradient is partial per rank; marking the weight `sequence_parallel` makes megatron's grad finalisation
all-reduce it over the tensor group. That attribute is the whole difference.

`ContextParallelAttention`: the local `DotProductAttention` asserts `context_parallel_size == 1` (only TE's
attention does CP). The SDPA core attention (`sdpa_attention.py`) gathers keys/values over the CP group, so it
is the context-parallel attention of the local spec; the old name is kept for callers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .sdpa_attention import SDPAAttention, chunk_positions

ContextParallelAttention = SDPAAttention
__all__ = ["RMSNorm", "ContextParallelAttention", "chunk_positions"]


class RMSNorm(torch.nn.Module):
    """y = x / rms(x) · weight, with the weight marked for sequence-parallel grad reduction."""

    def __init__(self, config, hidden_size: int, eps: float = 1e-5, **_unused):
        super().__init__()
        device = None if config.use_cpu_initialization else torch.cuda.current_device()
        self.weight = torch.nn.Parameter(torch.ones(hidden_size, dtype=config.params_dtype, device=device))
        self.weight.sequence_parallel = config.sequence_parallel
        self.hidden_size, self.eps = hidden_size, eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, (self.hidden_size,), self.weight, self.eps)
