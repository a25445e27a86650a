"""The planner report's mixture-of-experts section: each figure with the line of why that checks it by hand.

Rows are plain dicts (key, section, label, value, unit, why) that report.py turns into its Figures; empty for a
dense model, so dense reports are unchanged.
"""

from __future__ import annotations

import dataclasses

from .flops import flops_per_token
from .hardware import gpu_spec
from .memory import memory_per_gpu
from .moe import (
    dispatch_bytes_per_layer,
    expert_data,
    expert_ffn,
    expert_tensor,
    layer_pattern,
    moe_of,
    moe_params,
    stage_layers,
)
from .params import padded_vocab_size, parameter_breakdown


def _row(key, section, label, value, unit, why) -> dict:
    return {"key": key, "section": section, "label": label, "value": value, "unit": unit, "why": why}


def moe_rows(cfg) -> list[dict]:
    m, p = cfg.model, cfg.parallel
    moe = moe_of(m)
    if moe is None:
        return []
    b = parameter_breakdown(m)
    x = moe_params(m)
    h, f, E, k = m.hidden_size, expert_ffn(m), moe.num_experts, moe.top_k
    S = f"mixture of experts ({E} experts, top-{k}, {x.moe_layers} of {m.num_layers} layers)"
    e = 4 if m.precision == "fp32" else 2
    tokens = m.seq_length // p.context * cfg.training.micro_batch_size
    pattern = layer_pattern(m)
    moe_on_busiest = max(sum(pattern[i] for i in stage_layers(m.num_layers, p.pipeline, p.virtual_pipeline, r))
                         for r in range(p.pipeline))
    a2a = dispatch_bytes_per_layer(m, p, tokens, e) * moe_on_busiest * cfg.num_microbatches
    padded = padded_vocab_size(m, p.tensor)
    dense_per_token = flops_per_token(_dense_twin(m), padded_vocab=padded)
    mem = memory_per_gpu(cfg)
    etp = expert_tensor(p)
    gpu = gpu_spec(cfg.plan.gpu)
    bandwidth = gpu.hbm_tb_per_s * 1e12
    where = "layers " + (f"{x.dense_layers}…{m.num_layers - 1}" if moe.layer_pattern is None else "per layer_pattern")
    shared_why = f"SwiGLU 3 × {h:,}×{moe.shared_expert_ffn_hidden_size:,}" if x.shared else "no shared expert"
    return [
        _row("moe.layers", S, "MoE layers", x.moe_layers, "",
             f"{where}; the first {x.dense_layers} keep the dense MLP" if moe.layer_pattern is None
             else f"layer_pattern {moe.layer_pattern}"),
        _row("moe.params_per_expert", S, "parameters per expert", x.per_expert, "",
             f"SwiGLU 3 × {h:,}×{f:,}" + (" + biases" if m.add_bias else "")),
        _row("moe.router_params", S, "router per MoE layer", x.router, "", f"{E} experts × hidden {h:,}"),
        _row("moe.shared_params", S, "shared expert per MoE layer", x.shared, "", shared_why),
        _row("moe.mlp_per_moe_layer", S, "MoE MLP per layer", x.mlp_per_moe_layer, "",
             f"router + {E} × {x.per_expert:,} + shared"),
        _row("moe.routed_experts", S, "routed experts, all layers", x.routed_total, "",
             f"{x.moe_layers} × {E} × {x.per_expert:,}: {x.routed_total / b.total:.0%} of the model; EP divides these"),
        _row("params.active", S, "active parameters per token", b.active, "",
             f"total {b.total:,} − {x.moe_layers} × ({E} − {k}) × {x.per_expert:,} experts a token skips"),
        _row("moe.total_over_active", S, "total / active", b.total / b.active, "×",
             "memory scales with total, compute with active"),
        _row("flops.six_n_active_per_token", S, "6·N_active per token", 6.0 * b.active, "FLOPs",
             "2 FLOPs per active parameter forward + 4 backward"),
        _row("flops.dense_equivalent_per_token", S, "FLOPs per token, all experts on", dense_per_token,
             "FLOPs", f"the same model with all {E} experts active: {dense_per_token / flops_per_token(m, padded_vocab=padded):.1f}"
             "× the routed cost"),
        _row("memory.expert_parameters_on_gpu", S, "expert parameters on this GPU", mem.expert_parameters_on_gpu, "",
             f"{moe_on_busiest} MoE layers on the busiest stage × {E} experts × {x.per_expert:,} / (EP {p.expert}"
             f" × ETP {etp})"),
        _row("moe.expert_data_parallel", S, "expert data-parallel size", expert_data(p), "",
             f"world {p.world_size} / (ETP {etp} × EP {p.expert} × PP {p.pipeline}): ranks sharing an expert shard;"
             " the distributed optimizer shards expert Adam state over them"),
        _row("decode.tokens_per_s_bf16_active", S, "decode bound, bf16, batch 1", bandwidth / (2 * b.active), "tok/s",
             f"{gpu.hbm_tb_per_s:g} TB/s / (2 B × {b.active:,} active): one token reads only its experts (a batch"
             " that routes to every expert reads all of them: the bound in the inference section)"),
        _row("comm.dispatch_bytes_per_step", S, f"{moe.dispatcher} bytes per GPU per step", a2a, "B",
             f"{moe_on_busiest} MoE layers × {cfg.num_microbatches} micro-batches × "
             + (f"2 × rows × (2·{e}·h + 4) × (EP−1)/EP, rows = {tokens:,} tokens × top-{k}"
                if moe.dispatcher != "allgather" else "2 × (TP·EP − 1) × tokens × (2·e·h + 5·E)")
             + " (forward dispatch + combine, mirrored in backward; balanced routing)"),
    ]


def _dense_twin(model_cfg):
    """The model with top_k = num_experts: the FLOPs if no expert were skipped."""
    moe = dataclasses.replace(model_cfg.moe, top_k=model_cfg.moe.num_experts)
    return dataclasses.replace(model_cfg, moe=moe)
