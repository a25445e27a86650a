"""The generation forward of a one-process dense GPTModel as plain torch calls on the model's own parameters.

Why: a batch-1 decode step of a 135M model on a CPU is ~45 ms of matrix-vector products over the weights, and
megatron's module path added ~30 ms per step on top (the profile is in docs/benchmarks.md): an autograd Function
and two tensor-parallel region mappings around every linear layer, the inference-context bookkeeping, RoPE over
the whole key cache on every step (megatron caches keys before RoPE) and the CPU bridge's TorchFunctionMode on
every torch call. This forward reads the very same parameter tensors (no copy, so GRPO's sampler sees the weights
the trainer updates), does the same arithmetic in the same order (matmul then bias, the same RoPE, RMSNorm and
SDPA calls), caches keys after RoPE at each row's own positions, and runs with the bridge's mode suspended (none
of these calls names a device).

`unsupported(model)` says why a model must stay on megatron's forward (through its inference wrapper): tensor or
pipeline parallelism, MoE layers, Transformer Engine modules, the unfused attention backend, other RoPE variants.
tests/infer/test_fast_generation.py checks logits and greedy tokens against megatron's forward.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F


def _core(model):
    return getattr(model, "module", model)      # Float16Module wraps the GPTModel


def _changed(module) -> bool:
    """Whether something was attached to a linear layer after it was built (LoRA's `lora` child and patched forward,
    forward hooks): reading its weight alone would drop that, so megatron's forward must run it."""
    patched = {"forward", "_forward_impl"} & set(vars(module))
    return bool(patched or module._forward_hooks or module._forward_pre_hooks or any(True for _ in module.children()))


def unsupported(model) -> Optional[str]:
    """None when `PlainForward` reproduces this model's forward, else the reason it does not."""
    from megatron.core.models.common.embeddings.rotary_pos_embedding import RotaryEmbedding
    from megatron.core.tensor_parallel import ColumnParallelLinear, RowParallelLinear
    from megatron.core.transformer.identity_op import IdentityOp
    from megatron.core.transformer.mlp import MLP

    from myllm_mc.model.layers import RMSNorm
    from myllm_mc.model.sdpa_attention import SDPAAttention

    core = _core(model)
    c = core.config
    if c.tensor_model_parallel_size > 1 or c.pipeline_model_parallel_size > 1 or c.context_parallel_size > 1:
        return "tensor/pipeline/context parallel layout"
    if not (core.pre_process and core.post_process):
        return "a pipeline stage"
    if getattr(c, "num_moe_experts", None):
        return "MoE layers"
    if core.position_embedding_type != "rope" or type(core.rotary_pos_emb) is not RotaryEmbedding:
        return "position embedding other than plain RoPE"
    if c.rotary_interleaved or c.multi_latent_attention or getattr(c, "attention_output_gate", False):
        return "interleaved RoPE, MLA or gated attention"
    if c.apply_residual_connection_post_layernorm or c.fp32_residual_connection or not c.gated_linear_unit \
            or c.activation_func is not F.silu:
        return "residual/activation variant"
    if c.sequence_parallel:
        return "sequence parallelism"
    for layer in core.decoder.layers:
        sa = layer.self_attention
        if type(sa.core_attention) is not SDPAAttention:
            return "attention backend other than sdpa"
        if not isinstance(layer.mlp, MLP) or type(layer.mlp.linear_fc1) is not ColumnParallelLinear \
                or type(sa.linear_qkv) is not ColumnParallelLinear or type(sa.linear_proj) is not RowParallelLinear:
            return "Transformer Engine or MoE modules"
        for linear in (sa.linear_qkv, sa.linear_proj, layer.mlp.linear_fc1, layer.mlp.linear_fc2):
            if _changed(linear):
                return "a linear layer whose forward was changed (LoRA adapters, hooks)"
        for norm in (layer.input_layernorm, layer.pre_mlp_layernorm):
            if type(norm) is not RMSNorm:
                return "a norm other than RMSNorm"
        for norm in (sa.q_layernorm, sa.k_layernorm):
            if norm is not None and type(norm) not in (RMSNorm, IdentityOp):
                return "a q/k norm other than RMSNorm"
    if type(core.decoder.final_layernorm) is not RMSNorm:
        return "a final norm other than RMSNorm"
    return None


def _linear(x: torch.Tensor, module) -> torch.Tensor:
    """megatron's ColumnParallel/RowParallelLinear at TP=1: matmul with the transposed weight, then the bias."""
    out = torch.matmul(x, module.weight.t())
    return out + module.bias if module.bias is not None else out


