"""Where a process learns its place: the only module that reads launcher environment variables.

One `myllm train CONFIG` runs unchanged under each launcher; `detect()` says which one started it:

    torchrun         RANK / WORLD_SIZE / LOCAL_RANK, MASTER_ADDR / MASTER_PORT set by torchrun
    mpirun/mpiexec   OMPI_COMM_WORLD_* (OpenMPI) or PMI_* (MPICH/Intel hydra); rank 0 broadcasts its address and
                     a free port over mpi4py (MPI knows the ranks but not a TCP rendezvous)
    srun             SLURM_PROCID / SLURM_NTASKS / SLURM_LOCALID inside a job step (SLURM_STEP_ID set);
                     address = first host of the step's node list (`scontrol show hostnames`), port derived
                     from the job and step ids so every task computes the same one without talking

The closest launcher wins: torchrun started under srun sets RANK, mpirun inside an allocation sets OMPI_*.
A Slurm *batch shell* is not a step (SLURM_PROCID=0 and SLURM_NTASKS=N are set there too, but no
SLURM_STEP_ID): treating it as rank 0 of N would wait forever for the other N-1. A one-task step (the shell of
`srun --pty bash`) launches nothing either, so `myllm train --nproc-per-node 8` there starts torchrun itself.
MASTER_ADDR / MASTER_PORT exported by the user override the derived address under every launcher.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from dataclasses import dataclass
from typing import Callable, Mapping, Optional, Sequence

Env = Mapping[str, str]

SLURM_PORT_BASE, SLURM_PORT_SPAN = 20000, 10000   # 20000-29999: below Linux's ephemeral ports (32768+)


@dataclass(frozen=True)
class LaunchInfo:
    """What the launcher told this process. master_addr/port are None only for a single unlaunched process."""

    launcher: str                 # torchrun | mpi | slurm | none
    rank: int
    world_size: int
    local_rank: int
    master_addr: Optional[str] = None
    master_port: Optional[int] = None

    @property
    def address(self) -> Optional[str]:
        return f"tcp://{self.master_addr}:{self.master_port}" if self.master_addr and self.master_port else None


def _int(env: Env, *keys: str) -> Optional[int]:
    return next((int(env[k]) for k in keys if env.get(k)), None)


def which_launcher(env: Optional[Env] = None) -> str:
    """torchrun | mpi | slurm | none, innermost launcher first."""
    env = os.environ if env is None else env
    if env.get("RANK") and env.get("WORLD_SIZE"):
        return "torchrun"
    if env.get("OMPI_COMM_WORLD_SIZE") or env.get("PMI_SIZE"):
        return "mpi"
    step_tasks = _int(env, "SLURM_STEP_NUM_TASKS", "SLURM_NTASKS") or 0
    if env.get("SLURM_STEP_ID") and env.get("SLURM_PROCID") and step_tasks > 1:
        return "slurm"
    return "none"


def first_slurm_host(nodelist: str) -> str:
    """The first host of a Slurm node list ('gpu[07-09,12],cpu1' → 'gpu07'): `scontrol show hostnames` where
    it runs, else the same expansion in Python (the first range bound keeps its zero padding)."""
    try:
        out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True,
                             timeout=30)
        if out.returncode == 0 and out.stdout.split():
            return out.stdout.split()[0]
    except (OSError, subprocess.SubprocessError):
        pass
    match = re.match(r"([^,\[]+)(?:\[([^\],-]+)[^\]]*\]([^,]*))?", nodelist.strip())
    if not match:
        raise ValueError(f"cannot read a host from SLURM node list {nodelist!r}")
    return match.group(1) + (match.group(2) or "") + (match.group(3) or "")


def slurm_port(job_id: int, step_id: int) -> int:
    """Same on every task of a step without communication; differs between steps and between jobs, so two
    sweeps' steps or two jobs sharing a node do not collide (unless 10,000 jobs apart)."""
    return SLURM_PORT_BASE + (job_id * 8 + step_id % 8) % SLURM_PORT_SPAN


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("", 0))
        return sock.getsockname()[1]


def _mpi_broadcast(value):
    from mpi4py import MPI  # imported only under mpirun: MPI_Init happens here, once

    return MPI.COMM_WORLD.bcast(value, root=0)


def detect(env: Optional[Env] = None, broadcast: Optional[Callable] = None) -> LaunchInfo:
    """This process's rank, world size, local rank and rendezvous address from whichever launcher started it.

    Under MPI this is a collective (every rank must call it); `broadcast` replaces mpi4py's in unit tests.
    """
    env = os.environ if env is None else env
    launcher = which_launcher(env)
    user_addr, user_port = env.get("MASTER_ADDR") or None, _int(env, "MASTER_PORT")
    if launcher == "torchrun":
        return LaunchInfo("torchrun", int(env["RANK"]), int(env["WORLD_SIZE"]), _int(env, "LOCAL_RANK") or 0,
                          user_addr, user_port)
    if launcher == "mpi":
        rank = _int(env, "OMPI_COMM_WORLD_RANK", "PMI_RANK") or 0
        world = _int(env, "OMPI_COMM_WORLD_SIZE", "PMI_SIZE")
        local_rank = _int(env, "OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID") or 0
        local_size = _int(env, "OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS")
        if user_addr and user_port:
            return LaunchInfo("mpi", rank, world, local_rank, user_addr, user_port)
        mine = None
        if rank == 0:   # one node: loopback; several: rank 0's host name, which the others resolve
            mine = (user_addr or ("127.0.0.1" if local_size == world else socket.gethostname()),
                    user_port or _free_port())
        addr, port = (broadcast or _mpi_broadcast)(mine)
        return LaunchInfo("mpi", rank, world, local_rank, addr, port)
    if launcher == "slurm":
        nodelist = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")
        addr = user_addr or (first_slurm_host(nodelist) if nodelist else "127.0.0.1")
        port = user_port or slurm_port(int(env.get("SLURM_JOB_ID") or env.get("SLURM_JOBID") or 0),
                                       int(env["SLURM_STEP_ID"]))
        return LaunchInfo("slurm", int(env["SLURM_PROCID"]), _int(env, "SLURM_STEP_NUM_TASKS", "SLURM_NTASKS"),
                          _int(env, "SLURM_LOCALID") or 0, addr, port)
    return LaunchInfo("none", 0, 1, 0, user_addr, user_port)


