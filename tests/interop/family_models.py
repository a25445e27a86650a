"""Tiny random-weight HF models of every supported family, built by transformers itself (nothing downloaded).

Each family's config sets what distinguishes it: Llama 3.x's llama3 RoPE scaling and tied embeddings, Qwen2's
q/k/v biases, Qwen3's q/k norms with head_dim ≠ hidden / heads, Mistral's untied output; the mixture-of-experts
families (MOE_FAMILIES) 4 experts, top-2, in every layer: Qwen3-MoE with q/k norms, expert size 48 ≠ the dense
160, renormalised top-k (norm_topk_prob, as Qwen3-30B-A3B); Mixtral with its w1/w2/w3 experts of 160. Weights are redrawn
(matrices at std 0.15, norms 1 ± 0.2, biases ± 0.2) so that every tensor matters — a zero bias or a unit norm
would map wrongly and still agree — and so that greedy decoding does not collapse onto one token.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

FAMILIES = ("llama", "qwen2", "qwen3", "mistral")
MOE_FAMILIES = ("qwen3_moe", "mixtral")
COMMON = dict(hidden_size=64, intermediate_size=160, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
              vocab_size=1024, max_position_embeddings=64, rms_norm_eps=1e-6)
LLAMA3 = {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
          "original_max_position_embeddings": 8192}
CONFIGS = {
    "llama": dict(model_type="llama", tie_word_embeddings=True, rope_theta=500000.0, rope_scaling=LLAMA3),
    "qwen2": dict(model_type="qwen2", tie_word_embeddings=False, rope_theta=1000000.0),
    "qwen3": dict(model_type="qwen3", tie_word_embeddings=True, head_dim=32, rope_theta=1000000.0),
    "mistral": dict(model_type="mistral", tie_word_embeddings=False, sliding_window=None, head_dim=16),
    "qwen3_moe": dict(model_type="qwen3_moe", tie_word_embeddings=False, head_dim=32, rope_theta=1000000.0,
                      num_experts=4, num_experts_per_tok=2, moe_intermediate_size=48, norm_topk_prob=True,
                      decoder_sparse_step=1, mlp_only_layers=[]),
    "mixtral": dict(model_type="mixtral", tie_word_embeddings=False, sliding_window=None, rope_theta=1000000.0,
                    num_local_experts=4, num_experts_per_tok=2),
}
PROMPT_TEXTS = ["The history of the city", "In 1905, the first", "Water is a", "And the LORD said unto Moses"]


def randomize(model, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=generator)
            if "norm" in name:
                param.copy_(1 + 0.2 * noise)
            elif name.endswith("bias"):
                param.copy_(0.2 * noise)
            else:
                param.copy_(0.15 * noise)


def hf_config(family: str):
    from transformers import AutoConfig

    values = dict(CONFIGS[family])
    return AutoConfig.for_model(values.pop("model_type"), **COMMON, **values)


def save_family(family: str, out: Path, tokenizer_dir: Path, **changes) -> Path:
    """An HF directory (config.json, model.safetensors, tokenizer files) of `family` at `out` (`changes` to its
    config.json keys)."""
    from transformers import AutoModelForCausalLM

    config = hf_config(family)
    for key, value in changes.items():
        setattr(config, key, value)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    randomize(model, seed=(FAMILIES + MOE_FAMILIES).index(family))
    model.save_pretrained(out)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        if (tokenizer_dir / name).is_file():
            shutil.copyfile(tokenizer_dir / name, out / name)
    return out
