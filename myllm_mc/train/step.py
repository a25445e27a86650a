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

import torch
import torch.distributed as dist
from megatron.core import parallel_state as ps
from megatron.core.optimizer.clip_grads import clip_grad_by_total_norm_fp32
from megatron.core.pipeline_parallel import get_forward_backward_func

from myllm_mc.model import forward_step
from myllm_mc.parallel.hardware import comm_device  # hardware is decided in parallel/, once


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


def make_forward_step(forward_step_func=forward_step, poison: Optional[Callable[[], bool]] = None):
    """`forward_step_func` for megatron's schedules; `poison` is a test hook that turns the micro-batch's loss
    into NaN."""
    if poison is None:
        return forward_step_func

    def poisoned_forward_step(data_iterator, model):
        output, loss_fn = forward_step_func(data_iterator, model)
        return (output * float("nan") if poison() else output), loss_fn

    return poisoned_forward_step


def run_schedule(model: List, forward_step_func, iterators: List, num_microbatches: int, seq_length: int,
                 micro_batch_size: int, forward_only: bool) -> List[dict]:
    """One global batch through megatron's pipeline schedule (train: forward + backward; eval: forward only).
    Interleaved schedules read one iterator per model chunk; the others read one."""
    return get_forward_backward_func()(
        forward_step_func=forward_step_func, data_iterator=iterators if len(iterators) > 1 else iterators[0],
        model=model, num_microbatches=num_microbatches, seq_length=seq_length, micro_batch_size=micro_batch_size,
        decoder_seq_length=seq_length, forward_only=forward_only)


def global_metrics(forward_data_store: List[dict], keys) -> dict:
    """Every report key's global mean (sum / count over micro-batches and DP×CP ranks) on every rank. The
    reports live on the last pipeline stage only; one of its ranks broadcasts them with a sum all-reduce."""
    keys = tuple(keys)
    means = [0.0] * len(keys)
    owner = False
    if forward_data_store:
        totals = torch.stack([torch.stack([entry[key] for entry in forward_data_store]).sum(0) for key in keys])
        torch.distributed.all_reduce(totals, group=ps.get_data_parallel_group(with_context_parallel=True))
        means = [(total[0] / total[1].clamp(min=1)).item() for total in totals]
        owner = ps.get_tensor_model_parallel_rank() == 0 and ps.get_data_parallel_rank(with_context_parallel=True) == 0
    value = torch.tensor([m if owner else 0.0 for m in means], dtype=torch.float64, device=comm_device())
    torch.distributed.all_reduce(value)
    return dict(zip(keys, value.tolist()))


def optimizer_update(optimizer, scheduler, loss: float) -> Tuple[bool, Optional[float]]:
    """Clip and apply the update unless loss or gradient norm is non-finite. Returns (applied, grad_norm).

    Mirrors megatron's own `step()` (prepare → norm → clip → step) but looks at the norm *before* touching the
    weights, so a NaN batch costs one step instead of the run.
    """
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


def all_reduce_max(flag: int) -> int:
    """The largest `flag` over every rank (a stop any rank asks for is everyone's stop)."""
    tensor = torch.tensor([flag], dtype=torch.int32, device=comm_device())
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return int(tensor.item())