def export_torch_env(info: LaunchInfo, env=None) -> None:
    """Write the torchrun-style variables (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) so libraries
    that read them before the process group exists (megatron-core falls back to RANK) agree with us, and a
    second `detect()` does not broadcast again."""
    env = os.environ if env is None else env
    env.update(RANK=str(info.rank), WORLD_SIZE=str(info.world_size), LOCAL_RANK=str(info.local_rank),
               MYLLM_LAUNCHER=info.launcher)
    if info.master_addr and info.master_port:
        env.update(MASTER_ADDR=info.master_addr, MASTER_PORT=str(info.master_port))


def launcher_world_size(env: Optional[Env] = None) -> Optional[int]:
    """The number of processes the launcher started, or None when no launcher is present. No communication."""
    env = os.environ if env is None else env
    launcher = which_launcher(env)
    if launcher == "torchrun":
        return int(env["WORLD_SIZE"])
    if launcher == "mpi":
        return _int(env, "OMPI_COMM_WORLD_SIZE", "PMI_SIZE")
    if launcher == "slurm":
        return _int(env, "SLURM_STEP_NUM_TASKS", "SLURM_NTASKS")
    return None


_RANK_KEYS = {"torchrun": ("RANK",), "mpi": ("OMPI_COMM_WORLD_RANK", "PMI_RANK"), "slurm": ("SLURM_PROCID",)}
_LOCAL_RANK_KEYS = {"torchrun": ("LOCAL_RANK",), "mpi": ("OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID"),
                    "slurm": ("SLURM_LOCALID",)}


def _rank_from(table: dict, env: Env) -> int:
    # the detected launcher's variable; in a partial environment (no launcher detected) the first one present,
    # which is 0 in a Slurm batch shell, the only such environment a launcher makes
    keys = table.get(which_launcher(env)) or tuple(k for group in table.values() for k in group)
    return _int(env, *keys) or 0


def launcher_rank(env: Optional[Env] = None) -> int:
    """This process's global rank (0 without a launcher). No communication."""
    return _rank_from(_RANK_KEYS, os.environ if env is None else env)


def launcher_local_rank(env: Optional[Env] = None) -> int:
    """This process's rank on its node, which picks its GPU (0 without a launcher). No communication."""
    return _rank_from(_LOCAL_RANK_KEYS, os.environ if env is None else env)


def local_device(local_rank: int, device_count: int) -> int:
    """The GPU this process binds to. Every task of a node sees all its GPUs (the Slurm scripts ask for GPUs per
    node, not per task): local rank r takes GPU r. A launcher that already narrowed CUDA_VISIBLE_DEVICES to one
    GPU per task leaves device 0."""
    if device_count <= 0:
        raise ValueError("no CUDA device visible — fix: run on a GPU node or use parallel.backend=gloo")
    if device_count == 1:
        return 0
    if local_rank >= device_count:
        raise ValueError(f"local rank {local_rank} but only {device_count} GPUs visible — fix: start at most"
                         f" {device_count} tasks per node (--ntasks-per-node)")
    return local_rank


def rendezvous_address(env: Optional[Env] = None) -> Optional[str]:
    """`tcp://ADDR:PORT` where the ranks meet, or None for a single unlaunched process (it picks its own).

    Called by `state.init_distributed` on every rank (a collective under MPI). Under srun or mpirun, with the real
    environment, it also exports the torchrun-style variables (`export_torch_env`); never for a process no
    launcher started (a test session's RANK=0 WORLD_SIZE=1 would leak into every torchrun/mpirun it spawns)."""
    info = detect(env)
    if env is None and info.launcher in ("mpi", "slurm"):
        export_torch_env(info)
    return info.address


def torchrun_invocation(target: Sequence[str], nproc: int,
                        env_extra: Optional[Mapping[str, str]] = None) -> tuple[list, dict]:
    """(command, environment) that start `target` under `torchrun --standalone --nproc-per-node=nproc`.

    `target` is what torchrun runs: `["-m", "myllm_mc.cli", "train", ...]` (this CLI relaunching itself) or
    `[script, *args]`. The environment is this process's plus `env_extra`, with OMP_NUM_THREADS defaulting to the
    CPU cores shared between the `nproc` processes (one at least); a value already set wins."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", *target]
    env = dict(os.environ, **(env_extra or {}))
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    return command, env


def relaunch_under_torchrun(target: Sequence[str], nproc: int,
                            env_extra: Optional[Mapping[str, str]] = None) -> int:
    """Run `target` under torchrun with `nproc` local processes (see `torchrun_invocation`), wait, and return
    torchrun's exit code."""
    command, env = torchrun_invocation(target, nproc, env_extra)
    return subprocess.call(command, env=env)
