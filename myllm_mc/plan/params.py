"""Parameter counts of the megatron-core GPT model a `ModelConfig` describes, by component.

Counted from the shapes megatron-core allocates (GPTModel → TransformerLayer → SelfAttention / MLP), so the model
tests can compare `sum(p.numel())` of a built GPTModel against `parameter_breakdown(cfg.model).total` exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from .moe import moe_params


@dataclass(frozen=True)
class ParamBreakdown:
    """Parameters by component. `norms` includes the final norm; `output_layer` is 0 when tied to the embedding."""

    embedding: int           # word embeddings (+ learned absolute position embeddings)
    attention: int           # all layers: q, k, v, output projections (+ biases)
    mlp: int                 # all layers: fc1 (gate and up for SwiGLU), fc2 (+ biases)
    norms: int               # all layers' two pre-norms + the final norm
    output_layer: int        # untied output projection; 0 when tied
    total: int
    per_layer: int           # one transformer layer: attention + mlp + its two norms
    attention_per_layer: int
    mlp_per_layer: int
    norm_per_layer: int      # one norm's parameters (weight, + bias for LayerNorm)
    vocab: int               # the vocabulary size counted (padded when asked)
    active: int = 0          # parameters one token uses: total less the (experts − top_k) it is not routed to
    moe_layers: int = 0      # layers whose MLP is a mixture of experts (plan/moe.py); mlp_per_layer is the dense one
    mlp_per_moe_layer: int = 0   # router + every routed expert + shared expert
    routed_experts: int = 0  # every routed expert of every MoE layer: what expert parallelism divides


def padded_vocab_size(model_cfg, tensor: int = 1) -> int:
    """Megatron pads the vocabulary to a multiple of make_vocab_size_divisible_by × tensor size.

    Why: each tensor-parallel rank holds an equal vocabulary shard, and multiples of 128 keep the GEMMs aligned.
    """
    multiple = model_cfg.make_vocab_size_divisible_by * tensor
    return -(-model_cfg.vocab_size // multiple) * multiple


def norm_params(model_cfg) -> int:
    """RMSNorm has a scale only; LayerNorm a scale and a shift."""
    return model_cfg.hidden_size * (2 if model_cfg.normalization == "LayerNorm" else 1)


def attention_vector_params_per_layer(model_cfg) -> int:
    """The attention's vectors: biases (q, k, v, o with add_bias; q, k, v with qkv_bias, Qwen2) and the per-head
    q/k norm weights (qk_norm, Qwen3: one head_dim vector each, shared by all heads; megatron counts them under
    self_attention)."""
    m = model_cfg
    query = m.num_attention_heads * m.kv_channels
    key_value = m.num_query_groups * m.kv_channels
    biases = (query + 2 * key_value + m.hidden_size) if m.add_bias else (query + 2 * key_value) if m.qkv_bias else 0
    qk_norm = 2 * m.kv_channels * (2 if m.normalization == "LayerNorm" else 1) if m.qk_norm else 0
    return biases + qk_norm


def attention_params_per_layer(model_cfg) -> int:
    """q: h × (heads·d), k and v: h × (groups·d) each (GQA), output: (heads·d) × h; plus the vectors above."""
    m = model_cfg
    query = m.num_attention_heads * m.kv_channels
    key_value = m.num_query_groups * m.kv_channels
    weights = m.hidden_size * (query + 2 * key_value) + query * m.hidden_size
    return weights + attention_vector_params_per_layer(m)


def mlp_params_per_layer(model_cfg) -> int:
    """SwiGLU has three h × f matrices (gate, up, down), GeLU two; biases on fc1 (2f or f) and fc2 (h)."""
    m = model_cfg
    fc1_width = (2 if m.activation == "swiglu" else 1) * m.ffn_hidden_size
    weights = m.hidden_size * fc1_width + m.ffn_hidden_size * m.hidden_size
    biases = (fc1_width + m.hidden_size) if m.add_bias else 0
    return weights + biases


def parameter_breakdown(model_cfg, padded_vocab: Optional[int] = None) -> ParamBreakdown:
    """Count every parameter of the model; `padded_vocab` counts Megatron's padded embedding rows instead."""
    m = model_cfg
    vocab = m.vocab_size if padded_vocab is None else padded_vocab
    embedding = vocab * m.hidden_size
    if m.position_embedding == "learned_absolute":
        embedding += m.seq_length * m.hidden_size
    attention = attention_params_per_layer(m)
    mlp = mlp_params_per_layer(m)
    experts = moe_params(m)
    mlp_total = experts.dense_layers * mlp + experts.moe_layers * experts.mlp_per_moe_layer
    norm = norm_params(m)
    per_layer = attention + mlp + 2 * norm
    output_layer = 0 if m.tie_embeddings else vocab * m.hidden_size
    norms = m.num_layers * 2 * norm + norm
    total = embedding + m.num_layers * (attention + 2 * norm) + mlp_total + norm + output_layer
    return ParamBreakdown(embedding=embedding, attention=m.num_layers * attention, mlp=mlp_total,
                          norms=norms, output_layer=output_layer, total=total, per_layer=per_layer,
                          attention_per_layer=attention, mlp_per_layer=mlp, norm_per_layer=norm, vocab=vocab,
                          active=total - experts.inactive_total, moe_layers=experts.moe_layers,
                          mlp_per_moe_layer=experts.mlp_per_moe_layer, routed_experts=experts.routed_total)
