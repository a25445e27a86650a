"""The two modules megatron-core's local (non-Transformer-Engine) spec lacks for MyLLM's layouts.

`RMSNorm`: the local spec's `WrappedTorchNorm` asserts `not config.sequence_parallel`. Under sequence
parallelism each tensor-parallel rank normalises a different slice of the sequence, so the norm weight's
gradient is partial per rank; marking the weight `sequence_parallel` makes megatron's grad finalisation
all-reduce it over the tensor group. That attribute is the whole difference.

`ContextParallelAttention`: the local `DotProductAttention` asserts `context_parallel_size == 1` (only TE's
attention does CP). Each context-parallel rank holds two sequence chunks in megatron's load-balanced layout
(chunks r and 2·cp−1−r, see `megatron.core.utils.get_batch_on_this_cp_rank`); queries stay local, keys and
values are all-gathered over the CP group with megatron's differentiable gather (backward: reduce-scatter), and
the causal mask is built from the chunks' global positions. RoPE is already sliced per CP rank by megatron.
An all-gather costs more memory than TE's ring attention; it is for CPU parity runs, TE does CP on GPU.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from megatron.core import parallel_state, tensor_parallel
from megatron.core.transformer.module import MegatronModule


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


def chunk_positions(seq_per_rank: int, cp_rank: int, cp_size: int, device=None) -> torch.Tensor:
    """Global token positions held by `cp_rank` in megatron's two-chunks-per-rank layout."""
    chunk = seq_per_rank // 2
    firsts = (cp_rank, 2 * cp_size - cp_rank - 1)
    return torch.cat([torch.arange(c * chunk, (c + 1) * chunk, device=device) for c in firsts])


class ContextParallelAttention(MegatronModule):
    """Causal core attention over a sequence split across the context-parallel group (same call signature as
    megatron's DotProductAttention, so it drops into the local layer spec)."""

    def __init__(self, config, layer_number: int, attn_mask_type, attention_type: str,
                 attention_dropout=None, softmax_scale=None, cp_comm_type=None, pg_collection=None):
        super().__init__(config=config)
        tp = pg_collection.tp if pg_collection is not None else parallel_state.get_tensor_model_parallel_group()
        self.cp_group = (pg_collection.cp if pg_collection is not None and hasattr(pg_collection, "cp")
                         else parallel_state.get_context_parallel_group())
        self.heads_per_rank = config.num_attention_heads // tp.size()
        self.groups_per_rank = config.num_query_groups // tp.size()
        self.softmax_scale = softmax_scale or 1.0 / math.sqrt(config.kv_channels)
        self.dropout = config.attention_dropout if attention_dropout is None else attention_dropout

    def forward(self, query, key, value, attention_mask=None, attn_mask_type=None, attention_bias=None,
                packed_seq_params=None):
        if packed_seq_params is not None or attention_bias is not None:
            raise NotImplementedError("ContextParallelAttention: packed sequences / attention bias need TE's"
                                      " attention — fix: model.spec=te on a GPU")
        cp_size, cp_rank = self.cp_group.size(), self.cp_group.rank()
        seq_local = query.size(0)
        # [s_local, b, g, d] → [cp·s_local, b, g, d], rank-major; backward reduce-scatters the grads
        key = tensor_parallel.gather_from_sequence_parallel_region(key, group=self.cp_group)
        value = tensor_parallel.gather_from_sequence_parallel_region(value, group=self.cp_group)
        q_pos = chunk_positions(seq_local, cp_rank, cp_size, query.device)
        k_pos = torch.cat([chunk_positions(seq_local, r, cp_size, query.device) for r in range(cp_size)])
        allowed = k_pos[None, :] <= q_pos[:, None]                      # [s_q, s_k], True = attend
        q, k, v = (t.permute(1, 2, 0, 3) for t in (query, key, value))  # [b, heads, s, d]
        dropout = self.dropout if self.training else 0.0
        with tensor_parallel.get_cuda_rng_tracker().fork():
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=dropout,
                                                 scale=self.softmax_scale, enable_gqa=True)
        return out.permute(2, 0, 1, 3).reshape(seq_local, query.size(1), -1)  # [s, b, heads·d]
