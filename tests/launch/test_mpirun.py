"""`mpirun -np 2 myllm train configs/tiny.yaml` trains for real: same numbers as torchrun, to the last bit."""

import math
import sys

import pytest

from tests.helpers import missing
from tests.launch.launch_helpers import REPO, STEPS, metrics, numerics, run_in_group, subprocess_env, tiny_overrides

NO_MPI = missing.mpi()


@pytest.mark.slow
@pytest.mark.skipif(NO_MPI is not None, reason=str(NO_MPI))          # before the torchrun reference is built
def test_mpirun_trains_the_tiny_preset_like_torchrun(launch_data, reference_run, tmp_path):
    command = ["mpirun", "--allow-run-as-root", "--oversubscribe", "-np", "2", "-x", "PYTHONPATH", "-x",
               "OMP_NUM_THREADS", sys.executable, "-m", "myllm_mc.cli", "train", "configs/tiny.yaml", "--set",
               *tiny_overrides(launch_data, tmp_path), f"checkpoint.dir={tmp_path / 'ckpt'}"]
    done = run_in_group(command, cwd=REPO, env=subprocess_env())
    assert done.returncode == 0, done.stdout[-3000:]
    rows = metrics(tmp_path)
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))
    assert abs(rows[0]["loss"] - math.log(8192)) < 0.1                # an untrained model predicts uniformly
    assert rows[-1]["loss"] < rows[0]["loss"] - 1.5
    assert rows[-1]["consumed_samples"] == STEPS * 8                   # both ranks' batches were counted
    assert numerics(rows) == numerics(reference_run)                   # DP=2 over MPI == DP=2 over torchrun
    assert (tmp_path / "ckpt" / f"step_{STEPS:07d}").is_dir()
    assert f"done: step {STEPS}/{STEPS}" in done.stdout
