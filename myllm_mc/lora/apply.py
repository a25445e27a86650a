"""Attach LoRA adapters to built megatron-core GPTModel chunks, and everything done to them afterwards.

    adapters = apply_lora(chunks, cfg.align.lora, seed)   # before Float16Module / DDP: base frozen, adapters added
    install_tp_gradient_sum(ddp_chunks)                   # once the DDP config hooks exist (train/setup.py)
    with adapters_disabled(chunks): ...                   # the base model: DPO's and GRPO's reference
    merge_adapters(chunks)                                # W += (alpha/r)·B·A in place, adapters removed

Why patch instances instead of editing megatron's layers: the model is built exactly as for full training (same
code, same state-dict keys for the base), and the adapter is one child module `lora` of the linear layer it
adapts (`...self_attention.linear_qkv.lora.A`). The column-parallel layer's `forward` gets the update added to
its output; the row-parallel layer's `_forward_impl` (the local matmul, before the layer's reduction) gets the
update added to its partial output; the layer's `sharded_state_dict` gets the adapter's own sharding.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Iterable, List

import torch
from megatron.core import parallel_state as ps
from megatron.core.tensor_parallel.layers import ColumnParallelLinear, RowParallelLinear
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

from myllm_mc.plan.lora import COLUMN_PARALLEL, adapted_layers, expand_targets, layer_dims

from .adapter import TP_SUM_ATTR, LoRAAdapter, init_seed

_PARENT = {"linear_qkv": "self_attention", "linear_proj": "self_attention", "linear_fc1": "mlp",
           "linear_fc2": "mlp"}


def gpt_model(chunk):
    """The GPTModel inside DDP / Float16Module wrappers."""
    while hasattr(chunk, "module"):
        chunk = chunk.module
    return chunk


def _column_forward(linear, original, input_, weight=None, runtime_gather_output=None):
    output, bias = original(input_, weight, runtime_gather_output)
    if linear.lora.enabled:
        output = output + linear.lora.column_delta(input_).to(output.dtype)
    return output, bias


def _row_forward_impl(linear, original, input, weight, *args, **kwargs):
    output = original(input, weight, *args, **kwargs)
    if linear.lora.enabled:
        output = output + linear.lora.row_partial(input).to(output.dtype)
    return output


def _sharded_state_dict(linear, original, prefix="", sharded_offsets=(), metadata=None):
    out = {k: v for k, v in original(prefix, sharded_offsets, metadata).items() if not k.startswith(f"{prefix}lora.")}
    out.update(linear.lora.sharded_state_dict(f"{prefix}lora.", sharded_offsets, metadata))
    return out


def _attach(linear, target: str, adapter: LoRAAdapter) -> None:
    linear.add_module("lora", adapter)
    if target in COLUMN_PARALLEL:
        linear.forward = functools.partial(_column_forward, linear, linear.forward)
    else:
        linear._forward_impl = functools.partial(_row_forward_impl, linear, linear._forward_impl)
    linear.sharded_state_dict = functools.partial(_sharded_state_dict, linear, linear.sharded_state_dict)


def _detach(linear) -> None:
    for name in ("forward", "_forward_impl", "sharded_state_dict"):
        linear.__dict__.pop(name, None)                 # back to the class's methods
    del linear.lora


def apply_lora(chunks: Iterable, lora_cfg, seed: int) -> List[LoRAAdapter]:
    """Freeze every parameter of `chunks` and attach adapters per `lora_cfg` (align.lora) to the layers this rank
    holds. Returns the adapters in model order."""
    chunks = list(chunks)
    adapters = []
    tp_size, tp_rank = ps.get_tensor_model_parallel_world_size(), ps.get_tensor_model_parallel_rank()
    targets = expand_targets(lora_cfg.targets)
    for chunk in chunks:
        model = gpt_model(chunk)
        for param in model.parameters():
            param.requires_grad_(False)
        config = model.config
        dims, wanted = layer_dims(_Shape(config)), set(adapted_layers(_Shape(config), lora_cfg))
        for layer in model.decoder.layers:
            index = layer.layer_number - 1                     # global, whatever the pipeline stage
            if index not in wanted:
                continue
            for target in targets:
                linear = getattr(getattr(layer, _PARENT[target]), target)
                column = target in COLUMN_PARALLEL
                expected = ColumnParallelLinear if column else RowParallelLinear
                if type(linear) is not expected:
                    raise TypeError(f"LoRA: layer {index} {target} is {type(linear).__name__}, not megatron-core's"
                                    f" {expected.__name__} (the local spec) — fix: --set model.spec=local")
                n, m = dims[target]
                adapter = LoRAAdapter(column, n, m, lora_cfg.rank, lora_cfg.alpha, lora_cfg.dropout, tp_size, tp_rank,
                                      linear.tp_group, config.sequence_parallel, target == "linear_fc1",
                                      init_seed(seed, index, target), linear.weight.dtype, linear.weight.device)
                _attach(linear, target, adapter)
                adapters.append(adapter)
    return adapters


class _Shape:
    """The four ModelConfig fields `layer_dims` reads, from megatron's TransformerConfig."""

    def __init__(self, config):
        self.hidden_size, self.num_attention_heads = config.hidden_size, config.num_attention_heads
        self.num_query_groups, self.kv_channels = config.num_query_groups, config.kv_channels
        self.ffn_hidden_size, self.num_layers = config.ffn_hidden_size, config.num_layers


