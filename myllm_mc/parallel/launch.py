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
