"""Mixture-of-experts terms of the planner: which layers route, what each routed token touches, where the expert
weights live under expert parallelism, and what the token exchange costs. Pure functions of the config.

Shapes are megatron-core's (MoELayer → TopKRouter + SequentialMLP/TEGroupedMLP + SharedExpertMLP):

    router          E × h            (+ E bias with add_bias), replicated on every tensor/expert rank
    routed expert   SwiGLU h × 2f_e + f_e × h (+ 2f_e + h biases), E of them per MoE layer, split over EP × ETP
    shared expert   SwiGLU h × 2f_s + f_s × h, always on, split over TP like a dense MLP (no biases: megatron
                    refuses them there)

A token touches the router, top_k routed experts and the shared expert: that is its active MLP. Dense layers
(`moe.first_dense_layers`, `moe.layer_pattern`) keep the dense MLP of `model.ffn_hidden_size`.
"""

from __future__ import annotations

from dataclasses import dataclass

from myllm_mc.config.validate import moe_layer_pattern


def moe_of(model_cfg):
    """The `model.moe` group, or None for a dense model (and for the planner's shape-only model views)."""
    moe = getattr(model_cfg, "moe", None)
    return moe if moe is not None and moe.num_experts else None


def layer_pattern(model_cfg) -> list:
    """1 = MoE layer, 0 = dense, per layer (all 0 without experts)."""
    return moe_layer_pattern(model_cfg) if moe_of(model_cfg) else [0] * model_cfg.num_layers


def expert_ffn(model_cfg) -> int:
    moe = moe_of(model_cfg)
    return moe.ffn_hidden_size if moe.ffn_hidden_size is not None else model_cfg.ffn_hidden_size


def swiglu_params(hidden: int, ffn: int, bias: bool) -> int:
    """gate+up h × 2f and down f × h (GeLU: h × f and f × h); biases 2f (f) + h."""
    return 3 * hidden * ffn + ((2 * ffn + hidden) if bias else 0)


@dataclass(frozen=True)
class MoEParams:
    """Per MoE layer and in total. `routed_total` is every routed expert of every MoE layer (what EP divides)."""

    moe_layers: int
    dense_layers: int
    per_expert: int
    router: int
    shared: int
    mlp_per_moe_layer: int       # router + all routed experts + shared expert
    active_mlp_per_moe_layer: int  # router + top_k routed experts + shared expert
    routed_total: int
    inactive_total: int          # (E − top_k) experts per MoE layer: what a token does not touch


def moe_params(model_cfg) -> MoEParams:
    m, moe = model_cfg, moe_of(model_cfg)
    pattern = layer_pattern(m)
    moe_layers = sum(pattern)
    if moe is None:
        return MoEParams(0, m.num_layers, 0, 0, 0, 0, 0, 0, 0)
    gated = getattr(m, "activation", "swiglu") == "swiglu"
    f = expert_ffn(m)
    per_expert = swiglu_params(m.hidden_size, f, m.add_bias) if gated else \
        2 * m.hidden_size * f + ((f + m.hidden_size) if m.add_bias else 0)
    router = moe.num_experts * m.hidden_size + (moe.num_experts if m.add_bias else 0)
    shared = 3 * m.hidden_size * moe.shared_expert_ffn_hidden_size if moe.shared_expert_ffn_hidden_size else 0
    return MoEParams(
        moe_layers=moe_layers, dense_layers=m.num_layers - moe_layers, per_expert=per_expert, router=router,
        shared=shared, mlp_per_moe_layer=router + moe.num_experts * per_expert + shared,
        active_mlp_per_moe_layer=router + moe.top_k * per_expert + shared,
        routed_total=moe_layers * moe.num_experts * per_expert,
        inactive_total=moe_layers * (moe.num_experts - moe.top_k) * per_expert)


def moe_mlp_flops_bracket(model_cfg) -> float:
    """Per token, the MoE layers' GEMM multiply-adds (before Megatron's 3 × 2): router h·E, top_k experts
    3·h·f_e each (SwiGLU), shared expert 3·h·f_s. Megatron-LM's formula leaves out the router (h·E ≪ the rest)."""
    moe = moe_of(model_cfg)
    if moe is None:
        return 0.0
    h = model_cfg.hidden_size
    factor = 3 if getattr(model_cfg, "activation", "swiglu") == "swiglu" else 2
    per_layer = h * moe.num_experts + factor * h * expert_ffn(model_cfg) * moe.top_k + \
        3 * h * moe.shared_expert_ffn_hidden_size
    return sum(layer_pattern(model_cfg)) * per_layer


