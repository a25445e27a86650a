"""Token budget, steps and wall-clock: the arithmetic that turns a config into "how long, how many steps".

Kept apart from the report so the derive mode and the training code reuse the same rules.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .flops import flops_per_token, six_nd
from .hardware import gpu_spec
from .params import padded_vocab_size, parameter_breakdown


@dataclass(frozen=True)
class TrainingBudget:
    parameters: int
    tokens: float                   # training tokens (plan.training_tokens, else steps × tokens per step)
    tokens_from: str                # where `tokens` came from
    tokens_per_step: int
    steps: int                      # floor(tokens / tokens per step)
    tokens_per_parameter: float
    initial_loss: float             # ln(vocab): cross-entropy of a uniform prediction
    six_nd_flops: float
    megatron_flops: float           # tokens × Megatron-LM FLOPs per token (attention and logits included)
    gpus: int
    peak_flops_per_gpu: float
    mfu: float
    six_nd_hours: float
    megatron_hours: float
    active_parameters: int = 0      # per token (MoE: total less the experts a token is not routed to); 6ND uses it


def hours_at(flops: float, gpus: int, peak_flops_per_gpu: float, mfu: float) -> float:
    """Wall-clock hours to do `flops` on `gpus` GPUs each sustaining mfu × peak."""
    return flops / (gpus * peak_flops_per_gpu * mfu) / 3600.0


def training_budget(cfg) -> TrainingBudget:
    """Everything SPEC.md derives from the token budget, for `cfg`'s model, batch, GPU and layout."""
    m = cfg.model
    breakdown = parameter_breakdown(m)
    parameters = breakdown.total
    tokens_per_step = cfg.training.global_batch_size * m.seq_length
    if cfg.plan.training_tokens is not None:
        tokens, source = float(cfg.plan.training_tokens), "plan.training_tokens"
    else:
        tokens, source = float(cfg.training.steps * tokens_per_step), "training.steps × tokens per step"
    gpu = gpu_spec(cfg.plan.gpu)
    peak = gpu.peak_flops(m.precision)
    gpus = cfg.parallel.world_size if cfg.parallel.world_size != "auto" else 1
    per_token = flops_per_token(m, padded_vocab=padded_vocab_size(m, cfg.parallel.tensor))
    six = six_nd(breakdown.active, tokens)
    megatron = per_token * tokens
    return TrainingBudget(
        parameters=parameters, tokens=tokens, tokens_from=source, tokens_per_step=tokens_per_step,
        steps=int(tokens // tokens_per_step), tokens_per_parameter=tokens / parameters,
        initial_loss=math.log(m.vocab_size), six_nd_flops=six, megatron_flops=megatron, gpus=gpus,
        peak_flops_per_gpu=peak, mfu=cfg.plan.mfu, six_nd_hours=hours_at(six, gpus, peak, cfg.plan.mfu),
        megatron_hours=hours_at(megatron, gpus, peak, cfg.plan.mfu), active_parameters=breakdown.active)
