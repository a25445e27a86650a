"""Inference-side figures: KV cache size and the memory-bandwidth bound on batch-1 decode.

Decode of one sequence reads every weight once per generated token and does ~2 FLOPs per weight, far below
what a GPU computes in the time the read takes, so tokens/s ≤ HBM bandwidth / bytes read per token.
"""

from __future__ import annotations

from dataclasses import dataclass

BYTES_PER_WEIGHT = {"bf16": 2.0, "int8": 1.0, "int4": 0.5}


def kv_cache_bytes_per_token(model_cfg, *, kv_heads=None, bytes_per_element: int = 2) -> int:
    """K and V (2) × layers × KV heads × head dim × bytes: what each cached token costs.

    GQA caches `num_query_groups` heads instead of one per query head; pass kv_heads to compare.
    """
    m = model_cfg
    heads = m.num_query_groups if kv_heads is None else kv_heads
    return 2 * m.num_layers * heads * m.kv_channels * bytes_per_element


@dataclass(frozen=True)
class DecodeBound:
    weight_format: str
    weight_bytes: float
    tokens_per_s: float                 # weights only: the bound at short context
    tokens_per_s_full_context: float    # weights + one full sequence's KV cache read per token


def decode_bounds(model_cfg, parameters: int, hbm_bytes_per_s: float) -> list[DecodeBound]:
    """Batch-1 decode bound for BF16, int8 and int4 weights; the KV cache stays BF16, so it does not shrink."""
    kv_full = kv_cache_bytes_per_token(model_cfg) * model_cfg.seq_length
    bounds = []
    for fmt, per_weight in BYTES_PER_WEIGHT.items():
        weights = parameters * per_weight
        bounds.append(DecodeBound(fmt, weights, hbm_bytes_per_s / weights, hbm_bytes_per_s / (weights + kv_full)))
    return bounds


def kv_cache_bytes(model_cfg, tokens: int, bytes_per_element: int, tensor: int = 1, pipeline: int = 1) -> int:
    """Bytes of a KV cache holding `tokens` token slots (max batch × max sequence for a static cache) on ONE rank:
    tensor parallelism splits the KV heads, pipeline parallelism the layers (both divide exactly in megatron)."""
    per_token = kv_cache_bytes_per_token(model_cfg, bytes_per_element=bytes_per_element)
    return per_token * tokens // (tensor * pipeline)


def decode_step_bound(weight_bytes: float, kv_bytes_read: float, bytes_per_s: float, batch: float = 1.0) -> float:
    """Tokens/s ceiling of decode when every step reads all weights once plus the KV cache of the batch:
    batch tokens per (weight_bytes + kv_bytes_read) / bytes_per_s seconds."""
    return batch * bytes_per_s / (weight_bytes + kv_bytes_read)
