"""Qwen3 (dense): no QKV bias, an RMSNorm over each query and key head before RoPE, head_dim independent of
hidden / heads (Qwen3-0.6B: 16 heads × 128 = 2,048 ≠ hidden 1,024).

megatron-core: `qk_layernorm` with our RMSNorm on `hidden_size_per_attention_head` (model.qk_norm), `kv_channels`
(model.kv_channels). llama.cpp's `qwen3` rotates halves (NEOX): Q/K are not permuted.
"""

from __future__ import annotations

from .common import Family

FAMILY = Family(
    name="qwen3", hf_model_types=("qwen3",), hf_architecture="Qwen3ForCausalLM", gguf_arch="qwen3",
    gguf_rotary_permute=False, fixed={"qkv_bias": False, "qk_norm": True},
    hf_extra=lambda m: {"attention_bias": False, "use_sliding_window": False, "sliding_window": None,
                        "max_window_layers": m.num_layers},
)
