"""One training step on megatron-core: micro-batches through `get_forward_backward_func`, then an optimizer
update that is skipped, not applied, when the loss or gradient norm is non-finite.

Loss convention (megatron-core's per-token mode, `calculate_per_token_loss=True`): each micro-batch returns the
*sum* of token losses and its count of non-masked tokens; `finalize_model_grads` divides the summed gradients by
the global token count. The loss is therefore the mean next-token cross-entropy over every non-padding token of
the global batch, independent of how it was split into micro-batches or data-parallel ranks — which is what makes
DP=2 and DP=1 with 2× accumulation agree.
"""

from __future__ import annotations

import math
import time
from functools import partial
from typing import Callable, List, Optional, Tuple


class DataTimer:
    """Wraps an iterator and accumulates the seconds spent waiting in `next()`."""

    def __init__(self, iterator):
        self.iterator, self.seconds = iterator, 0.0

    def __iter__(self):
        return self

    def __next__(self):
        start = time.perf_counter()
        try:
            return next(self.iterator)
        finally:
            self.seconds += time.perf_counter() - start


def loss_func(loss_mask, output_tensor):
    """(sum of masked token losses, token count, {name: (sum, count)}) — megatron's 3-tuple convention."""
    import torch
    losses = output_tensor.float().reshape(-1)
    mask = loss_mask.reshape(-1).float()
    loss_sum = torch.sum(losses * mask)
    num_tokens = mask.sum().to(torch.int)
    return loss_sum, num_tokens, {"lm loss": torch.stack([loss_sum.detach(), mask.sum()])}


def make_forward_step(batch_to_model_inputs: Callable, poison: Optional[Callable[[], bool]] = None):
    """The function megatron's schedules call per micro-batch: read a batch, run the chunk, return the loss fn.

    `poison` is a test hook: when it returns True the micro-batch's loss is multiplied by NaN.
    """

    def forward_step(data_iterator, model):
        batch = next(data_iterator) if data_iterator is not None else None
        tokens, position_ids, attention_mask, labels, loss_mask = batch_to_model_inputs(batch)
        output = model(tokens, position_ids, attention_mask, labels=labels)
        if poison is not None and poison():
            output = output * float("nan")
        return output, partial(loss_func, loss_mask)

    return forward_step


def reduce_loss(losses: List[dict]) -> Tuple[float, float]:
    """Global (loss sum, token count) on every rank: one all-reduce of two numbers over the world.

    Only one rank per data-parallel/context shard of the last pipeline stage contributes (TP ranks hold copies).
    """
    import torch
    from megatron.core import parallel_state as ps

    total = torch.zeros(2, dtype=torch.float64)
    if ps.is_pipeline_last_stage(ignore_virtual=True) and ps.get_tensor_model_parallel_rank() == 0:
        for item in losses:
            total += item["lm loss"].to(torch.float64).cpu()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    total = total.to(device)
    torch.distributed.all_reduce(total)
    return float(total[0]), float(total[1])


def optimizer_update(optimizer, scheduler, loss: float) -> Tuple[bool, Optional[float]]:
    """Clip and apply the update unless loss or gradient norm is non-finite. Returns (applied, grad_norm).

    Mirrors megatron's own `step()` (prepare → norm → clip → step) but looks at the norm *before* touching the
    weights, so a NaN batch costs one step instead of the run.
    """
    import torch
    from megatron.core.optimizer.clip_grads import clip_grad_by_total_norm_fp32

    found_inf = optimizer.prepare_grads()
    grad_norm = optimizer.get_grad_norm()
    grad_norm = float(grad_norm) if grad_norm is not None else None
    if found_inf or not math.isfinite(loss) or (grad_norm is not None and not math.isfinite(grad_norm)):
        return False, grad_norm
    with torch.no_grad():
        for sub in getattr(optimizer, "chained_optimizers", [optimizer]):
            if getattr(sub, "is_stub_optimizer", False):
                continue
            params = sub.get_parameters()
            if params and sub.config.clip_grad > 0.0:
                clip_grad_by_total_norm_fp32(params, sub.config.clip_grad, grad_norm,
                                             sub.config.use_precision_aware_optimizer_no_fp8_or_ds_fp8)
    optimizer.step_with_ready_grads()
    scheduler.step(increment=1)
    return True, grad_norm
