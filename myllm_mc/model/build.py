"""Config → the megatron-core GPTModel chunks this rank holds.

    chunks = build_model(cfg)    # after myllm_mc.parallel.init_distributed(cfg)

One chunk per virtual pipeline stage (a list of one without interleaving), each a megatron-core `GPTModel` with
`pre_process` (embedding) on the first stage and `post_process` (final norm + tied output layer + loss) on the
last — the list `megatron.core.pipeline_parallel.get_forward_backward_func()` and megatron's DDP expect.
The model does not know its layout: the parallel sizes come from parallel_state and the TransformerConfig.
"""

from __future__ import annotations

import contextlib
import warnings

import torch
from megatron.core import parallel_state as ps
from megatron.core.models.gpt import GPTModel
from megatron.core.transformer.moe.moe_layer import MoELayer

from myllm_mc.config.schema import Config
from myllm_mc.parallel.hardware import cuda_available, resolve_spec
from myllm_mc.plan.compile_choice import compile_choice
from myllm_mc.plan.params import padded_vocab_size as plan_padded_vocab_size

from .spec import layer_spec
from .transformer_config import transformer_config


def padded_vocab_size(cfg: Config) -> int:
    """Vocabulary rounded up so every tensor-parallel shard of the embedding is a multiple of
    `make_vocab_size_divisible_by` (Megatron-LM's rule, the planner's formula; 65,536 and 8,192 need no padding)."""
    return plan_padded_vocab_size(cfg.model, cfg.parallel.tensor)


def build_model(cfg: Config, on_meta_device: bool = False, pretraining: bool = False) -> list:
    """The GPTModel chunks of this rank (needs `init_distributed(cfg)` first).

    on_meta_device: no memory and no initialisation (for counting the 1B preset's parameters).
    pretraining: the model a pretraining run updates (`model.compile: auto` compiles only those; see
    plan/compile_choice.py).
    """
    config = transformer_config(cfg, on_meta_device=on_meta_device)
    compile_now = not on_meta_device and compile_choice(cfg, resolve_spec(cfg.model), cuda_available(), pretraining)[0]
    virtual = ps.get_virtual_pipeline_model_parallel_world_size() or 1
    chunks = []
    with torch.device("meta") if on_meta_device else contextlib.nullcontext():
        for stage in range(virtual):
            vp_stage = stage if virtual > 1 else None
            model = GPTModel(
                config=config,
                transformer_layer_spec=layer_spec(cfg, config, vp_stage),
                vocab_size=padded_vocab_size(cfg),
                max_sequence_length=cfg.model.seq_length,
                pre_process=ps.is_pipeline_first_stage(ignore_virtual=False, vp_stage=vp_stage),
                post_process=ps.is_pipeline_last_stage(ignore_virtual=False, vp_stage=vp_stage),
                share_embeddings_and_output_weights=cfg.model.tie_embeddings,
                position_embedding_type=cfg.model.position_embedding,
                rotary_base=cfg.model.rotary_base,
                rope_scaling=cfg.model.rope_scaling == "llama3",
                rope_scaling_factor=cfg.model.rope_scaling_factor,
                parallel_output=True,
                vp_stage=vp_stage,
            )
            if compile_now:
                compile_layers(model)
            mark_expert_parameters(model)
            chunks.append(model)
    return chunks


def mark_expert_parameters(model) -> None:
    """Routed-expert parameters are expert parameters at every EP size, EP 1 included: megatron marks them
    (`allreduce=False`) only when EP > 1, and then gives them their own DDP buffer (reduced over the expert
    data-parallel group, which at EP 1 is the data-parallel group: the same sums) and their own optimizer in a
    ChainedOptimizer. Marking them always keeps the optimizer, and so its checkpoint, the same shape at EP 1 and
    EP 2, which is what lets a run reshard EP2 → EP1 → EP2."""
    for module in model.modules():
        if isinstance(module, MoELayer):
            for param in module.experts.parameters():
                param.allreduce = False


def compile_layers(model) -> None:
    """`torch.compile` each TransformerLayer's forward in place: parameters, state-dict keys and checkpoints stay
    exactly as in eager mode (no wrapper module), and megatron's collectives between layers stay outside the graphs.

    One graph per layer, not five: megatron-core 0.16.1's RowParallelLinear passes `tp_group=None` and
    `get_tensor_model_parallel_group_if_none` then calls `warnings.warn` on rank 0 at every call, which dynamo
    cannot trace — a graph break inside the attention output projection and inside the MLP's fc2, each splitting
    the layer and keeping the element-wise work around them unfused. Dynamo is told to skip `warnings.warn` in
    traced code (a DeprecationWarning that Python's default filters hide anyway); tests/model/test_compile.py
    checks that a compiled layer has no graph break."""
    torch._dynamo.config.ignore_logging_functions.add(warnings.warn)
    for layer in model.decoder.layers:
        layer.forward = torch.compile(layer.forward)