def adapters_of(chunks: Iterable) -> List[LoRAAdapter]:
    return [m for chunk in chunks for m in gpt_model(chunk).modules() if isinstance(m, LoRAAdapter)]


def has_adapters(chunks: Iterable) -> bool:
    return bool(adapters_of(chunks))


@contextlib.contextmanager
def adapters_disabled(chunks: Iterable):
    """The base model, for as long as the block runs: every adapter skipped (nothing copied, nothing freed)."""
    adapters = adapters_of(chunks)
    states = [a.enabled for a in adapters]
    for adapter in adapters:
        adapter.enabled = False
    try:
        yield
    finally:
        for adapter, state in zip(adapters, states):
            adapter.enabled = state


def merge_adapters(chunks: Iterable) -> int:
    """W ← W + (alpha/r)·B·A on every adapted layer (this rank's shard: both factors are split like W), then the
    adapters are removed, leaving a plain model. Returns how many were merged."""
    count = 0
    for chunk in chunks:
        model = gpt_model(chunk)
        for linear in [m for m in model.modules() if isinstance(getattr(m, "lora", None), LoRAAdapter)]:
            with torch.no_grad():
                linear.weight.add_(linear.lora.delta_weight().to(linear.weight.dtype))
            _detach(linear)
            count += 1
    return count


def sum_partial_gradients(model: List) -> None:
    """All-reduce (sum) over TP the gradients of replicated factors that each rank holds only a share of
    (B of row-parallel layers; A of column-parallel ones under sequence parallelism): one coalesced call."""
    if ps.get_tensor_model_parallel_world_size() == 1:
        return
    grads = []
    for chunk in model:
        for param in chunk.parameters():
            if param.requires_grad and getattr(param, TP_SUM_ATTR, False):
                grad = getattr(param, "main_grad", None)
                grad = grad if grad is not None else param.grad
                if grad is not None:
                    grads.append(grad)
    if not grads:
        return
    coalesced = _flatten_dense_tensors([g.data for g in grads])
    torch.distributed.all_reduce(coalesced, group=ps.get_tensor_model_parallel_group())
    for grad, synced in zip(grads, _unflatten_dense_tensors(coalesced, [g.data for g in grads])):
        grad.data.copy_(synced)


def install_tp_gradient_sum(model: List) -> None:
    """Chain `sum_partial_gradients` after megatron's finalize_model_grads (DP reduction, scaling by the token
    count: all linear, so the order does not matter; after it, the DP reduce-scatter has finished)."""
    config = model[0].config if hasattr(model[0], "config") else gpt_model(model[0]).config
    original = config.finalize_model_grads_func

    def finalize(model_chunks, *args, **kwargs):
        result = original(model_chunks, *args, **kwargs)
        sum_partial_gradients(model_chunks)
        return result

    config.finalize_model_grads_func = finalize


def summary(adapters: List[LoRAAdapter], chunks: Iterable, lora_cfg) -> str:
    trainable = sum(p.numel() for a in adapters for p in a.parameters())
    total = sum(p.numel() for chunk in chunks for p in gpt_model(chunk).parameters())
    return (f"lora: {len(adapters)} adapters of rank {lora_cfg.rank} (alpha {lora_cfg.alpha:g}, dropout"
            f" {lora_cfg.dropout:g}) on {', '.join(expand_targets(lora_cfg.targets))}; {trainable:,} trainable of"
            f" {total:,} parameters on this rank ({100 * trainable / max(total, 1):.2f}%); base frozen")
