"""From budgets to a config: propose a model shape, tokens, batch, steps and layout, and say why.

The shape rule, in order (each step is printed with the output):
1. Parameter target N: given (--params); or from a compute budget C = GPUs × peak × MFU × hours, as
   N = C / (6D) when tokens are given, else N = sqrt(C / (6·r)) at r tokens per parameter (Chinchilla's
   compute-optimal r ≈ 20, Hoffmann et al. 2022, unless --tokens-per-param says otherwise).
2. Width: head dimension 128 (what fused attention kernels are tuned for) and hidden a multiple of 256, so
   heads = hidden / 128 is even and tensor parallelism 2 always divides them. Depth follows width at a fixed aspect ratio hidden / layers = 64: Kaplan et al. 2020
   (§3.1, Fig. 5) find loss nearly flat over a wide band of aspect ratios, and MobileLLM (Liu et al. 2024)
   finds deeper-and-thinner better below ~1B, which puts the choice at the deep end of the models in use.
   The width whose (hidden, hidden/64) shape has the parameter count closest to N (in ratio) wins.
3. Depth is then tuned within the band hidden/80 … hidden/48 to the layer count closest to N, so the budget is
   met to within one layer (~3 %) without leaving the band.
4. Key/value heads (GQA, Ainslie et al. 2023): the smallest divisor of the head count that is ≥ 2 (one KV
   head, MQA, would rule out tensor parallelism) and leaves at most 8 query heads per KV head (the largest
   sharing in common use, e.g. Llama 3 70B); it shrinks the KV cache by heads / groups.
5. FFN: SwiGLU at 8/3 × hidden (the same parameters as a 4h GeLU MLP; Shazeer 2020), rounded up to a multiple
   of 256 for GEMM tiles.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

from myllm_mc.config import ConfigError, from_dict

from .budget import hours_at
from .hardware import gpu_spec
from .layouts import layout_options, recommendation
from .params import parameter_breakdown

HEAD_DIM = 128
WIDTH_MULTIPLE = 256         # hidden: an even number of 128-wide heads
ASPECT_RATIO = 64            # hidden / layers
ASPECT_BAND = (48, 80)
MAX_QUERY_HEADS_PER_KV = 8
CHINCHILLA_TOKENS_PER_PARAMETER = 20.0
TARGET_TOKENS_PER_STEP = 2**20


@dataclass(frozen=True)
class Shape:
    hidden: int
    layers: int
    heads: int
    kv_groups: int
    ffn: int


@dataclass
class DerivedPlan:
    shape: Shape
    parameters: int
    tokens: float
    global_batch: int
    steps: int
    config: dict                               # a loadable config (plain data)
    reasons: list = field(default_factory=list)  # (name, value text, why)


def kv_groups_for(heads: int) -> int:
    for groups in range(2, heads + 1):
        if heads % groups == 0 and heads // groups <= MAX_QUERY_HEADS_PER_KV:
            return groups
    return 1


def ffn_for(hidden: int) -> int:
    return math.ceil(8 * hidden / 3 / 256) * 256


def shape_for(hidden: int, layers: int) -> Shape:
    heads = hidden // HEAD_DIM
    return Shape(hidden, layers, heads, kv_groups_for(heads), ffn_for(hidden))


def count(shape: Shape, vocab: int, context: int) -> int:
    return parameter_breakdown(_model_dict_as_cfg(shape, vocab, context)).total


def closest_shape(target: float, vocab: int, context: int) -> Shape:
    """Steps 2-3 of the module docstring."""
    widths = range(WIDTH_MULTIPLE, 32768 + 1, WIDTH_MULTIPLE)
    base = min((shape_for(h, h // ASPECT_RATIO) for h in widths),
               key=lambda s: abs(math.log(count(s, vocab, context) / target)))
    low, high = math.ceil(base.hidden / ASPECT_BAND[1]), base.hidden // ASPECT_BAND[0]
    return min((shape_for(base.hidden, layers) for layers in range(max(1, low), high + 1)),
               key=lambda s: (abs(count(s, vocab, context) - target), abs(s.layers - base.layers)))


class _ModelView:
    """Just the ModelConfig fields parameter_breakdown reads, for candidate shapes (no validation needed)."""

    def __init__(self, **fields):
        self.__dict__.update(fields)


def _model_fields(shape: Shape, vocab: int, context: int) -> dict:
    return {"num_layers": shape.layers, "hidden_size": shape.hidden, "num_attention_heads": shape.heads,
            "num_query_groups": shape.kv_groups, "kv_channels": HEAD_DIM, "ffn_hidden_size": shape.ffn,
            "vocab_size": vocab, "seq_length": context}


def _model_dict_as_cfg(shape: Shape, vocab: int, context: int) -> _ModelView:
    return _ModelView(normalization="RMSNorm", activation="swiglu", position_embedding="rope", add_bias=False,
                      qkv_bias=False, qk_norm=False, tie_embeddings=True, **_model_fields(shape, vocab, context))


def derive(*, params: Optional[float] = None, tokens: Optional[float] = None,
           tokens_per_param: Optional[float] = None, hours: Optional[float] = None, gpus: int = 8,
           gpu: str = "h100", mfu: float = 0.5, vocab: int = 65536, context: int = 8192) -> DerivedPlan:
    """Propose a config for the given budgets (see module docstring for the rules)."""
    spec = gpu_spec(gpu)
    if params is None and hours is None:
        raise ConfigError("plan --derive: give a parameter budget (--params 1.05e9) or a compute budget"
                          " (--hours H with --gpu/--gpus/--mfu) — fix: add one of them")
    if tokens is not None and tokens_per_param is not None:
        raise ConfigError("plan --derive: --tokens and --tokens-per-param both given — fix: keep one")
    for name, value in {"params": params, "tokens": tokens, "tokens-per-param": tokens_per_param,
                        "hours": hours, "vocab": vocab, "context": context, "gpus": gpus}.items():
        if value is not None and value <= 0:
            raise ConfigError(f"plan --derive: --{name} must be positive, got {value} — fix: pass a positive --{name}")
    if not 0 < mfu <= 1:
        raise ConfigError(f"plan --derive: --mfu {mfu} must be a fraction in (0, 1] — fix: e.g. --mfu 0.5")
    compute = gpus * spec.peak_flops("bf16") * mfu * hours * 3600 if hours is not None else None
    reasons = []
    if params is not None:
        target, target_why = params, "given (--params)"
    elif tokens is not None:
        target, target_why = compute / (6 * tokens), f"C / (6D) with C = {compute:.3g} FLOPs and D = {tokens:.4g}"
    else:
        ratio = tokens_per_param or CHINCHILLA_TOKENS_PER_PARAMETER
        target = math.sqrt(compute / (6 * ratio))
        target_why = f"sqrt(C / (6 × {ratio:g} tokens/param)) with C = {compute:.3g} FLOPs: compute-optimal split"
    reasons.append(("parameter target", f"{target:.4g}", target_why))

    shape = closest_shape(target, vocab, context)
    parameters = count(shape, vocab, context)
    if tokens is not None:
        training_tokens, tokens_why = tokens, "given (--tokens)"
    elif tokens_per_param is not None:
        training_tokens, tokens_why = tokens_per_param * parameters, f"{tokens_per_param:g} tokens per parameter"
    elif compute is not None:
        training_tokens, tokens_why = compute / (6 * parameters), "the compute budget C / (6N) for this N"
    else:
        training_tokens = CHINCHILLA_TOKENS_PER_PARAMETER * parameters
        tokens_why = "Chinchilla's compute-optimal ≈ 20 tokens per parameter (Hoffmann et al. 2022)"
    global_batch = max(1, 2 ** round(math.log2(TARGET_TOKENS_PER_STEP / context)))
    tokens_per_step = global_batch * context
    steps = int(training_tokens // tokens_per_step)
    if steps < 1:
        raise ConfigError(f"plan --derive: {training_tokens:.3g} tokens is less than one step of {tokens_per_step:,}"
                          " tokens — fix: a larger token or compute budget")
    warmup = min(2000, max(1, steps // 10))

    base = shape_for(shape.hidden, shape.hidden // ASPECT_RATIO)
    reasons += [
        ("hidden_size", f"{shape.hidden:,}", f"multiple of {WIDTH_MULTIPLE} (an even number of {HEAD_DIM}-wide heads); the width whose"
         f" {shape.hidden}/{ASPECT_RATIO} = {base.layers}-layer shape is closest to the target"),
        ("num_layers", f"{shape.layers}", f"aspect ratio hidden/layers = {shape.hidden / shape.layers:.0f}"
         f" (rule {ASPECT_RATIO}, band {ASPECT_BAND[0]}–{ASPECT_BAND[1]}); the depth in the band closest to the target"),
        ("num_attention_heads", f"{shape.heads} × {HEAD_DIM}", f"hidden / head dim {HEAD_DIM}"),
        ("num_query_groups", f"{shape.kv_groups}", f"smallest divisor ≥ 2 of {shape.heads} heads with ≤"
         f" {MAX_QUERY_HEADS_PER_KV} query heads per KV head: KV cache ÷ {shape.heads // shape.kv_groups};"
         f" tensor parallelism must divide {shape.kv_groups}"),
        ("ffn_hidden_size", f"{shape.ffn:,}", f"8/3 × {shape.hidden} = {8 * shape.hidden / 3:,.1f}, rounded up to a"
         " multiple of 256 (SwiGLU at the parameter cost of a 4h GeLU MLP)"),
        ("parameters", f"{parameters:,}", f"{parameters / target - 1:+.2%} from the target; tied embeddings,"
         " RMSNorm, RoPE, no biases"),
        ("training tokens", f"{training_tokens:.4g}", f"{tokens_why}: {training_tokens / parameters:.1f} tokens/param"),
        ("global_batch_size", f"{global_batch}", f"≈ {TARGET_TOKENS_PER_STEP:,} tokens per step ({global_batch} ×"
         f" {context:,}), a power of two near the ~1M-token batches used at this scale"),
        ("steps", f"{steps:,}", f"floor({training_tokens:.4g} / {tokens_per_step:,})"),
        ("warmup_steps", f"{warmup:,}", "2,000 steps or 10 % of the run, whichever is smaller"),
    ]
    model = {"name": f"derived-{parameters / 1e9:.2f}b", **_model_fields(shape, vocab, context),
             "normalization": "RMSNorm", "activation": "swiglu", "position_embedding": "rope",
             "rotary_base": 500000 if context >= 8192 else 10000, "add_bias": False, "tie_embeddings": True,
             "recompute": "selective", "precision": "bf16"}
    config = {"model": model,
              "parallel": {"world_size": gpus, "distributed_optimizer": True},
              "training": {"micro_batch_size": 1, "global_batch_size": global_batch, "steps": steps},
              "schedule": {"warmup_steps": warmup, "decay": "cosine"},
              "plan": {"gpu": spec.name, "mfu": mfu, "training_tokens": float(training_tokens)}}
    cfg = from_dict(config)
    options, _ = layout_options(cfg, gpus, spec.name)
    if options:
        best = options[0].parallel
        config["parallel"].update({"tensor": best.tensor, "pipeline": best.pipeline, "context": best.context,
                                   "data": best.data, "sequence_parallel": best.sequence_parallel})
        if best.virtual_pipeline:
            config["parallel"]["virtual_pipeline"] = best.virtual_pipeline
    reasons.append(("layout", "", recommendation(options, spec.name)))
    hours_needed = hours_at(6 * parameters * training_tokens, gpus, spec.peak_flops("bf16"), mfu)
    reasons.append(("wall-clock (6ND)", f"{hours_needed:.1f} h", f"{gpus} × {spec.label} at {mfu:.0%} MFU"))
    return DerivedPlan(shape, parameters, training_tokens, global_batch, steps, config, reasons)
