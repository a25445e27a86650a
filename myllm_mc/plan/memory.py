"""Predicted memory per GPU for a configured layout, so a layout that cannot fit never launches.

Model state (per parameter held by the rank): weights and gradients in the training precision (2 bytes BF16,
4 fp32), plus Adam state: an FP32 master copy and two FP32 moments = 12 bytes in BF16 (8 in fp32, where the
weights already are the master copy), divided over the data-parallel × context-parallel ranks when the
distributed optimizer shards it (ZeRO-1; megatron-core shards over the DP group that includes CP ranks).

Activations follow Korthikanti et al. 2022, "Reducing Activation Recomputation in Large Transformer Models"
(arXiv:2205.05198, §4), re-derived for this architecture. Their per-layer figure s·b·h·(34 + 5·a·s/h) bytes counts
a GPT layer with MHA, a 4h GeLU MLP and dropout. Redone tensor by tensor for a layer with e bytes per element,
q = heads·d, kv = groups·d (GQA), f = ffn size, no dropout (hence no masks):

    hidden-wide (sequence-parallel region):  two norm inputs + QKV input + fc1 input      = 4 e·s·b·h
    tensor-parallel region:                  Q + K + V + attention output (out-proj input) = e·s·b·(2q + 2kv)
                                             fc1 output (2f SwiGLU, f GeLU) + activation out = e·s·b·(3f | 2f)
    core attention, unfused:                 softmax output, a × s × s per sequence         = e·a·s²·b
    core attention, fused (flash):           log-sum-exp statistics only                    = 4·a·s·b

Check: MHA, f = 4h, GeLU, plus Korthikanti's dropout masks (3sbh + a·s²·b) gives their 34 s·b·h + 5 a·s²·b.
Tensor parallelism divides the TP region by t; sequence parallelism also divides the hidden-wide part by t
(without it, it is replicated: their 10 + 24/t). Context parallelism divides everything by c.
Recompute: none stores all of it; selective recomputes core attention, dropping its s² (or LSE) term; full
stores only each layer's input (e·s·b·h, / t under SP) and rematerializes one layer at a time in backward.

Pipelining: under 1F1B, pipeline rank r holds min(p − r, m) micro-batches of its L/p layers; the interleaved
schedule (v chunks per rank) holds 2(p − r − 1) + (v − 1)p + 1 chunk-micro-batches of L/(p·v) layers — for the
first rank L·(1 + (p − 1)/(p·v)) layer-micro-batches, Korthikanti's interleaving factor. The last stage also
holds the logits: BF16 logits plus the FP32 softmax the cross-entropy keeps for backward, s·b·V/t·(e + 4) bytes.

Mixture of experts (plan/moe.py): an MoE layer's routed experts live on E/EP ranks' worth of experts, each split
over expert-tensor ranks, so their weights and gradients are divided by EP × ETP and their Adam state by the
expert data-parallel size world / (ETP × EP × PP) (megatron's distributed optimizer shards expert parameters over
that group); the router is replicated and the shared expert split over TP like a dense MLP. Activations of an MoE
layer count the routed rows (top_k per token, balanced routing) instead of the dense MLP's.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

from myllm_mc.config.validate import resolve_layout

from .moe import (
    expert_data,
    expert_tensor,
    layer_pattern,
    moe_layer_activation_bytes,
    moe_of,
    moe_params,
    stage_layers,
)
from .params import padded_vocab_size, parameter_breakdown


@dataclass(frozen=True)
class MemoryBreakdown:
    """Bytes on the busiest pipeline stage's GPU. `stage` says which one that is."""

    weights: int
    gradients: int
    optimizer_states: int
    activations: int
    logits: int
    total: int
    stage: str                      # "only" (no pipeline), "first" or "last"
    parameters_on_gpu: int
    layer_microbatches: float       # layer × micro-batch activation sets held at the peak
    activation_bytes_per_layer: int  # one layer, one micro-batch, at the configured recompute (mean over the stage)
    expert_parameters_on_gpu: int = 0   # routed-expert parameters among parameters_on_gpu (÷ EP × ETP)


