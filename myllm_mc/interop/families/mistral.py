"""Mistral 7B (v0.1–v0.3 shapes): Llama's layout under another name; llama.cpp runs it as `llama`.

v0.1's 4,096-token sliding window is refused (our attention has none); v0.2/v0.3 set `sliding_window: null`.
Exported GGUF files say `llama`, so a GGUF import comes back as the llama family (same tensors, same numbers).
"""

from __future__ import annotations

from .common import Family

FAMILY = Family(
    name="mistral", hf_model_types=("mistral",), hf_architecture="MistralForCausalLM", gguf_arch="llama",
    gguf_rotary_permute=True, fixed={"qkv_bias": False, "qk_norm": False},
    hf_extra=lambda m: {"sliding_window": None},
)
