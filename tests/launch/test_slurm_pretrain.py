"""`sbatch slurm/pretrain_1b.sh` on a real Slurm in CPU test mode (tiny preset, 2 tasks on 1 node, gloo):
it trains, checkpoints, and after USR1 saves, requeues itself and resumes to the same numbers as a run that was
never interrupted."""

import re
import subprocess

import pytest

from myllm_mc.checkpoint import store
from tests.launch.launch_helpers import REPO, STEPS, job_log, metrics, numerics, sbatch, tiny_overrides, wait_for


def submit_env(launch_data, run_dir, steps=STEPS):
    return {"CONFIG": str(REPO / "configs" / "tiny.yaml"), "CKPT_DIR": str(run_dir / "ckpt"),
            "OVERRIDES": " ".join(tiny_overrides(launch_data, run_dir, steps))}


@pytest.mark.slow
def test_sbatch_wait_trains_logs_the_loss_and_checkpoints(slurm, launch_data, reference_run, tmp_path):
    done = sbatch(slurm, "pretrain_1b.sh", tmp_path, submit_env(launch_data, tmp_path / "run"))
    log = job_log(tmp_path)
    assert done.returncode == 0, done.stderr + log[-4000:]
    job_id = done.stdout.strip()
    assert (tmp_path / "logs" / f"myllm-1b-{job_id}.out").is_file()            # --output=logs/%x-%j.out
    assert "2 tasks, 0 GPUs/node (CPU test mode)" in log
    assert "ok: " in log and "world 2 = tensor 1 × pipeline 1 × context 1 × data 2" in log
    assert f"0: step {STEPS}/{STEPS} | loss " in log and "run finished" in log and "requeueing job" not in log
    rows = metrics(tmp_path / "run")
    assert numerics(rows) == numerics(reference_run)                 # srun's DP=2 == torchrun's DP=2, bit for bit
    latest = store.find_latest(tmp_path / "run" / "ckpt")
    assert latest.name == f"step_{STEPS:07d}" and store.read_meta(latest)["step"] == STEPS


@pytest.mark.slow
def test_usr1_saves_requeues_and_the_rerun_resumes_bit_exactly(slurm, launch_data, reference_run, tmp_path):
    run_dir = tmp_path / "run"
    done = sbatch(slurm, "pretrain_1b.sh", tmp_path, submit_env(launch_data, run_dir), wait=False)
    assert done.returncode == 0, done.stderr
    job_id = done.stdout.strip()
    wait_for(lambda: (run_dir / "metrics.jsonl").exists() and len(metrics(run_dir)) >= 2, 180,
             "two training steps", interval=0.05)
    subprocess.run(["scancel", "--signal=USR1", "--batch", job_id], env=slurm.env, check=True)

    def finished():
        state = slurm.job_state(job_id)
        return state if state.get("JobState") in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT") else None
    state = wait_for(finished, 240, f"job {job_id} to finish after its requeue", interval=0.5)
    log = job_log(tmp_path)
    assert state["JobState"] == "COMPLETED" and state["Restarts"] == "1", (state, log[-4000:])

    first, rerun = log.split("restart 1:", 1)
    assert "batch script received SIGUSR1: forwarding to the tasks" in first
    assert "step exited with code 75 after SIGUSR1" in first and f"requeueing job {job_id} (restart 1)" in first
    assert "received SIGUSR1: saved and exiting for requeue" in first
    stopped = re.search(rf"0: done: step (\d+)/{STEPS}, .*checkpoint (\S+), exit code 75", first)
    saved = int(stopped.group(1))
    assert stopped.group(2) == str(run_dir / "ckpt" / f"step_{saved:07d}")
    resumed_at = int(re.search(r"resumed from \S+ at step (\d+)", rerun).group(1))
    assert resumed_at == saved and 2 <= resumed_at < STEPS, (saved, first[-3000:])
    assert f"0: resumed from {run_dir / 'ckpt' / f'step_{resumed_at:07d}'} at step {resumed_at}" in rerun
    assert "run finished" in rerun and "requeueing job" not in rerun

    rows = metrics(run_dir)                                      # both runs append to one metrics.jsonl
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))
    assert numerics(rows) == numerics(reference_run)              # fp32: identical losses after the resume
    assert store.read_meta(store.find_latest(run_dir / "ckpt"))["step"] == STEPS


@pytest.mark.slow
def test_a_bad_override_fails_in_the_batch_shell_before_srun(slurm, launch_data, tmp_path):
    env = submit_env(launch_data, tmp_path / "run")
    env["OVERRIDES"] += " parallel.tensor=3"
    done = sbatch(slurm, "pretrain_1b.sh", tmp_path, env)
    log = job_log(tmp_path)
    assert done.returncode == 2, log
    errors = [line for line in log.splitlines() if line.startswith("config error: ")]
    assert len(errors) == 1 and "not divisible by tensor 3" in errors[0] and "fix:" in errors[0]
    assert "config check failed" in log and not (tmp_path / "run").exists()
    assert not [line for line in log.splitlines() if re.match(r"\d+: ", line)]      # no task ever started
