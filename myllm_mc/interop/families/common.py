"""What the Llama-style families share: the Family record, reading an HF config.json, writing one back.

A family is one module beside this one (llama.py, qwen2.py, ...) that builds a `Family`: which HF `model_type`s
it reads, the architecture it writes, its llama.cpp architecture, and the ModelConfig fields it fixes (`fixed`:
biases, q/k norms). Every field of config.json that would change the computation is either mapped or refused in
one line naming it: a conversion is exact or it does not happen.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

from ..errors import ConversionError

# megatron-core's RotaryEmbedding._apply_scaling takes only the factor; these three are fixed there
LLAMA3_FIXED = {"low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}


@dataclass(frozen=True)
class Family:
    name: str                                   # model.family
    hf_model_types: tuple                       # config.json model_type values read as this family
    hf_architecture: str                        # architectures[0] written on export
    gguf_arch: str                              # llama.cpp's general.architecture
    gguf_rotary_permute: bool                   # llama.cpp rotates adjacent pairs for this arch: permute Q/K rows
    fixed: dict                                 # ModelConfig fields every model of the family has
    hf_extra: Callable[[object], dict] = lambda m: {}   # family-only config.json keys written on export
    check_hf: Callable[[dict, str], None] = lambda config, where: None   # refusals beyond the common ones
    rope_types: tuple = ("default",)            # HF rope types the family may carry
    # mixture of experts: model.moe fields from config.json (None: a dense family), and what the family's layout
    # cannot hold of a model.moe group (export refuses those; `gguf_problems` what llama.cpp cannot run)
    moe_fields: Optional[Callable[[dict, str], dict]] = None
    moe_problems: Callable[[object], list] = lambda m: []
    gguf_problems: Callable[[object], list] = lambda m: []

    def problems(self, model_cfg) -> list[str]:
        """`model.X=value` for each fixed field a config does not have (export refuses those)."""
        m = model_cfg
        wrong = [f"model.{k}={getattr(m, k)}" for k, v in self.fixed.items() if getattr(m, k) != v]
        if m.rope_scaling != "none" and "llama3" not in self.rope_types:
            wrong.append(f"model.rope_scaling={m.rope_scaling}")
        if bool(m.moe.num_experts) != (self.moe_fields is not None):
            wrong.append(f"model.moe.num_experts={m.moe.num_experts}")
        elif m.moe.num_experts:
            wrong += self.moe_problems(m)
        return wrong


def moe_problems(m, renormalised_only: bool = False, all_layers: bool = False) -> list[str]:
    """model.moe fields HF's top-k softmax routers (Qwen3-MoE, Mixtral) cannot express: another score function,
    expert bias, token dropping, shared experts; Mixtral also always renormalises and routes every layer."""
    from myllm_mc.config.validate import moe_layer_pattern

    moe = m.moe
    wrong = [f"model.moe.{k}={getattr(moe, k)}" for k, want in (
        ("router_score", "softmax"), ("expert_bias", False), ("capacity_factor", None),
        ("shared_expert_ffn_hidden_size", 0)) if getattr(moe, k) != want]
    if renormalised_only and moe.router_pre_softmax:
        wrong.append("model.moe.router_pre_softmax=True")
    if all_layers and not all(moe_layer_pattern(m)):
        wrong.append(f"model.moe.layer_pattern={moe_layer_pattern(m)}")
    return wrong


def moe_routing(config: dict, where: str, experts_key: str, renormalise: bool) -> dict:
    """model.moe's routing fields for HF's router: softmax over all experts, top-k, then (if `renormalise`) the
    k weights divided by their sum. megatron-core's TopKRouter gives the same weights two ways: top-k of the logits
    then softmax over those k (router_pre_softmax false) is softmax-then-renormalise; softmax then top-k
    (router_pre_softmax true) keeps the raw probabilities. The top-k set is the same (softmax is monotonic)."""
    try:
        experts, top_k = int(config[experts_key]), int(config["num_experts_per_tok"])
    except KeyError as err:
        raise refuse(where, f"{err.args[0]} missing", "pass a complete config.json") from None
    if renormalise and top_k == 1:
        raise refuse(where, "num_experts_per_tok=1 with renormalised weights (every weight is 1: the router gets no"
                     " gradient, which model.moe refuses)", "import a model with top-k ≥ 2")
    return {"num_experts": experts, "top_k": top_k, "router_score": "softmax", "router_pre_softmax": not renormalise,
            "load_balancing": "aux_loss", "aux_loss_coeff": float(config.get("router_aux_loss_coef", 0.001))}


def refuse(where: str, what: str, fix: str) -> ConversionError:
    return ConversionError(f"{where}: {what} — fix: {fix}")


def rope_base(value) -> int:
    """model.rotary_base is an int (every release uses a whole number); refuse a fractional one rather than round it."""
    if float(value) != int(float(value)):
        raise ConversionError(f"rope theta {value} is not a whole number — fix: model.rotary_base holds integers")
    return int(float(value))


def rope_fields(config: dict, where: str, rope_types: tuple) -> dict:
    """rotary_base / rope_scaling / rope_scaling_factor from `rope_parameters` (transformers ≥ 5) or the older
    `rope_scaling` + `rope_theta`; a type, or a llama3 parameter megatron-core fixes otherwise, is refused."""
    rope = dict(config.get("rope_scaling") or {})
    rope.update(config.get("rope_parameters") or {})
    kind = rope.get("rope_type", rope.get("type", "default")) or "default"
    if kind not in rope_types:
        raise refuse(where, f"rope_scaling.rope_type {kind!r} is not supported for this family ({', '.join(rope_types)}"
                     " are)", "import a model with one of those, or add the scaling to megatron-core first")
    out = {"rotary_base": rope_base(rope.get("rope_theta", config.get("rope_theta", 10000.0))),
           "rope_scaling": "none", "rope_scaling_factor": 8.0}
    if kind == "llama3":
        for key, want in LLAMA3_FIXED.items():
            if float(rope.get(key, want)) != want:
                raise refuse(where, f"rope_scaling.{key}={rope[key]} but megatron-core's llama3 scaling fixes {want:g}",
                             "import a model with Llama 3.x's values (or extend RotaryEmbedding._apply_scaling)")
        out.update(rope_scaling="llama3", rope_scaling_factor=float(rope.get("factor", 8.0)))
    if float(config.get("partial_rotary_factor", 1.0) or 1.0) != 1.0:
        raise refuse(where, f"partial_rotary_factor={config['partial_rotary_factor']} (RoPE on part of each head)",
                     "import a model whose RoPE covers the whole head")
    return out


def sliding_window_check(config: dict, where: str, seq_length: int) -> None:
    """Our attention has no sliding window: accept one only where it never takes effect (≥ the context)."""
    layer_types = config.get("layer_types") or []
    if any(t != "full_attention" for t in layer_types):
        raise refuse(where, f"layer_types {sorted(set(layer_types))} (sliding-window layers): our attention has no"
                     " sliding window", "import a model with full attention in every layer")
    if config.get("model_type") in ("qwen2", "qwen3", "qwen3_moe") and not config.get("use_sliding_window", False):
        return                                          # Qwen's sliding_window is inert unless use_sliding_window
    window = config.get("sliding_window")
    if window is not None and int(window) < seq_length:
        raise refuse(where, f"sliding_window={window} < max_position_embeddings {seq_length}: our attention has no"
                     " sliding window", "set sliding_window to null (exact for sequences up to the window) or"
                     " import a full-attention model")


def hf_fields(family: Family, config: dict, where: str) -> dict:
    """ModelConfig fields of an HF config.json of `family` (the common checks, then the family's own)."""
    if config.get("hidden_act", "silu") != "silu":
        raise refuse(where, f"hidden_act {config.get('hidden_act')!r}: the MLP is SwiGLU (silu)",
                     "import a SiLU-gated model")
    for key in ("mlp_bias", "attention_bias"):
        if config.get(key):
            raise refuse(where, f"{key}=true (a bias on every {key[:-5]} projection) is not in the {family.name}"
                         " layout", f"import a model with {key} false")
    family.check_hf(config, where)
    try:
        heads = int(config["num_attention_heads"])
        seq = int(config.get("max_position_embeddings", 2048))
        fields = dict(
            num_layers=int(config["num_hidden_layers"]), hidden_size=int(config["hidden_size"]),
            num_attention_heads=heads, num_query_groups=int(config.get("num_key_value_heads") or heads),
            kv_channels=int(config.get("head_dim") or int(config["hidden_size"]) // heads),
            ffn_hidden_size=int(config["intermediate_size"]), vocab_size=int(config["vocab_size"]), seq_length=seq,
            norm_epsilon=float(config.get("rms_norm_eps", 1e-6)),
            tie_embeddings=bool(config.get("tie_word_embeddings", False)), normalization="RMSNorm",
            activation="swiglu", position_embedding="rope", add_bias=False, family=family.name, **family.fixed)
    except KeyError as err:
        raise refuse(where, f"{err.args[0]} missing", "pass a complete config.json") from None
    sliding_window_check(config, where, seq)
    fields.update(rope_fields(config, where, family.rope_types))
    if family.moe_fields is not None:
        fields["moe"] = family.moe_fields(config, where)
    return fields


def hf_config(family: Family, model_cfg) -> dict:
    """The architecture keys of config.json for `model_cfg` (token ids and dtype are the exporter's)."""
    m = model_cfg
    rope = {"rope_type": "default", "rope_theta": float(m.rotary_base)}
    if m.rope_scaling == "llama3":
        rope.update(rope_type="llama3", factor=m.rope_scaling_factor, **LLAMA3_FIXED)
    return {
        "architectures": [family.hf_architecture], "model_type": family.hf_model_types[0],
        "hidden_size": m.hidden_size, "intermediate_size": m.ffn_hidden_size, "num_hidden_layers": m.num_layers,
        "num_attention_heads": m.num_attention_heads, "num_key_value_heads": m.num_query_groups,
        "head_dim": m.kv_channels, "vocab_size": m.vocab_size, "max_position_embeddings": m.seq_length,
        "rms_norm_eps": m.norm_epsilon, "hidden_act": "silu", "attention_dropout": 0.0,
        # transformers ≥ 5 reads rope_parameters, earlier versions rope_theta (+ rope_scaling)
        "rope_theta": float(m.rotary_base), "rope_parameters": rope,
        **({"rope_scaling": {k: v for k, v in rope.items() if k != "rope_theta"}} if m.rope_scaling != "none" else {}),
        "tie_word_embeddings": m.tie_embeddings, "initializer_range": m.init_std, "use_cache": True,
        **family.hf_extra(m),
    }


@dataclass(frozen=True)
class Refused:
    """A family that megatron-core's layers cannot express exactly: named, with the first missing piece."""

    name: str
    hf_model_types: tuple
    piece: str                   # what megatron-core lacks, in one phrase
    needs: str                   # what it would take
    gguf_arches: tuple = field(default_factory=tuple)

    def error(self, where: str, model_type: Optional[str] = None) -> ConversionError:
        return refuse(where, f"model_type {model_type or self.hf_model_types[0]!r} ({self.name}) is refused, not"
                      f" approximated: {self.piece}", self.needs)
