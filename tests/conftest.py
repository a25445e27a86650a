"""Shared fixtures: one single-process gloo group for the whole session (megatron-core needs its groups even
on one rank), re-laid out per test by `init_distributed`."""

import pytest


@pytest.fixture(scope="session")
def tiny_cfg():
    from myllm_mc.config import load

    return load("configs/tiny.yaml", ["model.seq_length=128", "training.micro_batch_size=1",
                                      "training.global_batch_size=4"], world_size=1)


@pytest.fixture
def single_rank(tiny_cfg):
    """torch.distributed with one gloo rank and megatron groups at tensor=pipeline=1, seeded; yields the config."""
    from myllm_mc.parallel.state import init_distributed

    init_distributed(tiny_cfg)
    yield tiny_cfg


def pytest_sessionfinish(session, exitstatus):
    import sys

    if "myllm_mc.parallel.state" in sys.modules:
        sys.modules["myllm_mc.parallel.state"].destroy()
