"""The launch layer on fake torchrun / srun / mpirun environments, then on the real srun and mpirun: every
launcher yields the same rank, world size, local rank and one rendezvous address shared by all ranks."""

import json
import os
import re
import subprocess
import sys

import pytest

from myllm_mc.parallel import launch
from myllm_mc.parallel.launch import LaunchInfo, detect, first_slurm_host, local_device, slurm_port
from tests.helpers import missing
from tests.launch.launch_helpers import REPO, subprocess_env

# rank 3 of 8 tasks on one 8-GPU node, rendezvous on host gpu07
TORCHRUN = {"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "3", "LOCAL_WORLD_SIZE": "8",
            "MASTER_ADDR": "gpu07", "MASTER_PORT": "29872"}
SLURM_STEP = {"SLURM_JOB_ID": "1234", "SLURM_STEP_ID": "0", "SLURM_PROCID": "3", "SLURM_NTASKS": "8",
              "SLURM_STEP_NUM_TASKS": "8", "SLURM_LOCALID": "3", "SLURM_NODEID": "0",
              "SLURM_JOB_NODELIST": "gpu[07-08]", "SLURM_STEP_NODELIST": "gpu07"}
OPENMPI = {"OMPI_COMM_WORLD_RANK": "3", "OMPI_COMM_WORLD_SIZE": "8", "OMPI_COMM_WORLD_LOCAL_RANK": "3",
           "OMPI_COMM_WORLD_LOCAL_SIZE": "8"}
EXPECTED = (3, 8, 3)


def as_tuple(info: LaunchInfo):
    return (info.rank, info.world_size, info.local_rank)


def test_torchrun_slurm_and_mpi_environments_give_the_same_place():
    sent = []
    from_rank0 = lambda value: ("gpu07", 29872)                                  # noqa: E731 — a fake bcast
    infos = {"torchrun": detect(TORCHRUN), "slurm": detect(SLURM_STEP),
             "mpi": detect(OPENMPI, broadcast=lambda value: sent.append(value) or from_rank0(value))}
    for name, info in infos.items():
        assert info.launcher == name
        assert as_tuple(info) == EXPECTED, name
        assert info.address == "tcp://gpu07:29872", name
    assert sent == [None]                          # rank 3 contributes nothing; it takes rank 0's address
    # the Slurm port is derived, not configured: 20000 + (job 1234 × 8 + step 0) mod 10000 = 29872
    assert slurm_port(1234, 0) == 29872
    for name, env in (("torchrun", TORCHRUN), ("slurm", SLURM_STEP), ("mpi", OPENMPI)):
        assert (launch.launcher_rank(env), launch.launcher_world_size(env), launch.launcher_local_rank(env)) \
            == EXPECTED, name


def test_mpi_rank0_picks_loopback_on_one_node_and_its_hostname_across_nodes():
    single = detect(dict(OPENMPI, OMPI_COMM_WORLD_RANK="0"), broadcast=lambda value: value)
    assert single.master_addr == "127.0.0.1" and 1024 <= single.master_port < 65536
    multi = detect(dict(OPENMPI, OMPI_COMM_WORLD_RANK="0", OMPI_COMM_WORLD_LOCAL_SIZE="4"),
                   broadcast=lambda value: value)
    import socket
    assert multi.master_addr == socket.gethostname()
    pinned = detect(dict(OPENMPI, MASTER_ADDR="head", MASTER_PORT="4000"),
                    broadcast=lambda value: pytest.fail("exported MASTER_* must skip the broadcast"))
    assert pinned.address == "tcp://head:4000"
    hydra = detect({"PMI_RANK": "3", "PMI_SIZE": "8", "MPI_LOCALRANKID": "3"}, broadcast=lambda v: ("h", 1))
    assert (hydra.launcher, *as_tuple(hydra)) == ("mpi", *EXPECTED)


def test_innermost_launcher_wins_and_a_batch_shell_or_one_task_step_launches_nothing():
    batch_shell = {k: v for k, v in SLURM_STEP.items() if not k.startswith("SLURM_STEP")}
    assert detect(batch_shell).launcher == "none" and launch.launcher_world_size(batch_shell) is None
    assert launch.rendezvous_address(batch_shell) is None
    interactive = dict(SLURM_STEP, SLURM_PROCID="0", SLURM_LOCALID="0", SLURM_NTASKS="1", SLURM_STEP_NUM_TASKS="1")
    assert detect(interactive).launcher == "none" and launch.launcher_world_size(interactive) is None
    under_srun = dict(SLURM_STEP, RANK="5", WORLD_SIZE="16", LOCAL_RANK="1", MASTER_ADDR="x", MASTER_PORT="1")
    assert (detect(under_srun).launcher, launch.launcher_rank(under_srun)) == ("torchrun", 5)
    mpirun_in_allocation = {**batch_shell, **OPENMPI, "OMPI_COMM_WORLD_RANK": "6"}
    assert launch.launcher_rank(mpirun_in_allocation) == 6
    assert detect(mpirun_in_allocation, broadcast=lambda v: ("a", 2)).launcher == "mpi"
    exported = dict(SLURM_STEP, MASTER_ADDR="10.0.0.1", MASTER_PORT="23456")
    assert detect(exported).address == "tcp://10.0.0.1:23456"


