"""Llama 2 / 3 / 3.1 / 3.2 (and SmolLM, every LlamaForCausalLM): the layout MyLLM trains natively.

Llama 3.1/3.2's `llama3` RoPE scaling maps to megatron-core's `rope_scaling` + `rope_scaling_factor`; llama.cpp
gets it as the per-frequency `rope_freqs.weight` tensor its own converter writes (`gguf_rope_freqs`).
"""

from __future__ import annotations

import math

from .common import LLAMA3_FIXED, Family


def rope_freq_factors(head_dim: int, base: float, factor: float) -> list[float]:
    """llama.cpp's rope_freqs for llama3 scaling: the divisor of each rotary frequency (convert_hf_to_gguf.py's
    formula; megatron-core's _apply_scaling gives the same inverse frequencies)."""
    dim = head_dim
    low, high, old = (LLAMA3_FIXED[k] for k in ("low_freq_factor", "high_freq_factor",
                                                 "original_max_position_embeddings"))
    out = []
    for i in range(0, dim, 2):
        wavelen = 2 * math.pi * base ** (i / dim)
        if wavelen < old / high:
            out.append(1.0)
        elif wavelen > old / low:
            out.append(factor)
        else:
            smooth = (old / wavelen - low) / (high - low)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return out


FAMILY = Family(
    name="llama", hf_model_types=("llama",), hf_architecture="LlamaForCausalLM", gguf_arch="llama",
    gguf_rotary_permute=True, fixed={"qkv_bias": False, "qk_norm": False}, rope_types=("default", "llama3"),
    hf_extra=lambda m: {"attention_bias": False, "mlp_bias": False, "pretraining_tp": 1},
)