def expert_tensor(parallel) -> int:
    return parallel.expert_tensor if parallel.expert_tensor is not None else parallel.tensor


def expert_data(parallel) -> int:
    """Ranks holding the same expert shard: world / (ETP × EP × PP) (megatron's expert data-parallel group)."""
    return parallel.world_size // (expert_tensor(parallel) * parallel.expert * parallel.pipeline)


def stage_layers(num_layers: int, pipeline: int, virtual, rank: int) -> list:
    """Global indices of the layers pipeline rank `rank` builds (megatron's even split, virtual chunks
    interleaved: chunk c of rank r holds layers c·L/v + r·L/(p·v) …)."""
    v = virtual or 1
    per_chunk = num_layers // (pipeline * v)
    return [c * num_layers // v + rank * per_chunk + i for c in range(v) for i in range(per_chunk)]


def routed_rows(model_cfg, parallel, tokens: int) -> float:
    """Rows (token copies) one rank's experts process per MoE layer and micro-batch, with balanced routing:
    each of the rank's tokens goes to top_k experts; under sequence parallelism a rank routes tokens / TP and
    expert-tensor parallelism gathers ETP ranks' tokens; padding to capacity makes it capacity × that."""
    moe = moe_of(model_cfg)
    hidden_split = parallel.tensor if parallel.sequence_parallel else 1
    rows = tokens * moe.top_k * expert_tensor(parallel) / hidden_split
    if moe.capacity_factor is not None and moe.pad_to_capacity:
        rows *= moe.capacity_factor
    return rows


def moe_layer_activation_bytes(model_cfg, parallel, tokens: int, e: int) -> float:
    """Activations one MoE layer stores per micro-batch beyond attention and norms: per routed row the permuted
    input (h) and the expert output kept for the probability-weighted combine (h), fc1's 2f_e and SwiGLU's f_e
    outputs (/ ETP); the router's fp32 logits and probabilities (2 × 4 B × E per token); the shared expert as a
    dense MLP of f_s (/ TP)."""
    moe = moe_of(model_cfg)
    hidden_split = parallel.tensor if parallel.sequence_parallel else 1
    rows = routed_rows(model_cfg, parallel, tokens)
    routed = e * rows * (2 * model_cfg.hidden_size + 3 * expert_ffn(model_cfg) / expert_tensor(parallel))
    router = 8 * moe.num_experts * tokens / hidden_split
    shared = e * tokens * 3 * moe.shared_expert_ffn_hidden_size / parallel.tensor
    return routed + router + shared


def dispatch_bytes_per_layer(model_cfg, parallel, tokens: int, e: int) -> float:
    """Bytes one rank sends for one MoE layer and micro-batch, forward and backward.

    alltoall: the dispatch sends each routed row's hidden state (e·h) and probability (4 B) to the expert's rank,
    the combine sends the expert output back (e·h); (EP − 1)/EP of the rows leave the rank with balanced routing;
    backward repeats both: 2 × rows × (2·e·h + 4) × (EP − 1)/EP.
    allgather: hidden states (e·h), probabilities and routing map (5 B × E) are all-gathered over the TP × EP group
    and the output reduce-scattered back (e·h); a ring sends (n − 1) × its share each way; backward mirrors it.
    """
    moe = moe_of(model_cfg)
    if moe is None:
        return 0.0
    h, ep = model_cfg.hidden_size, parallel.expert
    hidden_split = parallel.tensor if parallel.sequence_parallel else 1
    local_tokens = tokens / hidden_split
    if moe.dispatcher == "allgather":
        n = parallel.tensor * ep
        return 2 * (n - 1) * local_tokens * (2 * e * h + 5 * moe.num_experts)
    rows = local_tokens * moe.top_k
    return 2 * rows * (2 * e * h + 4) * (ep - 1) / ep
