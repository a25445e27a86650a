"""Every layout that cannot work is rejected at load time, with a one-line error that names key and fix."""

import subprocess
import sys

import pytest

from myllm_mc.config import ConfigError, load


@pytest.mark.parametrize("overrides, world, message", [
    (["parallel.tensor=2", "parallel.data=2"], 8,
     "parallel: world size 8 ≠ tensor 2 × pipeline 1 × context 1 × data 2 = 4"),
    (["parallel.tensor=4"], 6, "parallel: world size 6 is not divisible by tensor 4"),
    (["parallel.tensor=4"], 4, "parallel.tensor: 4 does not divide model.num_query_groups 2"),
    (["parallel.tensor=8", "model.num_query_groups=4"], 8, "parallel.tensor: 8 does not divide model.num_attention_heads 4"),
    (["parallel.pipeline=3"], 3, "parallel.pipeline: model.num_layers 4 is not divisible by pipeline 3 = 3"),
    (["parallel.pipeline=2", "parallel.virtual_pipeline=4"], 2,
     "parallel.pipeline: model.num_layers 4 is not divisible by pipeline 2 × virtual 4 = 8"),
    (["parallel.virtual_pipeline=2"], 1, "parallel.virtual_pipeline: interleaving needs parallel.pipeline ≥ 2"),
    (["training.global_batch_size=20"], 2, "training.global_batch_size: 20 is not divisible by micro_batch_size 4 × data 2 = 8"),
    (["parallel.context=2", "model.seq_length=250"], 2,
     "parallel.context: model.seq_length 250 is not divisible by 2 × context 2"),
    (["parallel.sequence_parallel=true"], 2, "parallel.sequence_parallel: needs tensor parallelism"),
    (["model.num_query_groups=3"], 1, "model.num_query_groups: 3 does not divide num_attention_heads 4"),
    (["optimizer.min_lr=1"], 1, "optimizer.min_lr: 1.0 is above optimizer.lr"),
    (["schedule.wsd_decay_fraction=1.5"], 1, "schedule.wsd_decay_fraction: 1.5 must be in (0, 1]"),
    (["training.micro_batch_size=0"], 1, "training.micro_batch_size: must be at least 1"),
    (["checkpoint.resume=auto", "checkpoint.dir=null"], 1, "checkpoint.resume: auto needs checkpoint.dir"),
    (["data.split=90,10"], 1, "data.split: '90,10' must be three non-negative numbers"),
    (["parallel.world_size=4"], 2, "parallel.world_size: config says 4 but the launcher started 2 processes"),
    (["model.precision=fp8", "model.spec=local"], 1, "model.precision: fp8 needs Transformer Engine kernels"),
])
def test_invalid_layouts_are_rejected(overrides, world, message):
    with pytest.raises(ConfigError) as err:
        load("configs/tiny.yaml", overrides, world_size=world)
    assert message in str(err.value)
    assert "fix" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("overrides, world, expect", [
    ([], 4, dict(data=4)),
    (["parallel.tensor=2", "parallel.sequence_parallel=true"], 4, dict(data=2)),
    (["parallel.pipeline=2", "parallel.virtual_pipeline=2"], 2, dict(data=1)),
    (["parallel.context=2"], 2, dict(data=1)),
    (["parallel.tensor=2", "parallel.pipeline=2"], 4, dict(data=1)),
])
def test_valid_layouts_resolve_data_size(overrides, world, expect):
    cfg = load("configs/tiny.yaml", overrides, world_size=world)
    assert cfg.parallel.data == expect["data"] and cfg.parallel.world_size == world


def test_without_launcher_data_auto_means_one_process_per_model_replica():
    cfg = load("configs/tiny.yaml", ["parallel.tensor=2"])
    assert cfg.parallel.world_size == 2 and cfg.parallel.data == 1


def test_bad_config_never_starts_a_process(tmp_path):
    """The CLI rejects a bad layout in the parent, before torchrun or any worker could be spawned."""
    marker = tmp_path / "started"
    code = (
        "import sys, subprocess\n"
        "real = subprocess.Popen.__init__\n"
        f"def spy(self, *a, **k):\n    open({str(marker)!r}, 'w').close(); return real(self, *a, **k)\n"
        "subprocess.Popen.__init__ = spy\n"
        "from myllm_mc.cli import main\n"
        "sys.exit(main(['config', 'check', 'configs/tiny.yaml', '--world-size', '3', '--set', 'parallel.tensor=2']))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("config error: parallel: world size 3 is not divisible by tensor 2")
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not marker.exists()
