"""`sbatch slurm/preprocess.sh`: MPI preprocessing across the job's tasks writes the same bytes as one
`tools/preprocess_data.py` process; missing inputs fail in the batch shell with one line."""

import subprocess
import sys

import pytest

from tests.helpers import missing
from tests.launch.launch_helpers import REPO, job_log, sbatch, subprocess_env


@pytest.mark.slow
@pytest.mark.skipif(missing.mpi() is not None, reason=str(missing.mpi()))   # the job's ranks call MPI (mpi4py)
def test_preprocess_job_matches_a_direct_run_byte_for_byte(slurm, launch_data, tmp_path):
    shards = [str(p) for p in launch_data["shards"]]
    direct = subprocess.run([sys.executable, "tools/preprocess_data.py", "--input", *shards, "--output-prefix",
                             str(tmp_path / "direct"), "--tokenizer", launch_data["tokenizer"], "--workers", "1",
                             "--no-progress"], cwd=REPO, env=subprocess_env(), capture_output=True, text=True)
    assert direct.returncode == 0, direct.stderr[-2000:]
    env = {"INPUT": " ".join(shards), "OUTPUT_PREFIX": str(tmp_path / "out" / "mpi"),
           "TOKENIZER": launch_data["tokenizer"], "WORKERS": "1"}
    done = sbatch(slurm, "preprocess.sh", tmp_path, env)
    log = job_log(tmp_path)
    assert done.returncode == 0, done.stderr + log[-3000:]
    assert "preprocess: 2 MPI ranks × 1 workers" in log and "(MPI, 2 ranks" in log and "120 documents" in log
    for suffix in (".bin", ".idx"):
        made = (tmp_path / "out" / f"mpi_text_document{suffix}").read_bytes()
        assert len(made) > 1000 and made == (tmp_path / f"direct_text_document{suffix}").read_bytes()
    assert not list((tmp_path / "out").glob("*shard*"))


@pytest.mark.slow
def test_preprocess_job_names_a_missing_input(slurm, launch_data, tmp_path):
    env = {"INPUT": str(tmp_path / "nope.jsonl"), "OUTPUT_PREFIX": str(tmp_path / "out"),
           "TOKENIZER": launch_data["tokenizer"]}
    done = sbatch(slurm, "preprocess.sh", tmp_path, env)
    errors = [line for line in job_log(tmp_path).splitlines() if line.startswith("myllm slurm: ")]
    assert done.returncode == 2
    assert errors == [f"myllm slurm: INPUT: {tmp_path / 'nope.jsonl'} does not exist (relative to {tmp_path})"
                      " — fix the path"]
