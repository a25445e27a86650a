"""torch.distributed + megatron-core parallel_state from the config: the layout is configuration.

    runtime = init_distributed(cfg)     # process group, TP/PP/VPP/CP/DP and expert (EP/ETP) groups, seeds
    ...
    destroy()                           # groups and process group gone; init_distributed may run again

On a machine without CUDA the CPU bridge (`cpu_backend.install`) is switched on here, before megatron-core
creates anything, so every later megatron call finds the CPU.
"""

from __future__ import annotations

import random
import socket
import sys
import warnings
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist
from megatron.core import parallel_state as ps
from megatron.core import tensor_parallel

from myllm_mc.config import ConfigError
from myllm_mc.config.schema import Config

from . import cpu_backend, launch
from .hardware import cuda_available, resolve_backend, resolve_spec


@dataclass(frozen=True)
class Runtime:
    """Where this process stands after `init_distributed`."""

    rank: int
    world_size: int
    backend: str        # nccl | gloo
    spec: str           # te | local (what build_model will use)
    device: torch.device
    tensor_rank: int
    pipeline_rank: int
    context_rank: int
    data_rank: int


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _init_process_group(backend: str, timeout_minutes: int) -> None:
    world = launch.launcher_world_size() or 1
    rank = launch.launcher_rank()
    address = launch.rendezvous_address()
    if address is None:
        if world > 1:
            raise ConfigError(f"launcher reports {world} processes but no MASTER_ADDR/MASTER_PORT"
                              " — fix: launch with torchrun, or export MASTER_ADDR and MASTER_PORT")
        address = f"tcp://127.0.0.1:{_free_port()}"
    if backend == "nccl":
        torch.cuda.set_device(launch.local_device(launch.launcher_local_rank(), torch.cuda.device_count()))
    dist.init_process_group(backend, init_method=address, world_size=world, rank=rank,
                            timeout=timedelta(minutes=timeout_minutes))


def init_distributed(cfg: Config, seed: int | None = None, timeout_minutes: int = 10) -> Runtime:
    """Initialise torch.distributed (once per process) and megatron-core's model-parallel groups (again on each
    call, so one process can visit several layouts), then seed every RNG the way Megatron-LM does."""
    backend = resolve_backend(cfg.parallel)
    spec = resolve_spec(cfg.model)
    if not cuda_available():
        cpu_backend.install()
        # megatron's advice to set CUDA_DEVICE_MAX_CONNECTIONS (a CUDA stream setting) means nothing on CPU
        warnings.filterwarnings("ignore", message=r"When using async grad allreduce it is recommended")
    if not dist.is_initialized():
        _init_process_group(backend, timeout_minutes)
    p = cfg.parallel
    if p.world_size != "auto" and p.world_size != dist.get_world_size():
        raise ConfigError(f"parallel.world_size: the config resolves to {p.world_size} processes but"
                          f" {dist.get_world_size()} were started — fix: load the config with"
                          f" world_size={dist.get_world_size()} or launch {p.world_size} processes")
    if ps.model_parallel_is_initialized():
        _destroy_model_parallel()
    virtual = p.virtual_pipeline if p.virtual_pipeline and p.virtual_pipeline > 1 else None
    ps.initialize_model_parallel(
        tensor_model_parallel_size=p.tensor, pipeline_model_parallel_size=p.pipeline,
        virtual_pipeline_model_parallel_size=virtual, context_parallel_size=p.context,
        expert_model_parallel_size=p.expert, expert_tensor_parallel_size=p.expert_tensor,
        distributed_timeout_minutes=timeout_minutes)
    set_seed(cfg.training.seed if seed is None else seed)
    device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")
    return Runtime(rank=dist.get_rank(), world_size=dist.get_world_size(), backend=backend, spec=spec,
                   device=device, tensor_rank=ps.get_tensor_model_parallel_rank(),
                   pipeline_rank=ps.get_pipeline_model_parallel_rank(),
                   context_rank=ps.get_context_parallel_rank(), data_rank=ps.get_data_parallel_rank())


def set_seed(seed: int) -> None:
    """Megatron-LM's seeding: pipeline stages differ (seed + 100·stage), tensor-parallel ranks get their own
    tracked stream through megatron's model_parallel_cuda_manual_seed (CPU generator under the bridge)."""
    seed = seed + 100 * ps.get_pipeline_model_parallel_rank()
    random.seed(seed)
    torch.manual_seed(seed)
    np.random.seed(seed)
    tensor_parallel.model_parallel_cuda_manual_seed(seed)


def destroy(process_group: bool = True) -> None:
    """Tear down megatron's groups and (unless process_group=False) the torch.distributed process group."""
    _destroy_model_parallel()
    _stop_checkpoint_writer()
    if process_group and dist.is_initialized():
        dist.destroy_process_group()


def _destroy_model_parallel() -> None:
    """megatron's `destroy_model_parallel` only forgets its groups; each gloo group keeps its ~3 threads and
    sockets alive, so a process that visits many layouts (the test suite) piled up thousands of spinning threads.
    Destroy every group but the default one first: they all belong to the layout being left."""
    if dist.is_initialized():
        default = dist.distributed_c10d._get_default_group()
        for group in list(dist.distributed_c10d._world.pg_map):
            if group is not default:
                dist.destroy_process_group(group)
    ps.destroy_model_parallel()


def _stop_checkpoint_writer() -> None:
    """dist_checkpointing keeps a spawn-context Manager process for its write results (module global in
    filesystem_async); stop it so a finished run leaves no process behind. The next save starts a new one."""
    module = sys.modules.get("megatron.core.dist_checkpointing.strategies.filesystem_async")
    queue = getattr(module, "_results_queue", None)
    if queue is None:
        return
    manager = getattr(queue, "_manager", None)
    module._results_queue = None
    if manager is not None:
        manager.shutdown()
