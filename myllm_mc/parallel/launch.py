"""Where a process learns its place: the only module that reads launcher environment variables.

torchrun sets RANK/WORLD_SIZE/LOCAL_RANK; Slurm's srun sets SLURM_PROCID/SLURM_NTASKS/SLURM_LOCALID;
OpenMPI's mpirun sets OMPI_COMM_WORLD_RANK/SIZE/LOCAL_RANK. (Full rendezvous handling: the launch issue.)
"""

from __future__ import annotations

import os
from typing import Mapping, Optional

_WORLD_KEYS = ("WORLD_SIZE", "SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE")


def launcher_world_size(env: Optional[Mapping[str, str]] = None) -> Optional[int]:
    """The number of processes the launcher started, or None when no launcher is present."""
    env = os.environ if env is None else env
    for key in _WORLD_KEYS:
        if env.get(key):
            return int(env[key])
    return None


_RANK_KEYS = ("RANK", "SLURM_PROCID", "OMPI_COMM_WORLD_RANK", "PMI_RANK")
_LOCAL_RANK_KEYS = ("LOCAL_RANK", "SLURM_LOCALID", "OMPI_COMM_WORLD_LOCAL_RANK")


def launcher_rank(env: Optional[Mapping[str, str]] = None) -> int:
    """This process's global rank (0 without a launcher)."""
    env = os.environ if env is None else env
    return next((int(env[k]) for k in _RANK_KEYS if env.get(k)), 0)


def launcher_local_rank(env: Optional[Mapping[str, str]] = None) -> int:
    """This process's rank on its node, which picks its GPU (0 without a launcher)."""
    env = os.environ if env is None else env
    return next((int(env[k]) for k in _LOCAL_RANK_KEYS if env.get(k)), 0)


def rendezvous_address(env: Optional[Mapping[str, str]] = None) -> Optional[str]:
    """`tcp://MASTER_ADDR:MASTER_PORT` when the launcher set them, else None (a single process picks its own)."""
    env = os.environ if env is None else env
    if env.get("MASTER_ADDR") and env.get("MASTER_PORT"):
        return f"tcp://{env['MASTER_ADDR']}:{env['MASTER_PORT']}"
    return None
