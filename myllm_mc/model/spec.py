"""Which kernels implement a MyLLM layer: the one place a layer spec is chosen.

te    megatron-core's Transformer Engine spec (fused norm+linear, TE attention with native context parallelism,
      FP8). Its final norm is TENorm, chosen by megatron's TransformerBlock.
local megatron-core's local spec (plain torch) with two substitutions: our RMSNorm (`layers.py`, sequence
      parallelism) for both layer norms, the final norm and the q/k norms (`model.qk_norm`), and, with `model.attention_backend: sdpa` (the
      default), our SDPA core attention (`sdpa_attention.py`: fused kernels, masks, context parallelism) in
      place of megatron's unfused DotProductAttention, which materialises the s×s scores. MoE layers are the
      local spec's MoELayer (SequentialMLP experts: grouped GEMM is TE-only) with the same substitutions.
The choice itself (config + hardware) is `myllm_mc.parallel.hardware.resolve_spec`.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

from megatron.core import parallel_state
from megatron.core.models.gpt.gpt_layer_specs import (
    get_gpt_decoder_block_spec,
    get_gpt_layer_local_spec,
    get_gpt_layer_with_transformer_engine_spec,
)
from megatron.core.transformer.transformer_block import TransformerBlockSubmodules, get_num_layers_to_build
from megatron.core.transformer.transformer_layer import get_transformer_layer_offset

from myllm_mc.config import ConfigError
from myllm_mc.config.schema import Config
from myllm_mc.config.validate import moe_layer_pattern
from myllm_mc.parallel.hardware import resolve_spec

from .layers import RMSNorm
from .sdpa_attention import SDPAAttention


def layer_spec(cfg: Config, transformer_config, vp_stage: Optional[int] = None):
    """The `transformer_layer_spec` argument for GPTModel on this rank and virtual stage."""
    if resolve_spec(cfg.model) == "te":
        if cfg.model.moe.num_experts:   # megatron's own dense/MoE layer list from moe_layer_freq, sliced per stage
            return get_gpt_decoder_block_spec(transformer_config, use_transformer_engine=True, vp_stage=vp_stage,
                                              pp_rank=parallel_state.get_pipeline_model_parallel_rank())
        return get_gpt_layer_with_transformer_engine_spec(qk_layernorm=cfg.model.qk_norm)
    return _local_block_spec(cfg, transformer_config, vp_stage)


def _local_block_spec(cfg: Config, transformer_config, vp_stage: Optional[int]):
    """Dense layers and, for MoE, megatron's MoE layers (router, dispatcher, SequentialMLP experts, shared experts)
    where `moe_layer_pattern` says so; this stage's slice of the layer list, and the final norm."""
    dense = _local_layer_spec(cfg, None)
    pattern = moe_layer_pattern(cfg.model)
    moe = _local_layer_spec(cfg, cfg.model.moe.num_experts) if any(pattern) else None
    pp_rank = parallel_state.get_pipeline_model_parallel_rank()
    layers = get_num_layers_to_build(transformer_config, vp_stage=vp_stage, pp_rank=pp_rank)
    offset = get_transformer_layer_offset(transformer_config, vp_stage=vp_stage, pp_rank=pp_rank)
    specs = [moe if pattern[i] else dense for i in range(offset, offset + layers)]
    norm = RMSNorm if cfg.model.normalization == "RMSNorm" else specs[0].submodules.input_layernorm
    # the final norm is not part of the layer spec: a block spec carries it
    return TransformerBlockSubmodules(layer_specs=specs, layer_norm=norm)


def _local_layer_spec(cfg: Config, num_experts: Optional[int]):
    spec = get_gpt_layer_local_spec(num_experts=num_experts, moe_grouped_gemm=cfg.model.moe.grouped_gemm,
                                    normalization=cfg.model.normalization, qk_layernorm=cfg.model.qk_norm)
    layer = spec.submodules
    attention = layer.self_attention
    if cfg.model.attention_backend == "unfused" and cfg.parallel.context > 1:
        raise ConfigError("model.attention_backend: unfused (megatron's DotProductAttention) has no context"
                          " parallelism — fix: --set model.attention_backend=sdpa or parallel.context=1")
    norm = RMSNorm if cfg.model.normalization == "RMSNorm" else layer.input_layernorm
    if cfg.model.attention_backend == "sdpa":
        attention = dataclasses.replace(attention, submodules=dataclasses.replace(
            attention.submodules, core_attention=SDPAAttention))
    if cfg.model.qk_norm:   # Qwen3's per-head q/k RMSNorm: ours (megatron's torch norm refuses sequence parallelism)
        attention = dataclasses.replace(attention, submodules=dataclasses.replace(
            attention.submodules, q_layernorm=norm, k_layernorm=norm))
    return dataclasses.replace(spec, submodules=dataclasses.replace(
        layer, input_layernorm=norm, pre_mlp_layernorm=norm, self_attention=attention))
