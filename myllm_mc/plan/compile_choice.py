"""What `model.compile: auto` resolves to, and why: one function that the model builder, `myllm config show` and
`myllm benchmark` all call, so the three never disagree.

auto compiles each transformer layer (`torch.compile`, see model/build.py) only where that is verified and pays:
- verified: the layout tests/model/test_compile.py checks against eager (pretraining in one process: tensor,
  pipeline, context and data sizes 1; dense; local spec on CPU; fp32; recompute none; no LoRA; causal mask
  without document masking; no generation during training). Anything else stays eager under auto;
  `model.compile: true` still forces it there;
- pays: the run's model FLOPs (training.steps × the planner's FLOPs per step) reach AUTO_MIN_FLOPS. On the 2-core
  CPU box the compilation costs ~10 s with inductor's on-disk cache warm and ~25–40 s cold, and saves ~25 % of an
  eager step, which at the measured ~0.06 TFLOP/s is ~4 s per 1e12 FLOPs; 1e13 FLOPs (about 75 steps of the
  tiny preset) is the cold break-even with margin (docs/benchmarks.md). The test suite's short runs stay eager.
"""

from __future__ import annotations

from typing import Tuple

from myllm_mc.config import Config

from .flops import flops_per_iteration
from .params import padded_vocab_size

AUTO_MIN_FLOPS = 1e13


def run_flops(cfg: Config) -> float:
    """Model FLOPs of the whole run: training.steps optimizer steps at the global batch."""
    return cfg.training.steps * flops_per_iteration(
        cfg.model, cfg.training.global_batch_size, padded_vocab=padded_vocab_size(cfg.model, cfg.parallel.tensor))


def compile_choice(cfg: Config, spec: str = "local", cuda: bool = False, pretraining: bool = True) -> Tuple[bool, str]:
    """(compile the layers?, why) for this config. spec: the resolved layer spec (local|te); cuda: a GPU run;
    pretraining: False for fine-tuning (SFT/DPO/GRPO: other shapes and masks), inference and frozen reference
    models, which auto never compiles."""
    m, p = cfg.model, cfg.parallel
    if m.compile is True:
        return True, "model.compile: true"
    if m.compile is False:
        return False, "model.compile: false"
    unverified = [reason for reason, bad in [
        ("not a pretraining run", not pretraining),
        ("generation during training", bool(cfg.training.eval_tasks or cfg.training.eval_lm_eval)),
        ("GPU (verified on CPU only)", cuda),
        (f"spec {spec}", spec != "local"),
        (f"precision {m.precision}", m.precision != "fp32"),
        (f"recompute {m.recompute}", m.recompute != "none"),
        (f"world size {p.world_size}", p.world_size != 1),
        ("mixture of experts", m.moe.num_experts > 0),
        ("LoRA", cfg.align.lora.enabled),
        ("document masking", cfg.data.reset_attention_mask),
    ] if bad]
    if unverified:
        return False, f"auto: off — not verified here ({', '.join(unverified)})"
    flops = run_flops(cfg)
    if flops < AUTO_MIN_FLOPS:
        return False, (f"auto: off — a short run ({flops / 1e12:.2g}e12 model FLOPs < {AUTO_MIN_FLOPS / 1e12:.0f}e12):"
                       " the compilation would cost more than it saves")
    return True, (f"auto: on — verified layout, {flops / 1e12:.3g}e12 model FLOPs ≥ {AUTO_MIN_FLOPS / 1e12:.0f}e12"
                  " amortise the compilation")


def cpu_compile_choice(cfg: Config) -> Tuple[bool, str]:
    """`compile_choice` for a CPU pretraining run of `cfg` (spec auto is the local spec there), decided without
    asking torch for a GPU: what `myllm config show` prints and the benchmark pins (auto is off on GPUs)."""
    return compile_choice(cfg, "local" if cfg.model.spec == "auto" else cfg.model.spec, cuda=False)
