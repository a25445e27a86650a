"""Session fixtures for the launch tests: a real single-node Slurm, the tiny preset's data, and one
uninterrupted torchrun run every launcher's numbers are compared against."""

from __future__ import annotations

import sys

import pytest

from tests.launch.launch_helpers import CORPUS, REPO, metrics, run_in_group, subprocess_env, tiny_overrides
from tests.launch.slurm_cluster import SlurmCluster, missing_binaries


@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
    """munged + slurmctld + slurmd under a temp dir (no root-owned /etc/slurm), stopped by PID at the end."""
    missing = missing_binaries()
    if missing:
        pytest.skip(f"Slurm binaries absent ({', '.join(missing)}): apt-get install slurm-wlm munge")
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    try:
        cluster.start()
        print(f"\nslurm setup: {cluster.setup_seconds:.2f} s (munged + slurmctld + slurmd until the node is idle)")
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def launch_data(tmp_path_factory):
    """An 8,192-entry tokenizer and the shipped corpus as .bin/.idx (the tiny preset's data), plus three small
    JSONL shards for the preprocessing comparison."""
    import zstandard

    from myllm_mc.data.preprocess import preprocess
    from myllm_mc.data.tokenizer_training import train_tokenizer

    root = tmp_path_factory.mktemp("launch-data")
    train_tokenizer([CORPUS], 8192, root / "tokenizer")
    preprocess([CORPUS], str(root / "corpus"), str(root / "tokenizer" / "tokenizer.json"), workers=0,
               progress=False)
    lines = zstandard.ZstdDecompressor().decompress(CORPUS.read_bytes()).decode("utf-8").splitlines()
    shards = []
    for i in range(3):
        shards.append(root / f"part{i}.jsonl")
        shards[-1].write_text("\n".join(lines[i * 40:(i + 1) * 40]) + "\n")
    return {"tokenizer": str(root / "tokenizer" / "tokenizer.json"), "prefix": str(root / "corpus_text_document"),
            "shards": shards}



@pytest.fixture(scope="session")
def reference_run(launch_data, tmp_path_factory):
    """The tiny preset trained uninterrupted at DP=2 under torchrun (`myllm train --nproc-per-node 2`): the rows
    every other launcher and the preempted-and-requeued Slurm job must reproduce bit for bit."""
    run_dir = tmp_path_factory.mktemp("torchrun-reference")
    command = [sys.executable, "-m", "myllm_mc.cli", "train", "configs/tiny.yaml", "--nproc-per-node", "2",
               "--set", *tiny_overrides(launch_data, run_dir), f"checkpoint.dir={run_dir / 'ckpt'}"]
    done = run_in_group(command, cwd=REPO, env=subprocess_env())
    assert done.returncode == 0, done.stdout[-3000:]
    return metrics(run_dir)
