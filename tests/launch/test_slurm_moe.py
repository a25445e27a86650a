"""`sbatch slurm/pretrain_moe.sh` on a real Slurm in CPU test mode (configs/tiny_moe.yaml: 16 experts, top-2;
2 tasks on 1 node, gloo): expert parallelism is the node's task count, the job trains with router statistics
and checkpoints in that layout, and an EP that does not divide the experts ends in the batch shell."""

import re

import pytest

from myllm_mc.checkpoint import store
from tests.launch.launch_helpers import REPO, job_log, metrics, sbatch, tiny_overrides

STEPS = 3


def submit_env(launch_data, run_dir):
    return {"CONFIG": str(REPO / "configs" / "tiny_moe.yaml"), "CKPT_DIR": str(run_dir / "ckpt"),
            "OVERRIDES": " ".join(tiny_overrides(launch_data, run_dir, STEPS))}


@pytest.mark.slow
def test_moe_job_trains_with_the_experts_over_the_nodes_tasks(slurm, launch_data, tmp_path):
    done = sbatch(slurm, "pretrain_moe.sh", tmp_path, submit_env(launch_data, tmp_path / "run"))
    log = job_log(tmp_path)
    assert done.returncode == 0, done.stderr + log[-4000:]
    assert (tmp_path / "logs" / f"myllm-moe-{done.stdout.strip()}.out").is_file()
    assert "expert parallelism 2 of 2 tasks" in log and "parallel.expert=2" in log
    assert f"0: step {STEPS}/{STEPS} | loss " in log and "run finished" in log
    rows = metrics(tmp_path / "run")
    assert [r["step"] for r in rows] == [1, 2, 3]
    # 8 sequences × 128 tokens × top-2 over 16 experts: 128 routed tokens per expert when balanced
    assert all(0 <= r["moe_tokens_min"] <= 128 <= r["moe_tokens_max"] and r["moe_dropped"] == 0 for r in rows)
    latest = store.find_latest(tmp_path / "run" / "ckpt")
    meta = store.read_meta(latest)
    assert meta["step"] == STEPS and meta["layout"]["expert"] == 2 and meta["model_shape"]["moe_num_experts"] == 16


@pytest.mark.slow
def test_an_ep_that_does_not_divide_the_experts_fails_in_the_batch_shell(slurm, launch_data, tmp_path):
    env = dict(submit_env(launch_data, tmp_path / "run"), EP="3")
    done = sbatch(slurm, "pretrain_moe.sh", tmp_path, env)
    log = job_log(tmp_path)
    assert done.returncode == 2, log
    errors = [line for line in log.splitlines() if line.startswith("config error: ")]
    assert len(errors) == 1 and "parallel.expert: 3 does not divide model.moe.num_experts 16" in errors[0], log
    assert "fix:" in errors[0] and "config check failed" in log and not (tmp_path / "run").exists()
    assert not [line for line in log.splitlines() if re.match(r"\d+: ", line)]      # no task ever started