def uses_flash_attention(model_cfg) -> bool:
    """Fused attention never stores the s×s scores: Transformer Engine (spec te, or auto on a GPU) and the local
    spec's SDPA core attention (`model.attention_backend: sdpa`, the default); only `unfused` stores them."""
    return model_cfg.spec != "local" or getattr(model_cfg, "attention_backend", "sdpa") == "sdpa"


def _element_bytes(model_cfg) -> int:
    return 4 if model_cfg.precision == "fp32" else 2


def layer_activation_bytes(model_cfg, parallel, micro_batch: int, recompute: str, moe: bool = False) -> dict:
    """Activation bytes of one layer for one micro-batch: 'stored' per layer, and the 'working' set of full recompute.
    moe: the layer's MLP is a mixture of experts (plan/moe.py's per-routed-row terms replace the dense MLP's)."""
    m = model_cfg
    e = _element_bytes(m)
    t, c = parallel.tensor, parallel.context
    seq = m.seq_length // c
    tokens = seq * micro_batch
    query = m.num_attention_heads * m.kv_channels
    key_value = m.num_query_groups * m.kv_channels
    mlp_width = 3 * m.ffn_hidden_size if m.activation == "swiglu" else 2 * m.ffn_hidden_size
    hidden_split = t if parallel.sequence_parallel else 1
    hidden_part = 4 * e * tokens * m.hidden_size / hidden_split
    tensor_part = e * tokens * (2 * query + 2 * key_value + (0 if moe else mlp_width)) / t
    if moe:
        tensor_part += moe_layer_activation_bytes(m, parallel, tokens, e)
    if uses_flash_attention(m):
        core = 4 * m.num_attention_heads * tokens / t
    else:
        core = e * m.num_attention_heads * seq * m.seq_length * micro_batch / t
    everything = hidden_part + tensor_part + core
    if recompute == "none":
        return {"stored": everything, "working": 0.0}
    if recompute == "selective":
        return {"stored": hidden_part + tensor_part, "working": 0.0}
    return {"stored": e * tokens * m.hidden_size / hidden_split, "working": everything}


def layer_microbatches_in_flight(num_layers: int, pipeline: int, virtual: Optional[int], microbatches: int,
                                 rank: int) -> float:
    """Layers × micro-batches whose activations pipeline rank `rank` holds at its peak (see module docstring)."""
    if pipeline == 1:
        return float(num_layers)
    if not virtual or virtual == 1:
        return min(pipeline - rank, microbatches) * num_layers / pipeline
    chunks = 2 * (pipeline - rank - 1) + (virtual - 1) * pipeline + 1
    return min(chunks, microbatches * virtual) * num_layers / (pipeline * virtual)


def _layer_params_on_rank(model_cfg, tensor: int, moe: bool = False) -> float:
    """Matrices and column-parallel biases split over TP; norms and row-parallel biases are replicated. An MoE
    layer's routed experts are not here (`_expert_params_on_rank`): its router is replicated, its shared expert
    split over TP like a dense MLP."""
    b = parameter_breakdown(model_cfg)
    if moe:
        experts = moe_params(model_cfg)
        row_biases = model_cfg.hidden_size if model_cfg.add_bias else 0
        split = b.attention_per_layer - row_biases + experts.shared
        return split / tensor + row_biases + experts.router + 2 * b.norm_per_layer
    row_biases = 2 * model_cfg.hidden_size if model_cfg.add_bias else 0
    split = b.attention_per_layer + b.mlp_per_layer - row_biases
    return split / tensor + row_biases + 2 * b.norm_per_layer


