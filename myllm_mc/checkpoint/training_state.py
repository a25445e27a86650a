"""Full training state through megatron-core `dist_checkpointing` (torch_dist format), resharding-capable.

What a checkpoint holds: model chunks (sharded tensors), optimizer (distributed-optimizer shards in the
`fully_reshardable` layout, so any DP/TP/PP can load it), LR scheduler, RNG states (CPU, CUDA, megatron's
tracker) per model-parallel rank, step and consumed samples (the data position). The directory protocol
(temp dir → fsync → rename → `latest`) lives in `store`.

Three fixes to megatron-core 0.16.1's distributed-optimizer *load* with torch's AdamW (no Apex/TE, i.e. every
CPU run) are applied here, on the optimizer instance, not globally; each was measured (see
shared notes "megatron-core-on-cpu"):
  1. a fresh optimizer has no state to load into → initialise it first (`_init_optimizer_states_with_dummy_values`);
  2. `_set_main_param_and_optimizer_states` copies every state key, but the checkpoint has no per-param `step`
     → copy all keys except `step`, under no_grad;
  3. after load every parameter's `step` is ONE shared tensor that torch's AdamW increments once per parameter,
     silently corrupting bias correction → give each parameter its own copy.
"""

from __future__ import annotations

import contextlib
import logging
import random
import shutil
import types
from pathlib import Path
from typing import Callable, List, Optional

import numpy as np

from myllm_mc.errors import debug_enabled
from myllm_mc.parallel.hardware import cuda_available  # hardware is decided in parallel/, once

from . import store
from .errors import CheckpointError
from .space import free_bytes
from .weights import sharded_model_state, state_keys

# chained_optim_avoid_prefix: an MoE model at EP > 1 gets megatron's ChainedOptimizer (dense + expert parameters),
# at EP 1 one optimizer; unprefixed keys let either load the other's state (reshard EP2 → EP1 → EP2). No effect on
# a dense model, whose optimizer is never chained.
OPTIMIZER_METADATA = {"distrib_optim_sharding_type": "fully_reshardable", "chained_optim_avoid_prefix": True}


def _layout() -> dict:
    from megatron.core import parallel_state as ps
    return {"tensor": ps.get_tensor_model_parallel_world_size(), "pipeline": ps.get_pipeline_model_parallel_world_size(),
            "context": ps.get_context_parallel_world_size(), "data": ps.get_data_parallel_world_size(),
            "virtual_pipeline": ps.get_virtual_pipeline_model_parallel_world_size(), **_expert_layout()}


def _expert_layout() -> dict:
    """Expert sizes, recorded only when they differ from a dense run's (so dense checkpoints keep their layout)."""
    from megatron.core import parallel_state as ps
    expert, expert_tensor = ps.get_expert_model_parallel_world_size(), ps.get_expert_tensor_parallel_world_size()
    return {**({"expert": expert} if expert > 1 else {}),
            **({"expert_tensor": expert_tensor} if expert_tensor != ps.get_tensor_model_parallel_world_size() else {})}


