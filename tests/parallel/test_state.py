"""init_distributed / destroy and the launcher helpers, on one process."""

import pytest
import torch

from myllm_mc.config import ConfigError, load
from myllm_mc.parallel import launch


def test_launcher_env_is_read_from_torchrun_slurm_and_mpi():
    assert launch.launcher_rank({"RANK": "3"}) == 3
    assert launch.launcher_rank({"SLURM_PROCID": "5"}) == 5
    assert launch.launcher_local_rank({"OMPI_COMM_WORLD_LOCAL_RANK": "1"}) == 1
    assert launch.launcher_rank({}) == 0 and launch.launcher_local_rank({}) == 0
    assert launch.rendezvous_address({"MASTER_ADDR": "node1", "MASTER_PORT": "29500"}) == "tcp://node1:29500"
    assert launch.rendezvous_address({}) is None



def test_torchrun_invocation_relaunches_a_module_with_thread_defaults(monkeypatch):
    import sys
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(launch.os, "cpu_count", lambda: 8)
    command, env = launch.torchrun_invocation(["-m", "myllm_mc.cli", "train", "c.yaml"], 2, {"EXTRA": "1"})
    assert command == [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                       "-m", "myllm_mc.cli", "train", "c.yaml"]
    assert env["OMP_NUM_THREADS"] == "4" and env["EXTRA"] == "1"
    assert launch.torchrun_invocation(["x.py"], 16)[1]["OMP_NUM_THREADS"] == "1"     # one thread at least
    monkeypatch.setenv("OMP_NUM_THREADS", "3")                                       # the user's value wins
    assert launch.torchrun_invocation(["x.py"], 2)[1]["OMP_NUM_THREADS"] == "3"

def test_init_distributed_sets_megatron_groups_and_seeds(single_rank):
    from megatron.core import parallel_state as ps

    from myllm_mc.parallel.state import init_distributed

    runtime = init_distributed(single_rank, seed=11)
    expected = ("nccl", "te") if torch.cuda.is_available() else ("gloo", "local")
    assert runtime.world_size == 1 and runtime.rank == 0
    if not torch.cuda.is_available():
        assert (runtime.backend, runtime.spec, runtime.device.type) == expected + ("cpu",)
    assert ps.model_parallel_is_initialized() and ps.get_tensor_model_parallel_world_size() == 1
    drawn = torch.rand(3)
    init_distributed(single_rank, seed=11)          # re-entry: groups rebuilt, same seed, same stream
    assert torch.equal(drawn, torch.rand(3))


def test_re_initialising_leaks_no_process_groups_or_threads(single_rank):
    """Each gloo group holds threads and sockets; megatron's destroy only forgets its groups. A process that
    re-lays itself out (the test suite does so hundreds of times) must end each layout with the same count."""
    import os

    import torch.distributed as dist

    from myllm_mc.parallel.state import init_distributed

    def counts():
        return len(dist.distributed_c10d._world.pg_map), len(os.listdir("/proc/self/task"))

    init_distributed(single_rank)
    before = counts()
    for _ in range(4):
        init_distributed(single_rank)
    assert counts() == before


def test_init_distributed_rejects_a_layout_for_another_world_size(single_rank):
    from myllm_mc.parallel.state import init_distributed

    cfg = load("configs/tiny.yaml", ["parallel.tensor=2"], world_size=2)
    with pytest.raises(ConfigError, match="2 processes but 1 were started") as err:
        init_distributed(cfg)
    assert "\n" not in str(err.value)
