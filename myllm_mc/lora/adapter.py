"""One LoRA adapter on one megatron-core parallel linear layer: y = W·x + (alpha/r)·B·A·dropout(x).

Tensor parallelism follows the layer's own split, so the rank dimension is never divided:
- column-parallel (linear_qkv, linear_fc1: output split): A [r, n] replicated, B [m/t, r] split by output like W.
  The rank-r intermediate h = A·x is computed on every rank; its gradient is partial per rank (each rank sees
  only its outputs), so h passes megatron's copy-to-TP region (backward: an all-reduce of s·b·r values, r/n of
  the layer's own input all-reduce) — or, under sequence parallelism, the gather-from-SP region (forward
  all-gather / backward reduce-scatter of s·b·r, r/n of the layer's own gather). A's gradient is then the same on
  every rank without SP; under SP each rank holds its sequence share of it (summed over TP in `apply.py`).
- row-parallel (linear_proj, linear_fc2: input split): A [r, n/t] split by input like W, B [m, r] replicated.
  The adapter's output is added to the layer's partial output *before* the layer's own all-reduce (or
  reduce-scatter under SP), so it adds no communication at all; B's gradient is partial per rank and is summed
  over TP once per step (`apply.py`), with the other replicated gradients' reductions.
A starts as PEFT's kaiming-uniform (bound 1/sqrt(n)) drawn whole from a generator seeded by (seed, layer,
module) and then sliced, so every layout starts from the same adapters; B starts at zero, so a fresh adapter
leaves the model's output unchanged.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from megatron.core import tensor_parallel
from megatron.core.tensor_parallel.layers import set_tensor_model_parallel_attributes
from megatron.core.tensor_parallel.mappings import (
    copy_to_tensor_model_parallel_region,
    gather_from_sequence_parallel_region,
)
from megatron.core.transformer.mlp import apply_swiglu_sharded_factory
from megatron.core.transformer.utils import ensure_metadata_has_dp_cp_group, make_sharded_tensors_for_checkpoint

TP_SUM_ATTR = "lora_tp_partial_grad"     # a replicated factor whose per-rank gradient is a partial sum over TP


def init_seed(seed: int, layer: int, target: str) -> int:
    """One stream per (run seed, global layer, module): the same adapters at any TP/PP layout."""
    return (seed * 1_000_003 + layer * 101 + ["linear_qkv", "linear_proj", "linear_fc1", "linear_fc2"].index(target)
            ) % (2 ** 63)


class LoRAAdapter(torch.nn.Module):
    """The factors of one adapter (parameters `A` and `B`) and its contribution to the layer's output."""

    def __init__(self, column: bool, in_features: int, out_features: int, rank: int, alpha: float, dropout: float,
                 tp_size: int, tp_rank: int, tp_group, sequence_parallel: bool, swiglu: bool, seed: int,
                 dtype: torch.dtype, device=None):
        super().__init__()
        self.column, self.rank, self.scale = column, rank, alpha / rank
        self.tp_size, self.tp_group, self.sequence_parallel, self.swiglu = tp_size, tp_group, sequence_parallel, swiglu
        self.dropout = torch.nn.Dropout(dropout) if dropout > 0 else None
        self.enabled = True
        generator = torch.Generator().manual_seed(seed)
        bound = 1.0 / math.sqrt(in_features)
        a = torch.empty(rank, in_features).uniform_(-bound, bound, generator=generator)
        if not column:
            a = a.chunk(tp_size, dim=1)[tp_rank]
        b_rows = out_features // tp_size if column else out_features
        self.A = torch.nn.Parameter(a.to(dtype=dtype, device=device).contiguous())
        self.B = torch.nn.Parameter(torch.zeros(b_rows, rank, dtype=dtype, device=device))
        sharded, replicated = (self.B, self.A) if column else (self.A, self.B)
        set_tensor_model_parallel_attributes(sharded, True, 0 if column else 1, 1)
        set_tensor_model_parallel_attributes(replicated, False, 0, 1)
        partial = tp_size > 1 and (not column or sequence_parallel)
        setattr(replicated, TP_SUM_ATTR, partial)

    def _dropped(self, x: torch.Tensor, sharded_input: bool) -> torch.Tensor:
        if self.dropout is None or not self.training:
            return x
        if sharded_input:            # each TP rank holds other values: its own stream, as megatron's TP dropout
            with tensor_parallel.get_cuda_rng_tracker().fork():
                return self.dropout(x)
        return self.dropout(x)       # replicated input: the default stream, identical on every TP rank

    def column_delta(self, x: torch.Tensor) -> torch.Tensor:
        """This rank's output columns of the update, for the layer's input x ([s or s/t under SP, b, n])."""
        h = torch.matmul(self._dropped(x, self.sequence_parallel), self.A.t())
        if self.tp_size > 1:
            h = (gather_from_sequence_parallel_region(h, tensor_parallel_output_grad=True, group=self.tp_group)
                 if self.sequence_parallel else copy_to_tensor_model_parallel_region(h, group=self.tp_group))
        return torch.matmul(h, self.B.t()) * self.scale

    def row_partial(self, x: torch.Tensor) -> torch.Tensor:
        """This rank's partial sum of the update, for its input share x ([s, b, n/t]); the layer reduces it."""
        h = torch.matmul(self._dropped(x, self.tp_size > 1), self.A.t())
        return torch.matmul(h, self.B.t()) * self.scale

    def delta_weight(self) -> torch.Tensor:
        """(alpha/r)·B·A for this rank's shard of W, in fp32 (what merging adds)."""
        return (self.B.detach().float() @ self.A.detach().float()) * self.scale

    def sharded_state_dict(self, prefix: str = "", sharded_offsets: tuple = (), metadata: Optional[dict] = None):
        """A and B by global shape: the split factor along the layer's split axis (linear_fc1's B as megatron
        stores fc1 itself: gate and up halves resharded separately), so adapters load at any TP/PP."""
        metadata = ensure_metadata_has_dp_cp_group(metadata)
        state = {"A": self.A, "B": self.B}
        axis = {"B": 0} if self.column else {"A": 1}
        out = make_sharded_tensors_for_checkpoint(state, prefix, axis, sharded_offsets, tp_group=self.tp_group,
                                                  dp_cp_group=metadata["dp_cp_group"])
        if self.swiglu:
            out[f"{prefix}B"] = apply_swiglu_sharded_factory(
                out[f"{prefix}B"], sharded_offsets, metadata.get("singleton_local_shards", False))
        return out
