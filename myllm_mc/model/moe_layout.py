"""Expert weights: megatron-core's MoELayer (local spec: TopKRouter + SequentialMLP) ↔ HF Qwen3-MoE / Mixtral ↔
GGUF (llama.cpp). The dense part of every layer is llama_layout's; this module maps the MLP of an MoE layer.

    megatron (per MoE layer i)                       HF                                      GGUF
    mlp.router.weight               [E, h]           {block}.gate.weight                     blk.i.ffn_gate_inp.weight
    mlp.experts.local_experts.j.linear_fc1.weight    {block}.experts.j.{gate}.weight  ┐      blk.i.ffn_gate_exps.weight [E, f, h]
                                    [2f, h] = [gate; up]   {block}.experts.j.{up}.weight    ┘      blk.i.ffn_up_exps.weight   [E, f, h]
    mlp.experts.local_experts.j.linear_fc2.weight    {block}.experts.j.{down}.weight         blk.i.ffn_down_exps.weight [E, h, f]

HF names per family: Qwen3-MoE `mlp.gate`, `mlp.experts.j.gate_proj/up_proj/down_proj`; Mixtral
`block_sparse_moe.gate`, `block_sparse_moe.experts.j.w1/w3/w2` (w1 = gate, w3 = up, w2 = down) — the names of
the released checkpoints, which transformers ≥ 5 still writes and fuses itself on load. GGUF stacks each layer's
experts into one 3-D tensor per projection (llama.cpp's `*_exps`; numpy order [expert, rows, columns]).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict

import torch


@dataclass(frozen=True)
class ExpertNames:
    block: str      # the MLP module of an MoE layer
    gate: str
    up: str
    down: str


HF_EXPERT_NAMES = {
    "qwen3_moe": ExpertNames("mlp", "gate_proj", "up_proj", "down_proj"),
    "mixtral": ExpertNames("block_sparse_moe", "w1", "w3", "w2"),
}


def expert_style(family: str) -> str:
    """The HF expert names of a model.family (a new MoE family with other names adds its entry above); models
    trained here use Qwen3-MoE's, the names most MoE releases share."""
    return family if family in HF_EXPERT_NAMES else "qwen3_moe"


GGUF_EXPERTS = {"gate": "ffn_gate_exps.weight", "up": "ffn_up_exps.weight", "down": "ffn_down_exps.weight"}
GGUF_ROUTER = "ffn_gate_inp.weight"
ROUTER = "mlp.router.weight"


def _names(shape) -> ExpertNames:
    return HF_EXPERT_NAMES[shape.moe_style]


def is_moe_layer(shape, i: int) -> bool:
    return bool(shape.experts) and bool(shape.moe_layers[i])


def _expert_hf(shape, i: int, j: int, kind: str) -> str:
    n = _names(shape)
    return f"model.layers.{i}.{n.block}.experts.{j}.{getattr(n, kind)}.weight"


def router_hf(shape, i: int) -> str:
    return f"model.layers.{i}.{_names(shape).block}.gate.weight"


def _expert_meg(i: int, j: int, fc: str) -> str:
    return f"decoder.layers.{i}.mlp.experts.local_experts.{j}.{fc}.weight"


def layer_hf_names(shape, i: int) -> list[str]:
    """HF names of MoE layer i's MLP: the router, then each expert's gate, up and down."""
    return [router_hf(shape, i)] + [_expert_hf(shape, i, j, kind) for j in range(shape.experts)
                                    for kind in ("gate", "up", "down")]


def layer_to_hf(state: Dict[str, torch.Tensor], shape, i: int) -> Dict[str, torch.Tensor]:
    out = {router_hf(shape, i): state[f"decoder.layers.{i}.{ROUTER}"]}
    for j in range(shape.experts):
        gate, up = state[_expert_meg(i, j, "linear_fc1")].chunk(2, dim=0)
        out[_expert_hf(shape, i, j, "gate")] = gate
        out[_expert_hf(shape, i, j, "up")] = up
        out[_expert_hf(shape, i, j, "down")] = state[_expert_meg(i, j, "linear_fc2")]
    return out


def layer_to_megatron(tensors: Dict[str, torch.Tensor], shape, i: int) -> Dict[str, torch.Tensor]:
    out = {f"decoder.layers.{i}.{ROUTER}": tensors[router_hf(shape, i)]}
    for j in range(shape.experts):
        out[_expert_meg(i, j, "linear_fc1")] = torch.cat([tensors[_expert_hf(shape, i, j, "gate")],
                                                          tensors[_expert_hf(shape, i, j, "up")]], dim=0)
        out[_expert_meg(i, j, "linear_fc2")] = tensors[_expert_hf(shape, i, j, "down")]
    return out


def stack_for_gguf(tensors: Dict[str, torch.Tensor], shape) -> Dict[str, torch.Tensor]:
    """HF-named tensors → the same dict with each MoE layer's experts replaced by llama.cpp's GGUF-named tensors
    (the router as `blk.i.ffn_gate_inp.weight`, the experts stacked per projection); dense tensors untouched."""
    out = dict(tensors)
    for i in range(shape.num_layers):
        if not is_moe_layer(shape, i):
            continue
        out[f"blk.{i}.{GGUF_ROUTER}"] = out.pop(router_hf(shape, i))
        for kind, gguf in GGUF_EXPERTS.items():
            out[f"blk.{i}.{gguf}"] = torch.stack([out.pop(_expert_hf(shape, i, j, kind))
                                                  for j in range(shape.experts)])
    return out


def unstack_from_gguf(name: str, array, shape) -> Dict[str, object]:
    """A GGUF expert tensor (`blk.i.ffn_*_exps.weight` or the router) → {HF name: array}; {} for other names."""
    if not name.startswith("blk."):
        return {}
    index, suffix = name[len("blk."):].split(".", 1)
    i = int(index)
    if not is_moe_layer(shape, i):
        return {}
    if suffix == GGUF_ROUTER:
        return {router_hf(shape, i): array}
    for kind, gguf in GGUF_EXPERTS.items():
        if suffix == gguf:
            return {_expert_hf(shape, i, j, kind): array[j] for j in range(shape.experts)}
    return {}
