"""Every derived figure of a config, each with the one line of *why* that makes it checkable by hand.

`figures(cfg)` is the single source for both the text table and `--json`, so the two can never disagree.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Union

from .budget import training_budget
from .flops import attention_flops_per_token, flops_per_iteration
from .hardware import gpu_spec
from .inference import decode_bounds, kv_cache_bytes_per_token
from .lora import lora_rows
from .memory import memory_per_gpu, uses_flash_attention
from .moe import expert_data, expert_tensor
from .moe_report import moe_rows
from .params import padded_vocab_size, parameter_breakdown

GiB = 2**30


@dataclass(frozen=True)
class Figure:
    key: str
    section: str
    label: str
    value: Union[int, float, str, bool]
    unit: str
    why: str

    @property
    def text(self) -> str:
        return format_value(self.value, self.unit)


def sig(x: float, digits: int = 3) -> str:
    """Scientific notation to `digits` significant figures, e.g. 1.74e20."""
    mantissa, exponent = f"{x:.{digits - 1}e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def format_value(value, unit: str) -> str:
    if isinstance(value, bool) or isinstance(value, str):
        return str(value)
    if unit == "B":
        return f"{value:,.0f} B" if value < 1e6 else f"{value / 1e9:.3g} GB" if value >= 1e9 else f"{value / 1e6:.3g} MB"
    if unit == "GiB":
        return f"{value / GiB:.2f} GiB"
    if unit == "FLOPs":
        return sig(value)
    if unit == "h":
        return f"{value:.1f} h"
    if unit == "tokens":
        return sig(value, 4) + " tokens"
    if unit == "tok/s":
        return f"{value:,.0f} tok/s"
    if isinstance(value, int):
        return f"{value:,}" + (f" {unit}" if unit else "")
    if unit == "nats":
        return f"{value:.2f} nats"
    text = f"{value:,.1f}" if abs(value) >= 100 else f"{value:.3g}"
    return text + (f" {unit}" if unit else "")


def layout_name(p) -> str:
    parts = [f"TP{p.tensor}", f"PP{p.pipeline}"]
    if p.virtual_pipeline and p.virtual_pipeline > 1:
        parts.append(f"VPP{p.virtual_pipeline}")
    parts += [f"CP{p.context}", f"DP{p.data}"]
    if getattr(p, "expert", 1) > 1:
        parts.append(f"EP{p.expert}")
    if getattr(p, "expert_tensor", None) not in (None, p.tensor):
        parts.append(f"ETP{p.expert_tensor}")
    name = "×".join(parts)
    return name + (" +SP" if p.sequence_parallel else "")


def _parameter_figures(cfg) -> list[Figure]:
    m = cfg.model
    b = parameter_breakdown(m)
    q, kv = m.num_attention_heads * m.kv_channels, m.num_query_groups * m.kv_channels
    h, f, L = m.hidden_size, m.ffn_hidden_size, m.num_layers
    norm_kind = "weight+bias" if m.normalization == "LayerNorm" else "weight"
    bias = " + biases" if m.add_bias else ", no biases"
    attention_extra = bias if m.add_bias else (" + q,k,v biases" if m.qkv_bias else ", no biases")
    if m.qk_norm:
        attention_extra += f" + q/k norms 2 × {m.kv_channels}"
    mlp_why = (f"SwiGLU: 3 matrices (gate, up, down) × {h:,}×{f:,}" if m.activation == "swiglu"
               else f"GeLU: 2 matrices × {h:,}×{f:,}") + bias
    pos = f" + learned positions {m.seq_length:,}×{h:,}" if m.position_embedding == "learned_absolute" else \
        " (rotary positions have no parameters)"
    padded = padded_vocab_size(m, cfg.parallel.tensor)
    multiple = m.make_vocab_size_divisible_by * cfg.parallel.tensor
    extra_rows = padded - m.vocab_size
    copies = 1 if m.tie_embeddings else 2
    pad_why = (f"{m.vocab_size:,} is a multiple of {m.make_vocab_size_divisible_by} × TP {cfg.parallel.tensor}"
               f" = {multiple}: no padding, no extra parameters" if not extra_rows else
               f"Megatron pads to a multiple of {multiple} (make_vocab_size_divisible_by × TP): +{extra_rows:,} rows"
               f" = +{extra_rows * h * copies:,} parameters in the built model")
    S = "parameters"
    return [
        Figure("params.embedding", S, "embedding", b.embedding, "",
               f"vocab {m.vocab_size:,} × hidden {h:,}{pos}"),
        Figure("params.attention_per_layer", S, "attention per layer", b.attention_per_layer, "",
               f"q {h:,}×{q:,} + k,v 2 × {h:,}×{kv:,} ({m.num_query_groups} KV groups × {m.kv_channels})"
               f" + out {q:,}×{h:,}{attention_extra}"),
        Figure("params.mlp_per_layer", S, "MLP per dense layer" if b.moe_layers else "MLP per layer",
               b.mlp_per_layer, "", mlp_why),
        Figure("params.norms_per_layer", S, "norms per layer", 2 * b.norm_per_layer, "",
               f"2 pre-norms ({m.normalization}, {norm_kind}) × {h:,}"),
        Figure("params.per_layer", S, "per dense layer" if b.moe_layers else "per layer", b.per_layer, "",
               "attention + MLP + its two norms"),
        Figure("params.attention", S, "attention, all layers", b.attention, "", f"{L} × attention per layer"),
        Figure("params.mlp", S, "MLP, all layers", b.mlp, "", f"{L} × MLP per layer" if not b.moe_layers else
               f"{L - b.moe_layers} dense × {b.mlp_per_layer:,} + {b.moe_layers} MoE × {b.mlp_per_moe_layer:,}"
               " (see the mixture-of-experts section)"),
        Figure("params.norms", S, "norms, incl. final norm", b.norms, "",
               f"{L} × 2 × {b.norm_per_layer:,} + final norm {b.norm_per_layer:,}"),
        Figure("params.output_layer", S, "output layer", b.output_layer, "",
               "0: tied to the input embedding" if m.tie_embeddings else f"untied: vocab {m.vocab_size:,} × {h:,}"),
        Figure("params.total", S, "total parameters", b.total, "",
               (f"embedding + {L} × per layer + final norm" if not b.moe_layers else
                "embedding + attention + MLP + norms") + ("" if m.tie_embeddings else " + output layer")),
        Figure("params.padded_vocab", S, "padded vocabulary", padded, "", pad_why),
    ]


def _budget_figures(cfg) -> list[Figure]:
    m = cfg.model
    b = training_budget(cfg)
    S = "tokens & steps"
    steps_note = ("matches training.steps" if b.steps == cfg.training.steps else
                  f"config has training.steps={cfg.training.steps:,}: set it to {b.steps:,} to spend the budget")
    return [
        Figure("loss.initial", S, "initial loss", b.initial_loss, "nats",
               f"ln({m.vocab_size:,}): an untrained model predicts uniformly; step-0 loss should be here"),
        Figure("tokens.per_step", S, "tokens per step", b.tokens_per_step, "",
               f"global batch {cfg.training.global_batch_size} × context {m.seq_length:,}"),
        Figure("tokens.budget", S, "training tokens", b.tokens, "tokens", f"from {b.tokens_from}"),
        Figure("tokens.per_parameter", S, "tokens per parameter", b.tokens_per_parameter, "",
               f"{sig(b.tokens, 4)} / {b.parameters:,} (Chinchilla-optimal ≈ 20, Hoffmann et al. 2022)"),
        Figure("steps", S, "optimizer steps", b.steps, "",
               f"floor({sig(b.tokens, 4)} / {b.tokens_per_step:,}); {steps_note}"),
    ]


def _compute_figures(cfg) -> list[Figure]:
    m = cfg.model
    b = training_budget(cfg)
    gpu = gpu_spec(cfg.plan.gpu)
    padded = padded_vocab_size(m, cfg.parallel.tensor)
    per_iter = flops_per_iteration(m, cfg.training.global_batch_size, padded_vocab=padded)
    full_attn = attention_flops_per_token(m, causal=False)
    causal_attn = attention_flops_per_token(m, causal=True)
    S = "compute & time"
    where = f"{b.gpus} × {gpu.label} at {b.mfu:.0%} MFU ({b.peak_flops_per_gpu / 1e12:,.0f} TFLOP/s {m.precision} peak each)"
    return [
        Figure("flops.six_n_per_token", S, "6N per token", 6.0 * b.active_parameters, "FLOPs",
               "2 FLOPs per parameter forward + 4 backward (Kaplan et al. 2020)" + (
                   f"; N = the {b.active_parameters:,} parameters a token is routed through (MoE)"
                   if b.active_parameters != b.parameters else "")),
        Figure("flops.attention_per_token_full", S, "attention per token (full s×s)", full_attn, "FLOPs",
               f"12·L·H·Q·T = 12 × {m.num_layers} × {m.num_attention_heads} × {m.kv_channels} × {m.seq_length:,}"
               " (PaLM App. B; SPEC's figure: the scores counted as a full matrix)"),
        Figure("flops.attention_per_token_causal", S, "attention per token (causal)", causal_attn, "FLOPs",
               "half of the above: Megatron-LM counts only the unmasked lower triangle"),
        Figure("flops.megatron_per_token", S, "Megatron FLOPs per token", per_iter / b.tokens_per_step, "FLOPs",
               "6 × [L(h(q+2kv) + q·s + q·h + 3hf) + hV]: GEMMs incl. causal attention and logits" + (
                   "; an MoE layer's 3hf is its router h·E + top-k × 3h·f_e + shared 3h·f_s" if b.active_parameters
                   != b.parameters else "")),
        Figure("flops.megatron_per_iteration", S, "Megatron FLOPs per step", per_iter, "FLOPs",
               f"per token × {b.tokens_per_step:,} tokens; divide by step time × GPUs × peak for MFU"),
        Figure("flops.six_nd", S, "training compute 6ND", b.six_nd_flops, "FLOPs",
               f"6 × {b.active_parameters:,} × {sig(b.tokens, 4)} tokens (attention treated as free)"),
        Figure("flops.megatron_total", S, "training compute (Megatron)", b.megatron_flops, "FLOPs",
               f"Megatron FLOPs per token × {sig(b.tokens, 4)} tokens"),
        Figure("time.six_nd_hours", S, "wall-clock, 6ND", b.six_nd_hours, "h", f"6ND / ({where})"),
        Figure("time.megatron_hours", S, "wall-clock, Megatron FLOPs", b.megatron_hours, "h",
               f"Megatron total / ({where}): the time if MFU is measured as Megatron counts it"),
    ]


def _memory_figures(cfg) -> list[Figure]:
    m, p = cfg.model, cfg.parallel
    gpu = gpu_spec(cfg.plan.gpu)
    mem = memory_per_gpu(cfg)
    shards = p.data * p.context if p.distributed_optimizer else 1
    e = 4 if m.precision == "fp32" else 2
    opt_bytes = 12 if e == 2 else 8
    name = layout_name(p)
    S = f"memory per GPU ({name}, micro-batch {cfg.training.micro_batch_size}, recompute {m.recompute})"
    attention = "fused (flash) attention" if uses_flash_attention(m) else "unfused attention (s×s stored)"
    stage = {"only": "", "first": " on the first pipeline stage", "last": " on the last pipeline stage"}[mem.stage]
    figs = [
        Figure("memory.parameters_on_gpu", S, "parameters on this GPU", mem.parameters_on_gpu, "",
               f"layers / PP {p.pipeline}, matrices / TP {p.tensor}, embedding and output layer where they live{stage}"
               + (f"; routed experts / (EP {p.expert} × ETP {expert_tensor(p)})" if mem.expert_parameters_on_gpu
                  else "")),
        Figure("memory.weights", S, "weights", mem.weights, "GiB", f"{e} bytes per parameter ({m.precision})"),
        Figure("memory.gradients", S, "gradients", mem.gradients, "GiB",
               f"{e} bytes per parameter ({m.precision} grad buffer)" + (
                   f"; an FP32 buffer (Megatron-LM's default for BF16, grad_reduce_in_fp32) would be"
                   f" {2 * mem.gradients / GiB:.2f} GiB" if e == 2 else "")),
        Figure("memory.optimizer_states", S, "optimizer states", mem.optimizer_states, "GiB",
               (f"FP32 master + 2 Adam moments = {opt_bytes} B/param" if e == 2 else
                f"2 FP32 Adam moments = {opt_bytes} B/param")
               + (f", sharded over DP×CP = {shards} (distributed optimizer)" if p.distributed_optimizer
                  else ", replicated (no distributed optimizer)")
               + (f"; routed experts' ({mem.expert_parameters_on_gpu:,} here) over expert DP = {expert_data(p)}"
                  if mem.expert_parameters_on_gpu and p.distributed_optimizer else "")),
        Figure("memory.activations", S, "activations", mem.activations, "GiB",
               f"{mem.activation_bytes_per_layer / 2**20:,.0f} MiB per layer-micro-batch × {mem.layer_microbatches:g}"
               f" in flight ({attention}; Korthikanti et al. 2022, adapted)"),
        Figure("memory.logits", S, "logits", mem.logits, "GiB",
               f"s·b·V/TP × ({e} B logits + 4 B fp32 softmax kept by the cross-entropy)" if mem.logits else
               "0: logits live on the last pipeline stage"),
        Figure("memory.total", S, "total", mem.total, "GiB",
               f"sum{stage}; {gpu.label} has {gpu.memory_gib:g} GiB (see --layouts for the margin and fit)"),
    ]
    for mode in ("none", "selective", "full"):
        other = memory_per_gpu(cfg, recompute=mode)
        why = f"activations {other.activations / GiB:.2f} GiB with recompute={mode}"
        if mode == "none" and uses_flash_attention(m):
            unfused = memory_per_gpu(dataclasses.replace(cfg, model=dataclasses.replace(
                m, spec="local", attention_backend="unfused")), recompute=mode)
            why += (f"; fused attention stores no s×s scores, so this ≈ selective (unfused attention:"
                    f" {unfused.total / GiB:.2f} GiB)")
        elif mode == "full":
            why += ": each layer's input kept, one layer rematerialized at a time (+1 forward of compute)"
        figs.append(Figure(f"memory.total_recompute_{mode}", S, f"total, recompute {mode}", other.total, "GiB", why))
    return figs


def _inference_figures(cfg) -> list[Figure]:
    m = cfg.model
    gpu = gpu_spec(cfg.plan.gpu)
    params = parameter_breakdown(m).total
    per_token = kv_cache_bytes_per_token(m)
    mha = kv_cache_bytes_per_token(m, kv_heads=m.num_attention_heads)
    S = f"inference (BF16 KV cache, batch-1 decode on one {gpu.label}, {gpu.hbm_tb_per_s:g} TB/s)"
    figs = [
        Figure("kv.bytes_per_token", S, "KV cache per token", per_token, "B",
               f"2 (K,V) × {m.num_layers} layers × {m.num_query_groups} KV heads × {m.kv_channels} × 2 bytes"),
        Figure("kv.bytes_per_sequence", S, "KV cache per full sequence", per_token * m.seq_length, "B",
               f"per token × {m.seq_length:,} tokens"),
        Figure("kv.bytes_per_token_without_gqa", S, "KV cache per token, no GQA", mha, "B",
               f"same with {m.num_attention_heads} KV heads (one per query head)"),
        Figure("kv.gqa_saving", S, "GQA saving", mha / per_token, "×",
               f"{m.num_attention_heads} query heads / {m.num_query_groups} KV heads"),
    ]
    for bound in decode_bounds(m, params, gpu.hbm_tb_per_s * 1e12):
        figs.append(Figure(f"decode.weight_bytes_{bound.weight_format}", S, f"weights, {bound.weight_format}",
                           bound.weight_bytes, "B", f"{params:,} parameters × {bound.weight_bytes / params:g} B"))
        figs.append(Figure(f"decode.tokens_per_s_{bound.weight_format}", S, f"decode bound, {bound.weight_format}",
                           bound.tokens_per_s, "tok/s",
                           f"{gpu.hbm_tb_per_s:g} TB/s / weight bytes (every weight read once per token);"
                           f" {bound.tokens_per_s_full_context:,.0f} tok/s at a full {m.seq_length:,}-token"
                           " KV cache, which quantizing weights does not shrink"))
    return figs


def figures(cfg) -> list[Figure]:
    """All derived figures of `cfg` (a loaded, validated Config), in the order SPEC.md lists them."""
    moe = [Figure(**row) for row in moe_rows(cfg)]
    lora = [Figure(**row) for row in lora_rows(cfg)]
    return (_parameter_figures(cfg) + moe + _budget_figures(cfg) + _compute_figures(cfg)
            + _memory_figures(cfg) + lora + _inference_figures(cfg))


def render_text(cfg, figs: list[Figure]) -> str:
    lines = [f"myllm plan: {cfg.model.name} — {layout_name(cfg.parallel)} on {cfg.parallel.world_size}"
             f" × {gpu_spec(cfg.plan.gpu).label}"]
    section = None
    for fig in figs:
        if fig.section != section:
            section = fig.section
            lines += ["", section]
        lines.append(f"  {fig.label:<32} {fig.text:>17}  {fig.why}")
    return "\n".join(lines)


def as_json_dict(figs: list[Figure]) -> dict:
    """{key: {value, unit, label, section, why}}; non-finite numbers become strings so the JSON stays strict."""
    out = {}
    for fig in figs:
        value = fig.value
        if isinstance(value, float) and not math.isfinite(value):
            value = str(value)
        out[fig.key] = {"value": value, "unit": fig.unit, "label": fig.label, "section": fig.section,
                        "why": fig.why}
    return out
