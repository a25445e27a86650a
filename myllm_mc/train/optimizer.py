"""AdamW and its learning-rate schedule, both megatron-core's own, configured from our config groups.

Weight decay follows the usual practice: none on norms and biases (megatron-core's default override for
1-D parameters), and none on the embedding unless `optimizer.decay_embeddings` (it is also the output layer
when tied, and decaying rare-token rows toward zero distorts their logits).
"""

from __future__ import annotations

from typing import List

import torch
from megatron.core.optimizer import OptimizerConfig, ParamKey, ParamPredicate, get_megatron_optimizer
from megatron.core.optimizer_param_scheduler import OptimizerParamScheduler, ParamGroupOverride

from myllm_mc.config import Config


def build_optimizer(cfg: Config, model_chunks: List):
    """`get_megatron_optimizer` over the DDP-wrapped chunks: distributed optimizer when configured."""
    o, m = cfg.optimizer, cfg.model
    opt_config = OptimizerConfig(
        optimizer="adam", lr=o.lr, min_lr=o.min_lr, weight_decay=o.weight_decay, adam_beta1=o.beta1,
        adam_beta2=o.beta2, adam_eps=o.eps, clip_grad=o.clip_grad, decoupled_weight_decay=True,
        bf16=m.precision in ("bf16", "fp8"), fp16=False,
        params_dtype=torch.bfloat16 if m.precision in ("bf16", "fp8") else torch.float32,
        use_distributed_optimizer=cfg.parallel.distributed_optimizer,
        overlap_param_gather=cfg.parallel.overlap_param_gather and cfg.parallel.distributed_optimizer,
    )
    no_decay = ParamKey(name="*.bias", predicate=ParamPredicate(name="one_dim", fn=lambda p: p.dim() == 1))
    overrides = {no_decay: ParamGroupOverride(wd_mult=0.0)}
    if not o.decay_embeddings:
        overrides[ParamKey(attr="is_embedding_or_output_parameter")] = ParamGroupOverride(wd_mult=0.0)
    return get_megatron_optimizer(opt_config, model_chunks, config_overrides=overrides)


def build_scheduler(cfg: Config, optimizer):
    """Linear warmup, then cosine / linear / WSD decay to min_lr over the run (megatron's OptimizerParamScheduler)."""
    s, t, o = cfg.schedule, cfg.training, cfg.optimizer
    style = {"cosine": "cosine", "linear": "linear", "constant": "constant", "wsd": "WSD"}[s.decay]
    wsd_steps = max(1, int(round(t.steps * s.wsd_decay_fraction))) if s.decay == "wsd" else None
    warmup = min(s.warmup_steps, t.steps - 1)   # a smoke run shorter than its warmup warms up over all but one step
    return OptimizerParamScheduler(
        optimizer, init_lr=0.0, max_lr=o.lr, min_lr=o.min_lr, lr_warmup_steps=warmup,
        lr_decay_steps=t.steps, lr_decay_style=style, start_wd=o.weight_decay, end_wd=o.weight_decay,
        wd_incr_steps=t.steps, wd_incr_style="constant", use_checkpoint_opt_param_scheduler=True,
        override_opt_param_scheduler=False, wsd_decay_steps=wsd_steps,
        lr_wsd_decay_style="cosine" if s.decay == "wsd" else None)