def _rotate(t: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """megatron's `_apply_rotary_pos_emb_bshd` (non-interleaved) with precomputed cos/sin."""
    rot = cos.size(-1)
    t, t_pass = t[..., :rot], t[..., rot:]
    x1, x2 = torch.chunk(t, 2, dim=-1)
    t = (t * cos) + (torch.cat((-x2, x1), dim=-1) * sin)
    return torch.cat((t, t_pass), dim=-1) if t_pass.numel() else t


class PlainForward:
    """`forward(tokens, positions, cache, mask)` → logits; see the module docstring."""

    def __init__(self, model):
        self.model = _core(model)
        first = self.model.decoder.layers[0].self_attention
        self.heads = first.num_attention_heads_per_partition
        self.groups = first.num_query_groups_per_partition
        self.head_dim = first.hidden_size_per_attention_head
        self.scale = first.core_attention.softmax_scale
        self._cos = self._sin = None

    def _tables(self, length: int, dtype):
        """cos/sin of megatron's RoPE frequencies for positions [0, length), as megatron computes them."""
        if self._cos is None or self._cos.size(0) < length or self._cos.dtype != dtype:
            freqs = self.model.rotary_pos_emb(max(length, 256)).flatten(1)        # [positions, rot dim]
            self._cos, self._sin = torch.cos(freqs).to(dtype), torch.sin(freqs).to(dtype)
        return self._cos, self._sin

    def forward(self, tokens: torch.Tensor, positions: torch.Tensor, cache, allowed: Optional[torch.Tensor],
                causal: bool, last_only: bool = True) -> torch.Tensor:
        """Logits [rows, 1 or tokens, padded vocab] for `tokens` [rows, n] written at the cache's offset.

        allowed: bool [rows, 1, n, offset + n] (True = attend) or None (every cached slot and, with `causal`,
        the causal triangle). The offset is not advanced here."""
        with torch._C.DisableTorchFunction():      # the CPU bridge's mode: nothing below names a device
            return self._forward(tokens, positions, cache, allowed, causal, last_only)

    def _forward(self, tokens, positions, cache, allowed, causal, last_only):
        m = self.model
        rows, n = tokens.shape
        start = cache.offset
        end = start + n
        if allowed is None and causal and start > 0 and n > 1:     # queries are the last n of `end` positions
            allowed = torch.arange(end).view(1, -1) <= torch.arange(start, end).view(-1, 1)
        h = F.embedding(tokens, m.embedding.word_embeddings.weight)          # [rows, n, hidden]
        cos, sin = self._tables(int(positions.max()) + 1, h.dtype)
        cos, sin = cos[positions].unsqueeze(2), sin[positions].unsqueeze(2)  # [rows, n, 1, rot]
        per_group = self.heads // self.groups
        split = [per_group * self.head_dim, self.head_dim, self.head_dim]
        gqa = self.heads != self.groups
        for layer in m.decoder.layers:
            sa = layer.self_attention
            mixed = _linear(layer.input_layernorm(h), sa.linear_qkv)
            mixed = mixed.view(rows, n, self.groups, (per_group + 2) * self.head_dim)
            q, k, v = torch.split(mixed, split, dim=3)
            q = q.reshape(rows, n, self.heads, self.head_dim)
            if sa.q_layernorm is not None:
                q = sa.q_layernorm(q)
            if sa.k_layernorm is not None:
                k = sa.k_layernorm(k)
            q, k = _rotate(q, cos, sin), _rotate(k, cos, sin)
            keys, values = cache.layer(sa.layer_number)                      # [cap rows, groups, slots, dim]
            keys[:rows, :, start:end] = k.transpose(1, 2)
            values[:rows, :, start:end] = v.transpose(1, 2)
            out = F.scaled_dot_product_attention(
                q.transpose(1, 2), keys[:rows, :, :end], values[:rows, :, :end], attn_mask=allowed,
                is_causal=causal and allowed is None and n > 1, scale=self.scale, enable_gqa=gqa)
            out = _linear(out.transpose(1, 2).reshape(rows, n, self.heads * self.head_dim), sa.linear_proj)
            h = h + out
            gate, up = torch.chunk(_linear(layer.pre_mlp_layernorm(h), layer.mlp.linear_fc1), 2, dim=-1)
            h = h + _linear(F.silu(gate) * up, layer.mlp.linear_fc2)
        if last_only:
            h = h[:, -1:]
        h = m.decoder.final_layernorm(h)
        weight = m.shared_embedding_or_output_weight() if m.share_embeddings_and_output_weights \
            else m.output_layer.weight
        return torch.matmul(h, weight.t())