def test_slurm_ports_are_per_job_and_step_and_below_the_ephemeral_range():
    ports = {slurm_port(job, step) for job in range(100, 140) for step in range(4)}
    assert len(ports) == 160 and min(ports) >= 20000 and max(ports) < 30000
    assert detect(dict(SLURM_STEP, SLURM_STEP_ID="1")).master_port == 29873


def test_first_host_without_scontrol(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    assert first_slurm_host("gpu[07-09,12],cpu1") == "gpu07"
    assert first_slurm_host("a-b[001-004]") == "a-b001"
    assert first_slurm_host("node5,node1") == "node5"
    assert first_slurm_host("x[3,5-6]") == "x3"


def test_first_host_matches_scontrol(slurm, monkeypatch):
    monkeypatch.setenv("SLURM_CONF", str(slurm.conf))
    for nodelist in ("gpu[07-09,12],cpu1", "a-b[001-004]", "node5,node1", "x[3,5-6]", "n[010-012]"):
        shown = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True,
                               check=True).stdout.split()
        assert first_slurm_host(nodelist) == shown[0]


def test_gpu_binding_by_local_rank():
    assert local_device(3, 8) == 3                   # all of a node's GPUs visible to every task: rank r → GPU r
    assert local_device(3, 1) == 0                   # the launcher already narrowed CUDA_VISIBLE_DEVICES
    with pytest.raises(ValueError, match="local rank 8 but only 8 GPUs visible — fix: start at most 8 tasks"):
        local_device(8, 8)
    with pytest.raises(ValueError, match="no CUDA device visible"):
        local_device(0, 0)


PROBE = ("import json; from myllm_mc.parallel import launch; i = launch.detect(); "
         "print('PROBE ' + json.dumps([i.launcher, i.rank, i.world_size, i.local_rank, i.address]))")


def probes(output: str):
    """Each task's PROBE record; mpirun may join two tasks' lines into one (their writes interleave)."""
    return sorted(json.loads(record) for record in re.findall(r"PROBE (\[[^\]]*\])", output))


def test_real_srun_and_mpirun_give_each_task_its_place(slurm, tmp_path):
    srun = subprocess.run(["srun", "--ntasks=2", "--cpus-per-task=1", sys.executable, "-c", PROBE], cwd=tmp_path,
                          env=dict(slurm.env, **subprocess_env()), capture_output=True, text=True, timeout=120)
    got = probes(srun.stdout)
    assert [g[:4] for g in got] == [["slurm", 0, 2, 0], ["slurm", 1, 2, 1]], srun.stdout + srun.stderr
    assert got[0][4] == got[1][4]
    host, port = got[0][4][len("tcp://"):].rsplit(":", 1)
    assert 20000 <= int(port) < 30000 and host == subprocess.run(
        ["hostname", "-s"], capture_output=True, text=True).stdout.strip()
    if missing.mpirun():
        pytest.skip(missing.mpirun())
    mpi = subprocess.run(["mpirun", "--allow-run-as-root", "--oversubscribe", "-np", "2", sys.executable, "-c",
                          PROBE], cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=120)
    got = probes(mpi.stdout)
    assert [g[:4] for g in got] == [["mpi", 0, 2, 0], ["mpi", 1, 2, 1]], mpi.stdout + mpi.stderr
    assert got[0][4] == got[1][4] and got[0][4].startswith("tcp://127.0.0.1:")


def test_only_launched_processes_export_torchrun_variables(monkeypatch):
    launcher_keys = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_", "MYLLM_LAUNCHER", "SLURM_", "OMPI_", "PMI_")
    environ = {k: v for k, v in os.environ.items() if not k.startswith(launcher_keys)}
    monkeypatch.setattr(os, "environ", environ)              # a private copy: nothing leaks into other tests
    assert launch.rendezvous_address() is None and "RANK" not in environ        # a plain process: nothing
    environ.update(SLURM_STEP)
    assert launch.rendezvous_address() == "tcp://gpu07:29872"
    assert [environ[k] for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")] == \
        ["3", "8", "3", "gpu07", "29872"]
    assert detect().address == "tcp://gpu07:29872" and launch.launcher_rank() == 3       # still the same place