def _expert_params_on_rank(model_cfg, parallel) -> float:
    """One MoE layer's routed experts on one rank: E / EP experts, each split over expert-tensor ranks."""
    experts = moe_params(model_cfg)
    moe = moe_of(model_cfg)
    return moe.num_experts * experts.per_expert / (parallel.expert * expert_tensor(parallel))


def memory_per_gpu(cfg, *, recompute: Optional[str] = None) -> MemoryBreakdown:
    """Predicted peak bytes per GPU for `cfg`'s layout; the larger of the first and last pipeline stage.

    `recompute` overrides cfg.model.recompute (the planner compares none / selective / full).
    """
    if cfg.parallel.data == "auto" or cfg.parallel.world_size == "auto":
        cfg = dataclasses.replace(cfg, parallel=resolve_layout(cfg.parallel, None))
    m, p, t = cfg.model, cfg.parallel, cfg.training
    recompute = recompute or m.recompute
    e = _element_bytes(m)
    vocab = padded_vocab_size(m, p.tensor)
    microbatches = cfg.num_microbatches
    pattern = layer_pattern(m)
    dense_layer = layer_activation_bytes(m, p, t.micro_batch_size, recompute)
    moe_layer = layer_activation_bytes(m, p, t.micro_batch_size, recompute, moe=True) if any(pattern) else dense_layer
    dense_params, moe_params_on_rank = _layer_params_on_rank(m, p.tensor), _layer_params_on_rank(m, p.tensor, moe=True)
    expert_params = _expert_params_on_rank(m, p) if any(pattern) else 0.0
    tokens = m.seq_length // p.context * t.micro_batch_size
    hidden_split = p.tensor if p.sequence_parallel else 1
    embedding_rows = vocab * m.hidden_size / p.tensor
    position = m.seq_length * m.hidden_size if m.position_embedding == "learned_absolute" else 0

    candidates = []
    ranks = [("only", 0)] if p.pipeline == 1 else [("first", 0), ("last", p.pipeline - 1)]
    for stage, rank in ranks:
        count = m.num_layers / p.pipeline
        moe_here = sum(pattern[i] for i in stage_layers(m.num_layers, p.pipeline, p.virtual_pipeline, rank))
        params = dense_params * (count - moe_here) + moe_params_on_rank * moe_here
        experts = expert_params * moe_here
        stored = (dense_layer["stored"] * (count - moe_here) + moe_layer["stored"] * moe_here) / count
        working = max(dense_layer["working"], moe_layer["working"] if moe_here else 0.0)
        activations = 0.0
        logits = 0.0
        if rank == 0:
            params += embedding_rows + position
        if rank == p.pipeline - 1:
            params += m.hidden_size * (2 if m.normalization == "LayerNorm" else 1)
            if not m.tie_embeddings or p.pipeline > 1:
                params += embedding_rows   # output layer (a synced copy of the embedding when tied across stages)
            activations += 2 * e * tokens * m.hidden_size / hidden_split   # final-norm and output-layer inputs
            logits = tokens * vocab / p.tensor * (e + 4)
        in_flight = layer_microbatches_in_flight(m.num_layers, p.pipeline, p.virtual_pipeline, microbatches, rank)
        activations += in_flight * stored + working
        optimizer_bytes = 12 if e == 2 else 8
        shards = p.data * p.context if p.distributed_optimizer else 1
        expert_shards = expert_data(p) if p.distributed_optimizer else 1
        weights, grads = e * (params + experts), e * (params + experts)
        optimizer = optimizer_bytes * (params / shards + experts / expert_shards)
        total = weights + grads + optimizer + activations + logits
        candidates.append(MemoryBreakdown(
            weights=int(weights), gradients=int(grads), optimizer_states=int(optimizer),
            activations=int(activations), logits=int(logits), total=int(total), stage=stage,
            parameters_on_gpu=int(params + experts), layer_microbatches=in_flight,
            activation_bytes_per_layer=int(stored), expert_parameters_on_gpu=int(experts)))
    return max(candidates, key=lambda b: b.total)
