"""LoRA's numbers, from the config alone (pure Python): which layers get adapters, their shapes, the trainable
parameter count and the training memory with a frozen base.

An adapter on a linear layer of input size n and output size m adds A (r × n) and B (m × r): r·(n + m) parameters.
megatron-core fuses q, k, v into one `linear_qkv` (m = (heads + 2·groups)·d) and SwiGLU's gate and up into one
`linear_fc1` (m = 2f), so one adapter covers each fused layer. Memory (per GPU, busiest stage): the frozen base in
its dtype (no gradient, no optimizer state), the adapters in the same dtype with their gradients, fp32 main copies
and Adam moments (12 bytes per adapter parameter in bf16, 8 in fp32, sharded by the distributed optimizer), and the
activations and logits of full fine-tuning (the base's activations are still stored for the backward pass through
it, plus each adapter's rank-r intermediate, which is r/n of its input and left out).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Tuple

from .memory import memory_per_gpu
from .params import parameter_breakdown

TARGETS = ("linear_qkv", "linear_proj", "linear_fc1", "linear_fc2")
ALL_LINEAR = "all-linear"
COLUMN_PARALLEL = ("linear_qkv", "linear_fc1")      # output split over TP; linear_proj / linear_fc2 split the input


def expand_targets(targets) -> List[str]:
    """The target list with `all-linear` expanded, in megatron's order, duplicates dropped."""
    names = []
    for name in targets:
        names += list(TARGETS) if name == ALL_LINEAR else [name]
    return [t for t in TARGETS if t in names]


def layer_dims(model_cfg) -> Dict[str, Tuple[int, int]]:
    """{target: (input size, output size)} of each linear layer of one transformer layer (whole, TP=1)."""
    m = model_cfg
    query = m.num_attention_heads * m.kv_channels
    qkv = query + 2 * m.num_query_groups * m.kv_channels
    return {"linear_qkv": (m.hidden_size, qkv), "linear_proj": (query, m.hidden_size),
            "linear_fc1": (m.hidden_size, 2 * m.ffn_hidden_size), "linear_fc2": (m.ffn_hidden_size, m.hidden_size)}


def adapted_layers(model_cfg, lora_cfg) -> List[int]:
    return sorted(set(lora_cfg.layers)) if lora_cfg.layers is not None else list(range(model_cfg.num_layers))


def adapter_params_per_layer(model_cfg, lora_cfg) -> int:
    dims = layer_dims(model_cfg)
    return sum(lora_cfg.rank * sum(dims[t]) for t in expand_targets(lora_cfg.targets))


def adapter_params(model_cfg, lora_cfg) -> int:
    """Trainable parameters of the whole model with LoRA (every stage, every TP shard counted once)."""
    return adapter_params_per_layer(model_cfg, lora_cfg) * len(adapted_layers(model_cfg, lora_cfg))


def adapter_params_on_rank(model_cfg, lora_cfg, tensor: int, pipeline: int) -> float:
    """Adapter parameters one GPU holds (the busiest stage on average): the sharded factor of each adapter is split
    over TP (B of a column-parallel layer, A of a row-parallel one), the other replicated."""
    dims = layer_dims(model_cfg)
    per_layer = 0.0
    for target in expand_targets(lora_cfg.targets):
        n, m = dims[target]
        per_layer += lora_cfg.rank * (n + m / tensor if target in COLUMN_PARALLEL else n / tensor + m)
    return per_layer * len(adapted_layers(model_cfg, lora_cfg)) / pipeline


@dataclass(frozen=True)
class LoRAMemory:
    """Bytes per GPU for LoRA training next to full fine-tuning of the same layout (busiest stage)."""

    trainable: int                  # adapter parameters, whole model
    total: int                      # base + adapters, whole model
    base_weights: int               # frozen base on this GPU, in the training dtype
    adapter_weights: int
    adapter_gradients: int
    adapter_optimizer_states: int
    activations: int                # + logits, as full fine-tuning
    lora_total: int
    full_total: int                 # full fine-tuning's prediction (plan/memory.py)

    @property
    def ratio(self) -> float:
        return self.lora_total / self.full_total


def lora_memory(cfg, full) -> LoRAMemory:
    """`full` is plan.memory.memory_per_gpu(cfg) for the same config (full fine-tuning)."""
    m, p, lora = cfg.model, cfg.parallel, cfg.align.lora
    e = 4 if m.precision == "fp32" else 2
    on_rank = adapter_params_on_rank(m, lora, p.tensor, p.pipeline)
    shards = p.data * p.context if p.distributed_optimizer else 1
    optimizer_bytes = 12 if e == 2 else 8
    adapter_weights, adapter_grads = e * on_rank, e * on_rank    # as plan/memory.py counts full fine-tuning's
    adapter_optimizer = optimizer_bytes * on_rank / shards
    activations = full.activations + full.logits
    lora_total = full.weights + adapter_weights + adapter_grads + adapter_optimizer + activations
    trainable = adapter_params(m, lora)
    return LoRAMemory(trainable=trainable, total=parameter_breakdown(m).total + trainable,
                      base_weights=int(full.weights), adapter_weights=int(adapter_weights),
                      adapter_gradients=int(adapter_grads), adapter_optimizer_states=int(adapter_optimizer),
                      activations=int(activations), lora_total=int(lora_total), full_total=int(full.total))


def lora_rows(cfg) -> List[dict]:
    """The planner's LoRA section (`myllm plan CONFIG --set align.lora.enabled=true`): Figure fields per row."""
    lora, m = cfg.align.lora, cfg.model
    if not lora.enabled:
        return []
    mem = lora_memory(cfg, memory_per_gpu(cfg))
    layers = adapted_layers(m, lora)
    targets = expand_targets(lora.targets)
    dims = layer_dims(m)
    S = (f"LoRA (rank {lora.rank}, alpha {lora.alpha:g}, {', '.join(targets)}, {len(layers)} of {m.num_layers}"
         " layers; the base frozen)")
    e = 4 if m.precision == "fp32" else 2
    per_module = ", ".join(f"{t} {lora.rank}×({dims[t][0]:,}+{dims[t][1]:,})" for t in targets)

    def row(key, label, value, unit, why):
        return {"key": f"lora.{key}", "section": S, "label": label, "value": value, "unit": unit, "why": why}

    return [
        row("trainable", "trainable parameters", mem.trainable, "",
            f"r·(in + out) per adapted linear: {per_module}, × {len(layers)} layers"),
        row("trainable_share", "share of the model", mem.trainable / mem.total, "",
            f"of {mem.total:,} parameters (base + adapters)"),
        row("base_weights", "frozen base weights", mem.base_weights, "GiB",
            f"{e} B per base parameter on this GPU; no gradient, no optimizer state"),
        row("adapter_state", "adapters + grads + optimizer", mem.adapter_weights + mem.adapter_gradients
            + mem.adapter_optimizer_states, "GiB",
            f"weights {e} B + gradients {e} B + Adam {12 if e == 2 else 8} B (sharded over DP×CP) per adapter parameter"),
        row("activations", "activations + logits", mem.activations, "GiB",
            "as full fine-tuning: the backward pass still runs through the frozen base (its weight gradients are"
            " not computed)"),
        row("total", "total, LoRA", mem.lora_total, "GiB", "sum on the busiest stage"),
        row("full_total", "total, full fine-tuning", mem.full_total, "GiB", "the memory section above"),
        row("ratio", "LoRA / full fine-tuning", mem.ratio, "×", "training memory per GPU"),
    ]
