"""Mixtral (8x7B, 8x22B): Mistral's attention with a mixture of experts in every layer — a router over
`num_local_experts` SwiGLU experts of `intermediate_size`, `num_experts_per_tok` per token, weights softmax over
all experts then renormalised over the chosen k (common.moe_routing: megatron-core's router_pre_softmax false).

`router_jitter_noise` multiplies the hidden states by uniform noise in training only: refused when non-zero (our
router's jitter, moe_input_jitter_eps, is another formula). `sliding_window` as for Mistral: refused below the
context. llama.cpp runs Mixtral as `llama` with experts (its converter's choice): Q/K permuted, the expert size as
`llama.feed_forward_length`, the expert tensors stacked (`ffn_*_exps`).
"""

from __future__ import annotations

from .common import Family, moe_problems, moe_routing, refuse


def moe_fields(config: dict, where: str) -> dict:
    jitter = float(config.get("router_jitter_noise") or 0.0)
    if jitter:
        raise refuse(where, f"router_jitter_noise={jitter} (multiplicative noise on the router input while training):"
                     " megatron-core's router has no such jitter", "set router_jitter_noise to 0.0")
    return {**moe_routing(config, where, "num_local_experts", renormalise=True),
            "ffn_hidden_size": int(config["intermediate_size"])}


FAMILY = Family(
    name="mixtral", hf_model_types=("mixtral",), hf_architecture="MixtralForCausalLM", gguf_arch="llama",
    gguf_rotary_permute=True, fixed={"qkv_bias": False, "qk_norm": False},
    hf_extra=lambda m: {"sliding_window": None, "num_local_experts": m.moe.num_experts,
                        "num_experts_per_tok": m.moe.top_k, "router_jitter_noise": 0.0,
                        "router_aux_loss_coef": m.moe.aux_loss_coeff, "output_router_logits": False,
                        "intermediate_size": m.moe.ffn_hidden_size or m.ffn_hidden_size},
    moe_fields=moe_fields, moe_problems=lambda m: moe_problems(m, renormalised_only=True, all_layers=True),
)
