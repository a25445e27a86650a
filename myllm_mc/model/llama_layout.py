"""Tensor names and layouts: megatron-core GPTModel (TP=1, PP=1, local spec) ↔ HF Llama-style ↔ GGUF.

Every family the interop registry converts (myllm_mc/interop/families: Llama, Mistral, Qwen2, Qwen3, Qwen3-MoE,
Mixtral) uses these names; the families differ only by optional tensor kinds, flags of the shape: q/k/v biases
(Qwen2, `qkv_bias`, fused into `linear_qkv.bias` with the same per-group row order as the weight), per-head q/k
RMSNorm weights (Qwen3, `qk_norm`: megatron's `q_layernorm`/`k_layernorm`, HF's `q_norm`/`k_norm`) and, in the
layers `moe_layers` marks, a router and `experts` SwiGLU experts in place of the dense MLP (moe_layout.py).

Kept beside the model it maps (torchtitan's state_dict_adapter idea): when a layer changes, this file changes.

Three layout facts carry all the difficulty:
- megatron fuses q, k and v into `linear_qkv`, grouped per KV head: for each of the `groups` KV heads the rows are
  [its heads/groups query heads, its key head, its value head] (each `head_dim` rows);
- megatron fuses SwiGLU's gate and up projections into `linear_fc1` = [gate; up];
- GGUF stores q and k with each head's rotary halves interleaved (llama.cpp rotates adjacent pairs, HF rotates
  the two halves): `to_gguf_rotary` / `from_gguf_rotary` convert, per head.
Everything else is a rename. A tied output layer has no tensor of its own in any of the three formats.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict

import numpy as np
import torch

from . import moe_layout
from .moe_layout import is_moe_layer


@dataclass(frozen=True)
class LlamaShape:
    """The hyperparameters a mapping needs (from a ModelConfig, an HF config.json or GGUF metadata)."""

    num_layers: int
    hidden: int
    heads: int
    groups: int
    head_dim: int
    ffn: int
    vocab: int
    tied: bool
    qkv_bias: bool = False
    qk_norm: bool = False
    experts: int = 0                # routed experts per MoE layer (0: dense model)
    expert_ffn: int = 0
    moe_layers: tuple = ()          # 1 = MoE layer, 0 = dense, per layer
    moe_style: str = "qwen3_moe"    # HF expert names (moe_layout.HF_EXPERT_NAMES)

    @classmethod
    def of(cls, model_cfg) -> "LlamaShape":
        from myllm_mc.config.validate import moe_layer_pattern

        m, moe = model_cfg, model_cfg.moe
        experts = dict(experts=moe.num_experts, expert_ffn=moe.ffn_hidden_size or m.ffn_hidden_size,
                       moe_layers=tuple(moe_layer_pattern(m)),
                       moe_style=moe_layout.expert_style(m.family)) if moe.num_experts else {}
        return cls(m.num_layers, m.hidden_size, m.num_attention_heads, m.num_query_groups, m.kv_channels,
                   m.ffn_hidden_size, m.vocab_size, m.tie_embeddings, qkv_bias=m.qkv_bias, qk_norm=m.qk_norm,
                   **experts)


# per-layer tensors: (megatron suffix, HF suffix, GGUF suffix); q/k/v and gate/up are handled by split/fuse below
_LAYER_NAMES = [
    ("input_layernorm.weight", "input_layernorm.weight", "attn_norm.weight"),
    ("self_attention.linear_proj.weight", "self_attn.o_proj.weight", "attn_output.weight"),
    ("pre_mlp_layernorm.weight", "post_attention_layernorm.weight", "ffn_norm.weight"),
]
_DENSE_DOWN = [("mlp.linear_fc2.weight", "mlp.down_proj.weight", "ffn_down.weight")]
_SPLIT_NAMES = {"q": ("self_attn.q_proj.weight", "attn_q.weight"), "k": ("self_attn.k_proj.weight", "attn_k.weight"),
                "v": ("self_attn.v_proj.weight", "attn_v.weight"), "gate": ("mlp.gate_proj.weight", "ffn_gate.weight"),
                "up": ("mlp.up_proj.weight", "ffn_up.weight")}
_DENSE_SPLIT = ("gate", "up")
_QK_NORM_NAMES = [
    ("self_attention.q_layernorm.weight", "self_attn.q_norm.weight", "attn_q_norm.weight"),
    ("self_attention.k_layernorm.weight", "self_attn.k_norm.weight", "attn_k_norm.weight"),
]
_BIAS_NAMES = {"q": ("self_attn.q_proj.bias", "attn_q.bias"), "k": ("self_attn.k_proj.bias", "attn_k.bias"),
               "v": ("self_attn.v_proj.bias", "attn_v.bias")}
_GLOBAL_NAMES = [  # (megatron, HF, GGUF)
    ("embedding.word_embeddings.weight", "model.embed_tokens.weight", "token_embd.weight"),
    ("decoder.final_layernorm.weight", "model.norm.weight", "output_norm.weight"),
    ("output_layer.weight", "lm_head.weight", "output.weight"),
]


def _layer_renames(shape: LlamaShape, i: int) -> list[tuple[str, str, str]]:
    """(megatron, HF, GGUF) suffixes of layer i's tensors that are a plain rename (an MoE layer's MLP: moe_layout)."""
    return _LAYER_NAMES + (_QK_NORM_NAMES if shape.qk_norm else []) + ([] if is_moe_layer(shape, i) else _DENSE_DOWN)


def _split_keys(shape: LlamaShape, i: int) -> tuple:
    return ("q", "k", "v") + (() if is_moe_layer(shape, i) else _DENSE_SPLIT)


def hf_names(shape: LlamaShape) -> list[str]:
    """Every tensor name an HF checkpoint of this shape must hold."""
    names = [hf for _, hf, _ in _GLOBAL_NAMES if shape.tied is False or hf != "lm_head.weight"]
    for i in range(shape.num_layers):
        names += [f"model.layers.{i}.{hf}" for _, hf, _ in _layer_renames(shape, i)]
        names += [f"model.layers.{i}.{_SPLIT_NAMES[key][0]}" for key in _split_keys(shape, i)]
        if shape.qkv_bias:
            names += [f"model.layers.{i}.{hf}" for hf, _ in _BIAS_NAMES.values()]
        if is_moe_layer(shape, i):
            names += moe_layout.layer_hf_names(shape, i)
    return names


def hf_to_gguf_name(name: str) -> str:
    for _, hf, gguf in _GLOBAL_NAMES:
        if name == hf:
            return gguf
    if name.startswith("model.layers."):
        index, suffix = name[len("model.layers."):].split(".", 1)
        pairs = [(hf, gguf) for _, hf, gguf in _LAYER_NAMES + _QK_NORM_NAMES + _DENSE_DOWN]
        for hf, gguf in pairs + list(_SPLIT_NAMES.values()) + list(_BIAS_NAMES.values()):
            if suffix == hf:
                return f"blk.{index}.{gguf}"
    raise KeyError(f"no GGUF name for HF tensor {name!r}")


def gguf_to_hf_names(shape: LlamaShape) -> Dict[str, str]:
    """{GGUF name: HF name} for every tensor of this shape but experts and routers (moe_layout.unstack_from_gguf)."""
    moe = set().union(*(moe_layout.layer_hf_names(shape, i) for i in range(shape.num_layers)
                        if is_moe_layer(shape, i)))
    return {hf_to_gguf_name(name): name for name in hf_names(shape) if name not in moe}


def split_qkv(qkv: torch.Tensor, shape: LlamaShape):
    """megatron's grouped [q..., k, v] rows per KV head → (q, k, v) in HF's head-major layout (a bias vector too)."""
    if qkv.dim() == 1:
        return tuple(t[:, 0] for t in split_qkv(qkv[:, None], shape))
    per_group = shape.heads // shape.groups
    grouped = qkv.reshape(shape.groups, (per_group + 2) * shape.head_dim, -1)
    q_rows = per_group * shape.head_dim
    q = grouped[:, :q_rows].reshape(shape.heads * shape.head_dim, -1)
    k = grouped[:, q_rows:q_rows + shape.head_dim].reshape(shape.groups * shape.head_dim, -1)
    v = grouped[:, q_rows + shape.head_dim:].reshape(shape.groups * shape.head_dim, -1)
    return q, k, v


def fuse_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, shape: LlamaShape) -> torch.Tensor:
    if q.dim() == 1:
        return fuse_qkv(q[:, None], k[:, None], v[:, None], shape)[:, 0]
    per_group = shape.heads // shape.groups
    hidden = q.shape[-1]
    q = q.reshape(shape.groups, per_group * shape.head_dim, hidden)
    k = k.reshape(shape.groups, shape.head_dim, hidden)
    v = v.reshape(shape.groups, shape.head_dim, hidden)
    return torch.cat([q, k, v], dim=1).reshape(-1, hidden)


def megatron_to_hf(state: Dict[str, torch.Tensor], shape: LlamaShape) -> Dict[str, torch.Tensor]:
    """A TP=1/PP=1 GPTModel state dict → HF Llama tensors (the embedding cut to the real vocabulary)."""
    out = {}
    for meg, hf, _ in _GLOBAL_NAMES:
        if meg in state:
            out[hf] = state[meg][:shape.vocab] if hf in ("model.embed_tokens.weight", "lm_head.weight") else state[meg]
    for i in range(shape.num_layers):
        meg, hf = f"decoder.layers.{i}.", f"model.layers.{i}."
        for meg_suffix, hf_suffix, _ in _layer_renames(shape, i):
            out[hf + hf_suffix] = state[meg + meg_suffix]
        if shape.qkv_bias:
            for key, tensor in zip("qkv", split_qkv(state[meg + "self_attention.linear_qkv.bias"], shape)):
                out[hf + _BIAS_NAMES[key][0]] = tensor
        split = split_qkv(state[meg + "self_attention.linear_qkv.weight"], shape)
        if is_moe_layer(shape, i):
            out.update(moe_layout.layer_to_hf(state, shape, i))
        else:
            split += tuple(state[meg + "mlp.linear_fc1.weight"].chunk(2, dim=0))
        for key, tensor in zip(_split_keys(shape, i), split):
            out[hf + _SPLIT_NAMES[key][0]] = tensor
    missing = set(hf_names(shape)) - set(out)
    if missing:
        raise KeyError(f"the model state lacks {sorted(missing)[:3]} — does the config match the checkpoint?")
    return {name: tensor.contiguous() for name, tensor in out.items()}


def hf_to_megatron(tensors: Dict[str, torch.Tensor], shape: LlamaShape, padded_vocab: int) -> Dict[str, torch.Tensor]:
    """HF Llama tensors → a TP=1/PP=1 GPTModel state dict; embedding rows padded with zeros to `padded_vocab`."""
    def padded(t: torch.Tensor) -> torch.Tensor:
        return torch.cat([t, t.new_zeros(padded_vocab - t.shape[0], t.shape[1])]) if t.shape[0] < padded_vocab else t

    out = {}
    for meg, hf, _ in _GLOBAL_NAMES:
        if hf in tensors and not (shape.tied and hf == "lm_head.weight"):
            out[meg] = padded(tensors[hf]) if hf in ("model.embed_tokens.weight", "lm_head.weight") else tensors[hf]
    for i in range(shape.num_layers):
        meg, hf = f"decoder.layers.{i}.", f"model.layers.{i}."
        for meg_suffix, hf_suffix, _ in _layer_renames(shape, i):
            out[meg + meg_suffix] = tensors[hf + hf_suffix]
        if shape.qkv_bias:
            out[meg + "self_attention.linear_qkv.bias"] = fuse_qkv(*(tensors[hf + _BIAS_NAMES[key][0]]
                                                                     for key in "qkv"), shape)
        q, k, v = (tensors[hf + _SPLIT_NAMES[key][0]] for key in "qkv")
        out[meg + "self_attention.linear_qkv.weight"] = fuse_qkv(q, k, v, shape)
        if is_moe_layer(shape, i):
            out.update(moe_layout.layer_to_megatron(tensors, shape, i))
        else:
            out[meg + "mlp.linear_fc1.weight"] = torch.cat([tensors[hf + _SPLIT_NAMES[k][0]] for k in _DENSE_SPLIT])
    return out


def to_gguf_rotary(weight: np.ndarray, heads: int) -> np.ndarray:
    """HF q/k rows (per head: first half, second half of the rotary pairs) → llama.cpp's interleaved pairs."""
    rows, cols = weight.shape
    return weight.reshape(heads, 2, rows // heads // 2, cols).swapaxes(1, 2).reshape(rows, cols)


def from_gguf_rotary(weight: np.ndarray, heads: int) -> np.ndarray:
    """Inverse of `to_gguf_rotary`."""
    rows, cols = weight.shape
    return weight.reshape(heads, rows // heads // 2, 2, cols).swapaxes(1, 2).reshape(rows, cols)


def rotary_heads(hf_name: str, shape: LlamaShape):
    """How many heads a tensor's rotary permutation runs over (None: not rotated)."""
    if hf_name.endswith("self_attn.q_proj.weight"):
        return shape.heads
    if hf_name.endswith("self_attn.k_proj.weight"):
        return shape.groups
    return None
