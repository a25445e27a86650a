"""GRPO's mathematics on plain tensors: group-relative advantages, the clipped ratio, the k3 KL estimator, the three
ways of averaging over tokens, and the policy entropy over a vocabulary split across tensor-parallel ranks.

Kept apart from the objective (grpo.py) so that every term can be checked against a direct computation
(tests/align/test_grpo_loss.py) without a model.

Per completion token t of completion i (mask m_it = 1 on the tokens the policy sampled):
    ratio_it = exp(log π(t) − log π_old(t))
    pg_it    = −min(ratio_it · A_i, clip(ratio_it, 1 − ε_low, 1 + ε_high) · A_i)
    kl_it    = exp(log π_ref − log π) − (log π_ref − log π) − 1         (k3: ≥ 0, unbiased for KL(π‖π_ref))
    l_it     = pg_it + β · kl_it
Aggregation (what one step minimises; each returns (sum, count) so megatron divides by the global count):
    token     Σ_it m·l / Σ_it m                    every token weighs the same (DAPO); long answers weigh more
    sequence  (1/N) Σ_i (Σ_t m·l / Σ_t m)          the original GRPO; a token of a short answer weighs more,
                                                    which biases towards short correct and long wrong answers
    constant  (1/N) Σ_i Σ_t m·l / max_new_tokens   Dr. GRPO: no length bias at all; the scale is fixed
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch
import torch.distributed as dist

AGGREGATIONS = ("token", "sequence", "constant")


def group_advantages(rewards: torch.Tensor, group_size: int, scale: bool = True, eps: float = 1e-4
                     ) -> Tuple[torch.Tensor, torch.Tensor]:
    """(advantage per completion, True per completion whose group has any reward spread).

    rewards: [groups × group_size], a group's completions consecutive. A = r − mean(group), divided by the
    group's sample standard deviation (+ eps) when `scale` (GRPO), left unscaled otherwise (Dr. GRPO).
    A group of equal rewards gets A = 0 exactly, whatever `scale` is.
    """
    if rewards.numel() % group_size:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of {group_size}")
    grouped = rewards.double().view(-1, group_size)
    centred = grouped - grouped.mean(dim=1, keepdim=True)
    spread = grouped.max(dim=1).values > grouped.min(dim=1).values
    centred = torch.where(spread[:, None], centred, torch.zeros_like(centred))     # no rounding residue
    if scale and group_size > 1:
        centred = centred / (grouped.std(dim=1, keepdim=True) + eps)
    return centred.view(-1).to(rewards.dtype), spread.repeat_interleave(group_size)


def token_terms(logp: torch.Tensor, old_logp: torch.Tensor, ref_logp: Optional[torch.Tensor],
                advantages: torch.Tensor, eps_low: float, eps_high: float, beta: float) -> Dict[str, torch.Tensor]:
    """Per-token tensors [rows, positions]: "loss" (pg + β·kl, differentiable in logp), "pg", "kl", "ratio",
    "clipped" (1 where the clip decided the value). advantages: [rows]."""
    ratio = torch.exp(logp - old_logp)
    adv = advantages[:, None].to(logp.dtype)
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1.0 - eps_low, 1.0 + eps_high) * adv
    pg = -torch.minimum(unclipped, clipped)
    kl = k3(ref_logp, logp) if ref_logp is not None else torch.zeros_like(logp)
    loss = pg + beta * kl if beta != 0.0 else pg
    return {"loss": loss, "pg": pg, "kl": kl, "ratio": ratio, "clipped": (clipped < unclipped).to(logp.dtype)}


def k3(ref_logp: torch.Tensor, logp: torch.Tensor) -> torch.Tensor:
    """Schulman's k3 estimator of KL(π‖π_ref) per sampled token: exp(d) − d − 1 with d = log π_ref − log π."""
    delta = ref_logp - logp
    return torch.exp(delta) - delta - 1.0


def aggregate(per_token: torch.Tensor, mask: torch.Tensor, mode: str, max_new_tokens: int
              ) -> Tuple[torch.Tensor, torch.Tensor]:
    """(sum, count) of this micro-batch under `mode` (see the module docstring); the loss is Σsum / Σcount over
    the global batch. Rows whose mask is all zero (dropped groups) count for nothing under "token" and count
    as a sequence with zero loss under "sequence"/"constant" unless the caller excludes them."""
    mask = mask.to(per_token.dtype)
    if mode == "token":
        return (per_token * mask).sum(), mask.sum().to(torch.int)
    live = mask.sum(dim=1) > 0
    if mode == "sequence":
        per_row = (per_token * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)
    elif mode == "constant":
        per_row = (per_token * mask).sum(dim=1) / float(max_new_tokens)
    else:
        raise ValueError(f"loss aggregation {mode!r} — fix: one of {', '.join(AGGREGATIONS)}")
    return (per_row * live).sum(), live.sum().to(torch.int)


def _tp_all_reduce(tensor: torch.Tensor, op) -> torch.Tensor:
    # megatron-core on use: `myllm finetune grpo`'s launching parent imports grpo.py, and so this module, for its
    # check
    from megatron.core import parallel_state as ps

    if ps.model_parallel_is_initialized() and ps.get_tensor_model_parallel_world_size() > 1:
        dist.all_reduce(tensor, op=op, group=ps.get_tensor_model_parallel_group())
    return tensor


@torch.no_grad()
def vocab_parallel_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of softmax(logits) per position when each tensor-parallel rank holds a slice of the vocabulary:
    H = log Z − Σ p·(l − m), with the max m, Z = Σ exp(l − m) and Σ exp(l − m)(l − m) reduced over the ranks."""
    logits = logits.float()
    top = _tp_all_reduce(logits.max(dim=-1, keepdim=True).values, dist.ReduceOp.MAX)
    shifted = logits - top
    weights = torch.exp(shifted)
    z = _tp_all_reduce(weights.sum(dim=-1), dist.ReduceOp.SUM)
    weighted = _tp_all_reduce(torch.where(weights > 0, weights * shifted, torch.zeros_like(shifted)).sum(dim=-1),
                              dist.ReduceOp.SUM)
    return torch.log(z) - weighted / z


def mask_padded_vocab(logits: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Logits with the columns past the tokenizer's vocabulary (megatron pads it for TP) pushed to −1e30, so the
    trainer's distribution is the one the sampler draws from. logits: this TP rank's slice [..., V/tp]."""
    from megatron.core import parallel_state as ps

    width = logits.size(-1)
    start = ps.get_tensor_model_parallel_rank() * width if ps.model_parallel_is_initialized() else 0
    if start + width <= vocab_size:
        return logits
    column = torch.arange(start, start + width, device=logits.device)
    return logits.masked_fill(column >= vocab_size, -1e30)


def token_logps(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """log π(label) per position from [rows, positions, V/tp] logits, on megatron's vocab-parallel cross-entropy
    (differentiable, exact under TP). megatron's function shifts its input in place: compute anything else
    from these logits (the entropy) first."""
    from megatron.core.tensor_parallel import vocab_parallel_cross_entropy

    return -vocab_parallel_cross_entropy(logits.float(), labels)
