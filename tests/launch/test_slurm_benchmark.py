"""`sbatch slurm/benchmark.sh` validates its config in the batch shell before the sweep starts any task.
(The sweep itself is `myllm benchmark`'s, tested with that stage.)"""

import re

import pytest

from tests.launch.launch_helpers import REPO, job_log, sbatch


@pytest.mark.slow
def test_benchmark_job_rejects_a_bad_layout_before_srun(slurm, tmp_path):
    env = {"CONFIG": str(REPO / "configs" / "tiny.yaml"), "OVERRIDES": "parallel.pipeline=3",
           "SWEEP": "training.micro_batch_size=1,2", "OUT": str(tmp_path / "bench")}
    done = sbatch(slurm, "benchmark.sh", tmp_path, env)
    log = job_log(tmp_path)
    assert done.returncode == 2, log
    assert "sweep: training.micro_batch_size=1,2" in log and f"results in {tmp_path / 'bench'}" in log
    errors = [line for line in log.splitlines() if line.startswith("config error: ")]
    assert len(errors) == 1 and "pipeline 3" in errors[0] and "fix:" in errors[0], log
    assert not (tmp_path / "bench").exists()
    assert not [line for line in log.splitlines() if re.match(r"\d+: ", line)]
