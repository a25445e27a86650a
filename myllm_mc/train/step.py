"""One training step on megatron-core: micro-batches through `get_forward_backward_func`, then an optimizer
update that is skipped, not applied, when the loss or gradient norm is non-finite.

Loss convention (megatron-core's per-token mode, `calculate_per_token_loss=True`): each micro-batch returns the
*sum* of token losses and its count of non-masked tokens (`myllm_mc.model.lm_loss`); `finalize_model_grads`
divides the summed gradients by the global token count. The loss is therefore the mean next-token cross-entropy
over every non-padding token of the global batch, however it was split into micro-batches and data-parallel
ranks — which is what makes DP=2 and DP=1 with 2× accumulation agree.
"""

from __future__ import annotations

import math
import time
from typing import Callable, List, Optional, Tuple

from myllm_mc.model import forward_step
from myllm_mc.model import reduce_loss as reduce_stage_loss


def comm_device() -> str:
    """Where small tensors for collectives live: nccl needs CUDA tensors, gloo CPU ones."""
    import torch
    return "cuda" if torch.cuda.is_available() else "cpu"


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


def make_forward_step(poison: Optional[Callable[[], bool]] = None):
    """megatron's `forward_step_func`; `poison` is a test hook that turns the micro-batch's loss into NaN."""
    if poison is None:
        return forward_step

    def poisoned_forward_step(data_iterator, model):
        output, loss_fn = forward_step(data_iterator, model)
        return (output * float("nan") if poison() else output), loss_fn

    return poisoned_forward_step


def global_loss(forward_data_store: List[dict]) -> float:
    """The step's mean token loss on every rank (it lives on the last pipeline stage only): the loop's
    skip/stop decisions must be the same everywhere or the collectives that follow would deadlock."""
    import torch
    from megatron.core import parallel_state as ps

    stage_loss = reduce_stage_loss(forward_data_store)          # collective over the DP×CP group of the last stage
    owner = (stage_loss is not None and ps.get_tensor_model_parallel_rank() == 0
             and ps.get_data_parallel_rank(with_context_parallel=True) == 0)
    value = torch.tensor([stage_loss if owner else 0.0], dtype=torch.float64, device=comm_device())
    torch.distributed.all_reduce(value)
    return float(value.item())


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
