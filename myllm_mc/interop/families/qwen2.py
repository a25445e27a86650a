"""Qwen2 / Qwen2.5: Llama's layout plus a bias on q, k and v (always on in transformers' Qwen2Attention).

megatron-core: `add_qkv_bias` (our model.qkv_bias) — the bias is fused into `linear_qkv.bias` in the same per-group
row order as the weight. llama.cpp's `qwen2` rotates halves (NEOX), as HF does, so Q/K are not permuted.
"""

from __future__ import annotations

from .common import Family

FAMILY = Family(
    name="qwen2", hf_model_types=("qwen2",), hf_architecture="Qwen2ForCausalLM", gguf_arch="qwen2",
    gguf_rotary_permute=False, fixed={"qkv_bias": True, "qk_norm": False},
    hf_extra=lambda m: {"use_sliding_window": False, "sliding_window": None, "max_window_layers": m.num_layers},
)
