"""Checks that a run can work, done at load time so a bad layout never starts a process.

Each rule mirrors an assertion deep inside megatron-core (parallel_state, TransformerConfig, the schedules),
raised here instead as one line that names the key and the fix.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional

from .errors import ConfigError
from .schema import Config, ParallelConfig


def resolve_layout(parallel: ParallelConfig, world_size: Optional[int]) -> ParallelConfig:
    """Fill in `world_size` and `data` when they are `auto`.

    world_size: the launcher's value wins when given; else the config's; else (both auto) the product of the
    explicit sizes, i.e. data=1 — the single-process default of `myllm config show`.
    """
    p = parallel
    model_parallel = p.tensor * p.pipeline * p.context
    if world_size is not None:
        if p.world_size != "auto" and p.world_size != world_size:
            raise ConfigError(
                f"parallel.world_size: config says {p.world_size} but the launcher started {world_size} processes"
                f" — fix: set parallel.world_size=auto or launch {p.world_size} processes")
        world = world_size
    elif p.world_size != "auto":
        world = p.world_size
    else:
        world = model_parallel * (p.data if p.data != "auto" else 1)
    if p.data == "auto":
        if world % model_parallel:
            raise ConfigError(
                f"parallel: world size {world} is not divisible by tensor {p.tensor} × pipeline {p.pipeline}"
                f" × context {p.context} = {model_parallel} — fix: change those sizes or the number of processes")
        data = world // model_parallel
    else:
        data = p.data
    if model_parallel * data != world:
        raise ConfigError(
            f"parallel: world size {world} ≠ tensor {p.tensor} × pipeline {p.pipeline} × context {p.context}"
            f" × data {data} = {model_parallel * data} — fix: set parallel.data=auto or make the product {world}")
    return dataclasses.replace(p, world_size=world, data=data)


def _positive(cfg: Config) -> None:
    checks = {
        "model.num_layers": cfg.model.num_layers, "model.hidden_size": cfg.model.hidden_size,
        "model.num_attention_heads": cfg.model.num_attention_heads,
        "model.num_query_groups": cfg.model.num_query_groups, "model.kv_channels": cfg.model.kv_channels,
        "model.ffn_hidden_size": cfg.model.ffn_hidden_size, "model.vocab_size": cfg.model.vocab_size,
        "model.seq_length": cfg.model.seq_length, "parallel.tensor": cfg.parallel.tensor,
        "parallel.pipeline": cfg.parallel.pipeline, "parallel.context": cfg.parallel.context,
        "training.micro_batch_size": cfg.training.micro_batch_size,
        "training.global_batch_size": cfg.training.global_batch_size, "training.steps": cfg.training.steps,
        "logging.log_interval": cfg.logging.log_interval, "checkpoint.save_interval": cfg.checkpoint.save_interval,
    }
    for key, value in checks.items():
        if value < 1:
            raise ConfigError(f"{key}: must be at least 1, got {value} — fix: --set {key}=1 or more")
    for key, value in {"parallel.world_size": cfg.parallel.world_size, "parallel.data": cfg.parallel.data}.items():
        if value != "auto" and value < 1:
            raise ConfigError(f"{key}: must be at least 1 or auto, got {value} — fix: --set {key}=auto")


def _check_model(cfg: Config) -> None:
    m = cfg.model
    if m.activation != "swiglu" or m.position_embedding != "rope":
        # the planner still prices these variants (dataclasses.replace), but no stage builds them
        raise ConfigError(f"model.activation={m.activation}, model.position_embedding={m.position_embedding}:"
                          " MyLLM is built with swiglu and rope only — fix: --set model.activation=swiglu"
                          " model.position_embedding=rope")
    if m.num_attention_heads % m.num_query_groups:
        raise ConfigError(
            f"model.num_query_groups: {m.num_query_groups} does not divide num_attention_heads"
            f" {m.num_attention_heads} — fix: use a divisor of {m.num_attention_heads}")
    if not (math.isfinite(m.rope_scaling_factor) and m.rope_scaling_factor >= 1):
        raise ConfigError(f"model.rope_scaling_factor: {m.rope_scaling_factor} must be a number ≥ 1 — fix: e.g."
                          " --set model.rope_scaling_factor=8 (Llama 3.1) or 32 (Llama 3.2)")
    if m.add_bias and m.qkv_bias:
        raise ConfigError("model.qkv_bias: model.add_bias already puts a bias on q, k and v — fix: --set"
                          " model.qkv_bias=false")
    if m.precision == "fp8" and m.spec == "local":
        raise ConfigError("model.precision: fp8 needs Transformer Engine kernels but model.spec is local"
                          " — fix: --set model.spec=te (GPU) or --set model.precision=bf16")


def moe_layer_pattern(model) -> list:
    """1 = MoE layer, 0 = dense, per layer: `moe.layer_pattern` when given, else the first `first_dense_layers`
    dense and the rest MoE; all 0 for a dense model. (megatron-core's `moe_layer_freq` as a list.)"""
    moe = model.moe
    if not moe.num_experts:
        return [0] * model.num_layers
    if moe.layer_pattern is not None:
        return list(moe.layer_pattern)
    return [0 if i < moe.first_dense_layers else 1 for i in range(model.num_layers)]


def _check_moe(cfg: Config) -> None:
    """MoE keys against each other, the layout and megatron-core's TransformerConfig / MoELayer assertions."""
    m, p, moe = cfg.model, cfg.parallel, cfg.model.moe
    ep, etp = p.expert, p.expert_tensor if p.expert_tensor is not None else p.tensor
    if p.expert < 1 or etp < 1:
        raise ConfigError(f"parallel.expert / parallel.expert_tensor: must be at least 1, got {p.expert} / {etp}"
                          " — fix: --set parallel.expert=1 parallel.expert_tensor=null")
    if not moe.num_experts:
        if moe.num_experts < 0:
            raise ConfigError(f"model.moe.num_experts: {moe.num_experts} must be ≥ 0 (0 = dense) — fix: --set"
                              " model.moe.num_experts=0")
        if ep > 1 or p.expert_tensor not in (None, p.tensor):
            raise ConfigError(f"parallel.expert={ep}, parallel.expert_tensor={p.expert_tensor}: expert parallelism"
                              " needs experts — fix: --set model.moe.num_experts=8 (or more), or parallel.expert=1"
                              " parallel.expert_tensor=null")
        return
    key = "model.moe"
    if not 1 <= moe.top_k <= moe.num_experts:
        raise ConfigError(f"{key}.top_k: {moe.top_k} must be between 1 and num_experts {moe.num_experts} — fix:"
                          f" --set {key}.top_k=2")
    ffn = moe.ffn_hidden_size if moe.ffn_hidden_size is not None else m.ffn_hidden_size
    if ffn < 1 or moe.shared_expert_ffn_hidden_size < 0:
        raise ConfigError(f"{key}.ffn_hidden_size / shared_expert_ffn_hidden_size: {ffn} / "
                          f"{moe.shared_expert_ffn_hidden_size} must be ≥ 1 / ≥ 0 — fix: e.g. --set {key}.ffn_hidden_size=1024")
    pattern = moe_layer_pattern(m)
    if len(pattern) != m.num_layers or any(x not in (0, 1) for x in pattern):
        raise ConfigError(f"{key}.layer_pattern: {moe.layer_pattern} must list 0 (dense) or 1 (MoE) for each of the"
                          f" {m.num_layers} layers — fix: e.g. --set '{key}.layer_pattern=[0{', 1' * (m.num_layers - 1)}]'")
    if not 0 <= moe.first_dense_layers < m.num_layers:
        raise ConfigError(f"{key}.first_dense_layers: {moe.first_dense_layers} must be in [0, num_layers {m.num_layers})"
                          f" — fix: --set {key}.first_dense_layers=0 or model.moe.num_experts=0 for a dense model")
    if moe.num_experts % ep:
        raise ConfigError(f"parallel.expert: {ep} does not divide {key}.num_experts {moe.num_experts} — fix: an"
                          f" expert-parallel size that divides {moe.num_experts}")
    expert_grid = etp * ep * p.pipeline
    if p.world_size % expert_grid:
        raise ConfigError(f"parallel.expert: expert_tensor {etp} × expert {ep} × pipeline {p.pipeline} = {expert_grid}"
                          f" does not divide the world size {p.world_size} — fix: sizes whose product divides it")
    if etp > 1 and ffn % etp:
        raise ConfigError(f"parallel.expert_tensor: {etp} does not divide the expert FFN size {ffn} — fix:"
                          f" --set parallel.expert_tensor=1")
    if moe.top_k == 1 and moe.router_score == "softmax" and not moe.router_pre_softmax:
        raise ConfigError(f"{key}.top_k: 1 with a softmax router needs the softmax before the top-k (after it every"
                          f" weight is 1 and the router gets no gradient) — fix: --set {key}.router_pre_softmax=true")
    if moe.expert_bias and moe.router_score != "sigmoid":
        raise ConfigError(f"{key}.expert_bias: aux-loss-free balancing is defined for sigmoid router scores — fix:"
                          f" --set {key}.router_score=sigmoid")
    for name in ("aux_loss_coeff", "z_loss_coeff", "bias_update_rate"):
        value = getattr(moe, name)
        if not (math.isfinite(value) and value >= 0):
            raise ConfigError(f"{key}.{name}: {value} must be a number ≥ 0 — fix: e.g. --set {key}.{name}=0")
    if moe.capacity_factor is not None and not (math.isfinite(moe.capacity_factor) and moe.capacity_factor > 0):
        raise ConfigError(f"{key}.capacity_factor: {moe.capacity_factor} must be positive or null (no dropping)"
                          f" — fix: e.g. --set {key}.capacity_factor=1.25")
    if moe.pad_to_capacity and moe.capacity_factor is None:
        raise ConfigError(f"{key}.pad_to_capacity: needs {key}.capacity_factor — fix: --set {key}.capacity_factor=1.25"
                          f" or {key}.pad_to_capacity=false")
    if p.tensor > 1 and not p.sequence_parallel:
        raise ConfigError("parallel.sequence_parallel: megatron-core's MoE layer refuses tensor parallelism without"
                          " sequence parallelism in training — fix: --set parallel.sequence_parallel=true")
    if m.add_bias and moe.shared_expert_ffn_hidden_size:
        raise ConfigError(f"{key}.shared_expert_ffn_hidden_size: megatron-core's shared experts have no biases but"
                          " model.add_bias is set — fix: --set model.add_bias=false or"
                          f" {key}.shared_expert_ffn_hidden_size=0")
    if m.add_bias and etp > 1:
        raise ConfigError("model.add_bias: biases in experts need parallel.expert_tensor=1 — fix: --set"
                          " parallel.expert_tensor=1")
    if moe.grouped_gemm and m.spec == "local":
        raise ConfigError(f"{key}.grouped_gemm: grouped GEMM comes from Transformer Engine, but model.spec is local"
                          f" — fix: --set {key}.grouped_gemm=false (SequentialMLP) or model.spec=te")
    if moe.dispatcher == "flex" and m.spec == "local":
        raise ConfigError(f"{key}.dispatcher: flex (DeepEP/HybridEP) is a CUDA kernel library, but model.spec is local"
                          f" — fix: --set {key}.dispatcher=alltoall")


def _check_compile(cfg: Config) -> None:
    if cfg.model.compile is True and cfg.model.recompute != "none":
        raise ConfigError(f"model.compile with model.recompute={cfg.model.recompute}: activation recomputation inside"
                          " compiled layers is not verified here — fix: --set model.recompute=none or model.compile=false")


def _check_layout(cfg: Config) -> None:
    m, p, t = cfg.model, cfg.parallel, cfg.training
    if m.num_attention_heads % p.tensor:
        raise ConfigError(
            f"parallel.tensor: {p.tensor} does not divide model.num_attention_heads {m.num_attention_heads}"
            f" — fix: use a tensor size that divides it")
    if m.num_query_groups % p.tensor:
        raise ConfigError(
            f"parallel.tensor: {p.tensor} does not divide model.num_query_groups {m.num_query_groups}"
            f" — fix: use a tensor size that divides {m.num_query_groups}, or more query groups")
    if m.attention_backend == "unfused" and p.context > 1 and m.spec == "local":
        raise ConfigError("model.attention_backend: unfused (megatron's DotProductAttention) has no context"
                          " parallelism — fix: --set model.attention_backend=sdpa or parallel.context=1")
    if p.sequence_parallel and p.tensor == 1:
        raise ConfigError("parallel.sequence_parallel: needs tensor parallelism (parallel.tensor > 1)"
                          " — fix: --set parallel.sequence_parallel=false or parallel.tensor=2")
    if p.sequence_parallel and m.seq_length % p.tensor:
        raise ConfigError(f"parallel.sequence_parallel: model.seq_length {m.seq_length} is not divisible by"
                          f" parallel.tensor {p.tensor} — fix: a sequence length that is a multiple of it")
    if p.virtual_pipeline is not None:
        if p.virtual_pipeline < 1:
            raise ConfigError(f"parallel.virtual_pipeline: must be null or at least 1, got {p.virtual_pipeline}"
                              " — fix: --set parallel.virtual_pipeline=null")
        if p.virtual_pipeline > 1 and p.pipeline < 2:
            raise ConfigError("parallel.virtual_pipeline: interleaving needs parallel.pipeline ≥ 2"
                              " — fix: --set parallel.virtual_pipeline=null or parallel.pipeline=2")
    stages = p.pipeline * (p.virtual_pipeline or 1)
    if m.num_layers % stages:
        what = f"pipeline {p.pipeline}" + (f" × virtual {p.virtual_pipeline}" if p.virtual_pipeline else "")
        raise ConfigError(f"parallel.pipeline: model.num_layers {m.num_layers} is not divisible by {what}"
                          f" = {stages} — fix: choose sizes whose product divides {m.num_layers}")
    if p.context > 1 and m.seq_length % (2 * p.context):
        raise ConfigError(
            f"parallel.context: model.seq_length {m.seq_length} is not divisible by 2 × context {p.context}"
            f" (each rank holds two load-balanced chunks) — fix: a sequence length that is a multiple of"
            f" {2 * p.context}")
    per_step = t.micro_batch_size * p.data
    if t.global_batch_size % per_step:
        raise ConfigError(
            f"training.global_batch_size: {t.global_batch_size} is not divisible by micro_batch_size"
            f" {t.micro_batch_size} × data {p.data} = {per_step} — fix: a global batch that is a multiple of {per_step}")
    if p.pipeline > 1 and p.virtual_pipeline and p.virtual_pipeline > 1:
        microbatches = cfg.num_microbatches
        if microbatches % p.pipeline:
            raise ConfigError(
                f"training.global_batch_size: the interleaved schedule needs the number of micro-batches"
                f" ({microbatches}) to be a multiple of parallel.pipeline {p.pipeline} — fix: a larger global batch")


def _check_training(cfg: Config) -> None:
    o, s, c = cfg.optimizer, cfg.schedule, cfg.checkpoint
    if not (math.isfinite(o.lr) and o.lr > 0):        # NaN compares false with everything: test it explicitly
        raise ConfigError(f"optimizer.lr: {o.lr} must be a positive number — fix: e.g. --set optimizer.lr=3e-4")
    if not (math.isfinite(o.min_lr) and o.min_lr >= 0):
        raise ConfigError(f"optimizer.min_lr: {o.min_lr} must be a number ≥ 0 — fix: e.g. --set optimizer.min_lr=0")
    if o.min_lr > o.lr:
        raise ConfigError(f"optimizer.min_lr: {o.min_lr} is above optimizer.lr {o.lr} — fix: min_lr ≤ lr")
    if not 0 < s.wsd_decay_fraction <= 1:
        raise ConfigError(f"schedule.wsd_decay_fraction: {s.wsd_decay_fraction} must be in (0, 1] — fix: e.g. 0.2")
    if c.resume is not None and c.resume == "auto" and not c.dir:
        raise ConfigError("checkpoint.resume: auto needs checkpoint.dir — fix: --set checkpoint.dir=PATH")
    if c.keep_last < 1:
        raise ConfigError(f"checkpoint.keep_last: must be at least 1, got {c.keep_last} — fix: --set checkpoint.keep_last=1")
    parts = cfg.data.split.split(",")
    try:
        weights = [float(x) for x in parts]
    except ValueError:
        weights = []
    if len(weights) != 3 or min(weights) < 0 or sum(weights) <= 0:
        raise ConfigError(f"data.split: {cfg.data.split!r} must be three non-negative numbers train,valid,test"
                          " — fix: e.g. --set data.split=969,30,1")
    if not 0 < cfg.plan.mfu <= 1:
        raise ConfigError(f"plan.mfu: {cfg.plan.mfu} must be a fraction in (0, 1] — fix: e.g. --set plan.mfu=0.5")


def resolve_kv_channels(cfg: Config) -> Config:
    """model.kv_channels null → hidden_size / num_attention_heads (megatron-core's default), so every stage reads
    a number."""
    m = cfg.model
    if m.kv_channels is not None:
        return cfg
    if m.num_attention_heads < 1 or m.hidden_size % m.num_attention_heads:
        raise ConfigError(f"model.kv_channels: null derives it as hidden_size / num_attention_heads, but"
                          f" {m.hidden_size} / {m.num_attention_heads} is not a whole number — fix: --set"
                          f" model.kv_channels=N or a head count that divides model.hidden_size")
    return dataclasses.replace(cfg, model=dataclasses.replace(m, kv_channels=m.hidden_size // m.num_attention_heads))


def resolve_and_validate(cfg: Config, world_size: Optional[int] = None) -> Config:
    cfg = resolve_kv_channels(cfg)
    _positive(cfg)
    cfg = dataclasses.replace(cfg, parallel=resolve_layout(cfg.parallel, world_size))
    _check_model(cfg)
    _check_compile(cfg)
    _check_layout(cfg)
    _check_moe(cfg)
    _check_training(cfg)
    return cfg
