"""Qwen3-MoE (Qwen3-30B-A3B, Qwen3-235B-A22B): Qwen3's attention (q/k norms, head_dim ≠ hidden / heads) with a
mixture of experts in place of the MLP — a router over `num_experts` SwiGLU experts of `moe_intermediate_size`,
`num_experts_per_tok` of them per token, no shared expert.

megatron-core: MoELayer (TopKRouter, SequentialMLP on the local spec) in the layers HF routes: layer i is MoE
unless i is in `mlp_only_layers` or (i + 1) is not a multiple of `decoder_sparse_step` (model.moe.layer_pattern;
the others keep a dense MLP of `intermediate_size`). Routing (common.moe_routing): `norm_topk_prob` true →
router_pre_softmax false (top-k logits, softmax over them = softmax then renormalise), false → router_pre_softmax
true (softmax, then top-k). llama.cpp's `qwen3moe` has experts in every layer and renormalises the top-k weights,
so GGUF export refuses dense layers and norm_topk_prob false; its rotation is NEOX (no Q/K permutation).
"""

from __future__ import annotations

from .common import Family, moe_problems, moe_routing, refuse


def moe_fields(config: dict, where: str) -> dict:
    if "num_experts" not in config and "num_local_experts" in config:      # transformers ≥ 5 writes this name
        config = {**config, "num_experts": config["num_local_experts"]}
    layers, step = int(config["num_hidden_layers"]), int(config.get("decoder_sparse_step") or 1)
    dense = {int(i) for i in config.get("mlp_only_layers") or []}
    pattern = [0 if i in dense or (i + 1) % step else 1 for i in range(layers)]
    if not any(pattern):
        raise refuse(where, f"no MoE layer (decoder_sparse_step={step}, mlp_only_layers={sorted(dense)})",
                     "import it as a dense model, or a config with at least one sparse layer")
    try:
        ffn = int(config["moe_intermediate_size"])
    except KeyError:
        raise refuse(where, "moe_intermediate_size missing", "pass a complete config.json") from None
    return {**moe_routing(config, where, "num_experts", renormalise=bool(config.get("norm_topk_prob", False))),
            "ffn_hidden_size": ffn, "layer_pattern": None if all(pattern) else pattern}


def _hf_extra(m) -> dict:
    from myllm_mc.config.validate import moe_layer_pattern

    moe = m.moe
    return {"attention_bias": False, "use_sliding_window": False, "sliding_window": None,
            "max_window_layers": m.num_layers, "num_experts": moe.num_experts, "num_experts_per_tok": moe.top_k,
            "moe_intermediate_size": moe.ffn_hidden_size or m.ffn_hidden_size,
            "norm_topk_prob": not moe.router_pre_softmax, "decoder_sparse_step": 1,
            "mlp_only_layers": [i for i, p in enumerate(moe_layer_pattern(m)) if not p],
            "router_aux_loss_coef": moe.aux_loss_coeff, "output_router_logits": False}


def _gguf_problems(m) -> list:
    from myllm_mc.config.validate import moe_layer_pattern

    wrong = [] if all(moe_layer_pattern(m)) else [f"model.moe.layer_pattern={moe_layer_pattern(m)} (llama.cpp's"
                                                   " qwen3moe has experts in every layer)"]
    if m.moe.router_pre_softmax:
        wrong.append("model.moe.router_pre_softmax=True (norm_topk_prob false: llama.cpp's qwen3moe renormalises"
                     " the top-k weights)")
    return wrong


FAMILY = Family(
    name="qwen3_moe", hf_model_types=("qwen3_moe",), hf_architecture="Qwen3MoeForCausalLM", gguf_arch="qwen3moe",
    gguf_rotary_permute=False, fixed={"qkv_bias": False, "qk_norm": True}, hf_extra=_hf_extra,
    moe_fields=moe_fields, moe_problems=moe_problems, gguf_problems=_gguf_problems,
)
