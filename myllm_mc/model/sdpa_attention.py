"""Core attention on PyTorch's `scaled_dot_product_attention`: the local spec's attention when TE is absent.

megatron-core's local `DotProductAttention` materialises the [b, heads, s, s] scores (baddbmm, masked softmax,
bmm) and repeats K/V for grouped-query attention; on a GPU without Transformer Engine that caps the sequence
length and wastes HBM bandwidth. `SDPAAttention` hands the same computation to SDPA, which picks flash /
memory-efficient kernels on CUDA and a fused CPU kernel, so no s×s tensor is kept for backward.

Same call signature as megatron's DotProductAttention ([s, b, heads, d] in, [s, b, heads·d] out), so it drops
into the local layer spec. Masks follow megatron's convention: `attention_mask` True = masked, broadcastable to
[b, 1, s_q, s_k] (packed-sequence SFT passes a block-diagonal causal one); without a mask the layer's mask type
decides (causal, or none for a KV-cache decode step, which megatron signals with `AttnMaskType.no_mask`).

Context parallelism (each rank holds chunks r and 2·cp−1−r of the sequence, megatron's load-balanced layout,
see `megatron.core.utils.get_batch_on_this_cp_rank`): queries stay local, keys and values are all-gathered
over the CP group with megatron's differentiable gather (backward: reduce-scatter), and the causal mask is
built from the chunks' global positions — or, with an explicit mask (split by megatron along the query axis
only), its key axis is reordered to the gathered keys. The all-gather costs more memory than TE's ring
attention; it is for CPU parity runs and TE-less GPUs, TE does CP natively.
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from megatron.core import parallel_state, tensor_parallel
from megatron.core.transformer.enums import AttnMaskType
from megatron.core.transformer.module import MegatronModule


def chunk_positions(seq_per_rank: int, cp_rank: int, cp_size: int, device=None) -> torch.Tensor:
    """Global token positions held by `cp_rank` in megatron's two-chunks-per-rank layout."""
    chunk = seq_per_rank // 2
    firsts = (cp_rank, 2 * cp_size - cp_rank - 1)
    return torch.cat([torch.arange(c * chunk, (c + 1) * chunk, device=device) for c in firsts])


class SDPAAttention(MegatronModule):
    """Causal / masked grouped-query core attention through `F.scaled_dot_product_attention`."""

    def __init__(self, config, layer_number: int, attn_mask_type, attention_type: str,
                 attention_dropout=None, softmax_scale=None, cp_comm_type=None, pg_collection=None):
        super().__init__(config=config)
        tp = pg_collection.tp if pg_collection is not None else parallel_state.get_tensor_model_parallel_group()
        self.cp_group = (pg_collection.cp if pg_collection is not None and hasattr(pg_collection, "cp")
                         else parallel_state.get_context_parallel_group())
        self.attn_mask_type = attn_mask_type
        self.heads_per_rank = config.num_attention_heads // tp.size()
        self.groups_per_rank = config.num_query_groups // tp.size()
        self.softmax_scale = softmax_scale or 1.0 / math.sqrt(config.kv_channels)
        self.dropout = config.attention_dropout if attention_dropout is None else attention_dropout

    def forward(self, query, key, value, attention_mask=None, attn_mask_type=None, attention_bias=None,
                packed_seq_params=None):
        if packed_seq_params is not None or attention_bias is not None:
            raise NotImplementedError("SDPAAttention: THD packed sequences / attention bias need TE's attention"
                                      " — fix: pass a block-diagonal attention_mask, or model.spec=te on a GPU")
        cp_size = self.cp_group.size() if self.config.context_parallel_size > 1 else 1
        seq_q = query.size(0)
        causal = (attn_mask_type or self.attn_mask_type) == AttnMaskType.causal
        allowed, is_causal = None, False
        if cp_size > 1:
            cp_rank = self.cp_group.rank()
            # [s_local, b, g, d] → [cp·s_local, b, g, d], rank-major; backward reduce-scatters the grads
            key = tensor_parallel.gather_from_sequence_parallel_region(key, group=self.cp_group)
            value = tensor_parallel.gather_from_sequence_parallel_region(value, group=self.cp_group)
            k_pos = torch.cat([chunk_positions(seq_q, r, cp_size, query.device) for r in range(cp_size)])
            if attention_mask is not None:      # megatron split it along queries; keys are still global
                allowed = ~attention_mask.index_select(-1, k_pos)
            elif causal:
                q_pos = chunk_positions(seq_q, cp_rank, cp_size, query.device)
                allowed = k_pos[None, :] <= q_pos[:, None]
        elif attention_mask is not None:
            allowed = ~attention_mask
        elif causal and seq_q > 1:
            seq_k = key.size(0)
            if seq_q == seq_k:
                is_causal = True
            else:   # queries are the last seq_q positions (chunked prefill after a KV cache)
                q_pos = torch.arange(seq_k - seq_q, seq_k, device=query.device)
                allowed = torch.arange(seq_k, device=query.device)[None, :] <= q_pos[:, None]
        q, k, v = (t.permute(1, 2, 0, 3) for t in (query, key, value))   # [b, heads, s, d]
        gqa = self.heads_per_rank != self.groups_per_rank
        if gqa and allowed is not None and q.device.type == "cuda":
            # a mask rules out the flash kernel, and the memory-efficient one takes no grouped K/V: repeat them
            # (elsewhere SDPA groups K/V itself; on CPU that measured faster than repeating)
            repeat = self.heads_per_rank // self.groups_per_rank
            k, v = k.repeat_interleave(repeat, dim=1), v.repeat_interleave(repeat, dim=1)
            gqa = False
        dropout = self.dropout if self.training else 0.0
        with tensor_parallel.get_cuda_rng_tracker().fork() if dropout else contextlib.nullcontext():
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=dropout,
                                                 is_causal=is_causal, scale=self.softmax_scale, enable_gqa=gqa)
        return out.permute(2, 0, 1, 3).reshape(seq_q, query.size(1), -1)   # [s, b, heads·d]