def _rng_state() -> dict:
    import torch
    from megatron.core import tensor_parallel
    state = {"random": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
             "tracker": tensor_parallel.get_cuda_rng_tracker().get_states()}
    if cuda_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: dict) -> None:
    import torch
    from megatron.core import tensor_parallel
    random.setstate(state["random"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and cuda_available():
        torch.cuda.set_rng_state(state["cuda"])
    tensor_parallel.get_cuda_rng_tracker().set_states(state["tracker"])


def _rng_sharded_object(data):
    """One RNG state per (pipeline, tensor, context) rank, replicated over data parallel ranks."""
    from megatron.core import parallel_state as ps
    from megatron.core.dist_checkpointing.mapping import ShardedObject
    shape = (ps.get_pipeline_model_parallel_world_size(), ps.get_tensor_model_parallel_world_size(),
             ps.get_context_parallel_world_size())
    offset = (ps.get_pipeline_model_parallel_rank(), ps.get_tensor_model_parallel_rank(),
              ps.get_context_parallel_rank())
    return ShardedObject("rng_state", data, shape, offset, replica_id=ps.get_data_parallel_rank())


def _unwrapped(model: List) -> List:
    return [chunk.module for chunk in model]          # DDP → GPTModel (or Float16Module around it)


def _sharded_state(model: List, optimizer, is_loading: bool, with_rng: bool, rng_data=None,
                   trainable_only: bool = False) -> dict:
    state = sharded_model_state(_unwrapped(model), trainable_only)
    model_only = dict(state)
    if optimizer is not None:
        state["optimizer"] = optimizer.sharded_state_dict(model_only, is_loading=is_loading,
                                                          metadata=OPTIMIZER_METADATA)
    if with_rng:
        state["rng_state"] = _rng_sharded_object(rng_data)
    return state


def save(root: str, step: int, model: List, optimizer, scheduler, consumed_samples: int, meta_extra: dict,
         faults=None, async_queue=None, on_published: Optional[Callable[[int, Path], None]] = None,
         needed_bytes: Optional[int] = None, trainable_only: bool = False) -> None:
    """Save everything for `step` crash-safely, then call `on_published(step, directory)`. Collective.

    With `async_queue` (megatron's AsyncCallsQueue) the tensors are written by a forked process while training
    goes on; publication (rename + `latest`) happens when the queue finalizes the request on every rank. A
    forked writer sees the memory of the moment it was forked, so the checkpoint is of exactly this step.
    `trainable_only`: the model part holds only parameters that require gradients (LoRA adapters).
    """
    import torch.distributed as dist
    from megatron.core import dist_checkpointing
    from torch.distributed.checkpoint.api import CheckpointException

    root = Path(root)
    if dist.get_rank() == 0:
        store.prepare_tmp(root, step)
    dist.barrier()
    tmp = store.tmp_dir_for(root, step)
    state = _sharded_state(model, optimizer, is_loading=False, with_rng=True, rng_data=_rng_state(),
                           trainable_only=trainable_only)
    state["scheduler"] = scheduler.state_dict()
    state["step"] = step
    state["consumed_samples"] = consumed_samples
    meta = {"step": step, "consumed_samples": consumed_samples, "layout": _layout(), **meta_extra}

    def publish() -> None:
        if faults is not None:
            faults.maybe_kill_in_save(step)
        dist.barrier()                                   # every rank's shards are on disk
        final = root / store.step_dir_name(step)
        if dist.get_rank() == 0:
            store.commit(root, step, meta)
        dist.barrier()
        if on_published is not None:
            on_published(step, final)

    if async_queue is None:
        try:
            with _quiet_writer_log():
                dist_checkpointing.save(state, str(tmp))
        except (Exception, CheckpointException) as err:   # DCP gathers a failed write (a full disk) onto every
            if dist.get_rank() == 0:                        # rank, as a CheckpointException: a BaseException
                shutil.rmtree(tmp, ignore_errors=True)
            raise CheckpointError(_save_failure(err, root, step, needed_bytes)) from None
        publish()
    else:
        request = dist_checkpointing.save(state, str(tmp), async_sharded_save=True)
        request.add_finalize_fn(publish)
        async_queue.schedule_async_request(request)


@contextlib.contextmanager
def _quiet_writer_log():
    """megatron's writer logs each worker's failure before raising; the raise becomes our one line (the log
    comes back with MYLLM_DEBUG=1)."""
    log = logging.getLogger("megatron.core.dist_checkpointing.strategies.filesystem_async")
    level = log.level
    if not debug_enabled():
        log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        log.setLevel(level)


def _save_failure(err: BaseException, root: Path, step: int, needed_bytes: Optional[int]) -> str:
    """One line for a failed save (called after the partial save is removed).

    A full disk shows up as `[Errno 28]`, or — when torch's zip writer hits it — as "unexpected pos A vs B" (the
    write came up short and the error was lost), so free space is measured too: less than needed is a full disk.
    """
    text = str(err)
    free = free_bytes(root)
    full = "[Errno 28]" in text or "unexpected pos" in text or (needed_bytes is not None and free < needed_bytes)
    tail = (" — the partial save was removed and the last checkpoint is intact — fix: free space, lower "
            "checkpoint.keep_last, or set checkpoint.dir elsewhere")
    if full:
        needs = f"needs ~{needed_bytes / 2**20:,.1f} MiB, " if needed_bytes else ""
        return f"no space left in {root} while saving step {step} ({needs}{free / 2**20:,.1f} MiB free){tail}"
    errno_line = next((line for line in text.splitlines() if "[Errno" in line), None)
    cause = (errno_line[errno_line.index("[Errno"):].strip() if errno_line else
             text.strip().splitlines()[0] if text.strip() else type(err).__name__)
    return f"saving step {step} to {root} failed: {cause[:200]}{tail}"


def _prepare_distributed_optimizer_for_load(optimizer) -> None:
    import torch
    from megatron.core.optimizer.distrib_optimizer import DistributedOptimizer

    def set_states_except_step(self, model_param, tensors):           # fix 2
        group_index, group_order = self.model_param_group_index_map[model_param]
        main_param = self.optimizer.param_groups[group_index]["params"][group_order]
        dst = {"param": main_param, **self.optimizer.state[main_param]}
        with torch.no_grad():
            for key, tensor in dst.items():
                if key != "step":
                    tensor.copy_(tensors[key])

    for sub in getattr(optimizer, "chained_optimizers", [optimizer]):
        if isinstance(sub, DistributedOptimizer) and not sub.config.use_precision_aware_optimizer_no_fp8_or_ds_fp8:
            if not sub.optimizer.state:
                sub._init_optimizer_states_with_dummy_values()                 # fix 1
            sub._set_main_param_and_optimizer_states = types.MethodType(set_states_except_step, sub)


def _unshare_adam_steps(optimizer) -> None:
    for sub in getattr(optimizer, "chained_optimizers", [optimizer]):
        inner = getattr(sub, "optimizer", None)
        for param_state in getattr(inner, "state", {}).values():
            if "step" in param_state and hasattr(param_state["step"], "clone"):
                param_state["step"] = param_state["step"].clone()             # fix 3


def load(path: Path, model: List, optimizer, scheduler, load_optimizer: bool = True,
         trainable_only: bool = False) -> dict:
    """Load a checkpoint saved at any layout into the current one. Returns its meta (step, consumed_samples, ...).

    RNG states are restored only when the layout is unchanged (they are per model-parallel rank).
    """
    from megatron.core import dist_checkpointing

    meta = store.read_meta(path)
    same_layout = meta.get("layout") == _layout()
    if optimizer is not None and load_optimizer:
        _prepare_distributed_optimizer_for_load(optimizer)
    state = _sharded_state(model, optimizer if load_optimizer else None, is_loading=True, with_rng=same_layout,
                           trainable_only=trainable_only)
    state["scheduler"] = None
    state["step"] = None
    state["consumed_samples"] = None
    loaded = dist_checkpointing.load(state, str(path))
    for key, chunk in zip(state_keys(len(model)), _unwrapped(model)):
        result = chunk.load_state_dict(loaded[key], strict=not trainable_only)
        if trainable_only and result.unexpected_keys:     # the frozen rest comes from elsewhere (the base)
            raise CheckpointError(f"{path}: tensors {result.unexpected_keys[:3]} fit no trainable parameter")
    if optimizer is not None and load_optimizer:
        optimizer.load_state_dict(loaded["optimizer"])
        _unshare_adam_steps(optimizer)
    if scheduler is not None and loaded.get("scheduler") is not None:
        scheduler.load_state_dict(loaded["scheduler"])
    if same_layout:
        _set_rng_state(loaded["rng_state"])
    return {**meta, "rng_restored": same_layout}
