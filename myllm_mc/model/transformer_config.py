"""Config → megatron-core `TransformerConfig`: every architectural and numerical choice of MyLLM in one function.

What the MyLLM architecture fixes (not configurable, SPEC.md): no dropout, SwiGLU is `gated_linear_unit` with
SiLU, GQA through `num_query_groups`. What the layout adds: parallel sizes, sequence parallelism, the pipeline
dtype. What the hardware adds: no fused kernels on CPU, unbatched p2p on gloo (see `batch_p2p_comm` below).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from megatron.core.transformer.transformer_config import TransformerConfig

from myllm_mc.config import ConfigError
from myllm_mc.config.schema import Config
from myllm_mc.config.validate import moe_layer_pattern
from myllm_mc.parallel.hardware import cuda_available, resolve_backend, resolve_spec

_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp8": torch.bfloat16}
_FP8_RECIPES = {"delayed": "delayed", "current": "tensorwise"}   # megatron's name for current scaling


def _recompute(recompute: str) -> dict:
    if recompute == "selective":   # attention scores/softmax only: the memory hog, cheap to recompute
        return {"recompute_granularity": "selective"}
    if recompute == "full":        # whole layers, one per checkpointed unit
        return {"recompute_granularity": "full", "recompute_method": "uniform", "recompute_num_layers": 1}
    return {}


def _moe(cfg: Config) -> dict:
    """MoE fields of TransformerConfig (none for a dense model). Routing, load balancing, dispatch and the experts
    are megatron-core's own (TopKRouter, MoE*TokenDispatcher, SequentialMLP/TEGroupedMLP, SharedExpertMLP)."""
    m, p, moe = cfg.model, cfg.parallel, cfg.model.moe
    if not moe.num_experts:
        return {}
    pattern = moe_layer_pattern(m)
    return dict(
        num_moe_experts=moe.num_experts, moe_router_topk=moe.top_k,
        moe_ffn_hidden_size=moe.ffn_hidden_size if moe.ffn_hidden_size is not None else m.ffn_hidden_size,
        moe_shared_expert_intermediate_size=moe.shared_expert_ffn_hidden_size or None,
        moe_layer_freq=pattern, moe_router_score_function=moe.router_score,
        moe_router_pre_softmax=moe.router_pre_softmax, moe_router_load_balancing_type=moe.load_balancing,
        moe_aux_loss_coeff=moe.aux_loss_coeff if moe.load_balancing != "none" else 0.0,
        moe_z_loss_coeff=moe.z_loss_coeff or None,
        moe_router_enable_expert_bias=moe.expert_bias, moe_router_bias_update_rate=moe.bias_update_rate,
        moe_expert_capacity_factor=moe.capacity_factor, moe_pad_expert_input_to_capacity=moe.pad_to_capacity,
        moe_token_drop_policy=moe.drop_policy, moe_token_dispatcher_type=moe.dispatcher,
        moe_flex_dispatcher_backend="deepep", moe_grouped_gemm=moe.grouped_gemm,
        moe_router_dtype=None if moe.router_dtype == "model" else moe.router_dtype,
        expert_model_parallel_size=p.expert, expert_tensor_parallel_size=p.expert_tensor,
    )


def transformer_config(cfg: Config, on_meta_device: bool = False):
    """Build the `TransformerConfig` for `cfg` (model + parallel groups).

    on_meta_device: allocate parameters without device or initialisation, so `build_model` can construct the
    1B preset on `torch.device('meta')` in a second (parameter counting, planning).
    """
    m, p = cfg.model, cfg.parallel
    if m.activation != "swiglu" or m.position_embedding != "rope":
        raise ConfigError(f"model.activation={m.activation}, model.position_embedding={m.position_embedding}:"
                          " MyLLM is built with swiglu and rope only — fix: --set model.activation=swiglu"
                          " model.position_embedding=rope")
    backend, spec = resolve_backend(p), resolve_spec(m)
    dtype = _DTYPES[m.precision]
    fused = cuda_available() and spec == "te"   # fused kernels come from TE / apex, GPU only
    interleaved = bool(p.virtual_pipeline and p.virtual_pipeline > 1)
    fp8 = {}
    if m.precision == "fp8":
        fp8 = {"fp8": "hybrid", "fp8_recipe": _FP8_RECIPES[m.fp8_recipe]}
    return TransformerConfig(
        num_layers=m.num_layers, hidden_size=m.hidden_size, ffn_hidden_size=m.ffn_hidden_size,
        num_attention_heads=m.num_attention_heads, num_query_groups=m.num_query_groups,
        kv_channels=m.kv_channels, normalization=m.normalization, layernorm_epsilon=m.norm_epsilon,
        gated_linear_unit=True, activation_func=F.silu,
        add_bias_linear=m.add_bias, add_qkv_bias=m.add_bias or m.qkv_bias,
        # q/k norms: megatron's finalize_model_grads all-reduces their grads over TP (each rank holds other heads)
        qk_layernorm=m.qk_norm,
        hidden_dropout=0.0, attention_dropout=0.0, init_method_std=m.init_std,
        # layout
        tensor_model_parallel_size=p.tensor, pipeline_model_parallel_size=p.pipeline,
        virtual_pipeline_model_parallel_size=p.virtual_pipeline if interleaved else None,
        context_parallel_size=p.context, sequence_parallel=p.sequence_parallel,
        cp_comm_type="p2p" if p.context > 1 and spec == "te" else None,
        # numerics
        params_dtype=dtype, pipeline_dtype=dtype, bf16=m.precision in ("bf16", "fp8"), **fp8,
        # gloo pairs same-shaped batched transfers by posting order: at PP=2 with virtual stages the previous
        # and next stage are one rank and the interleaved schedule silently computes wrong values (measured:
        # loss 6.2638159 vs 6.2638955). Unbatched send/recv is exact everywhere, so gloo always uses it.
        batch_p2p_comm=backend != "gloo",
        deallocate_pipeline_outputs=True,
        masked_softmax_fusion=fused, bias_activation_fusion=fused, bias_dropout_fusion=fused,
        apply_rope_fusion=False, gradient_accumulation_fusion=False,
        persist_layer_norm=False,
        use_cpu_initialization=on_meta_device, perform_initialization=not on_meta_device,
        **_recompute(m.recompute),
        **_moe(cfg),
    )
