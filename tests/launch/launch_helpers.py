"""What the launch tests share: the tiny preset's overrides, metrics rows, and `sbatch` of the repository's
slurm/ scripts the way a user runs them (CPU test mode, 2 tasks on 1 node, logs/ in the submit directory)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers.processes import run_in_group  # noqa: F401  (re-exported for the launch tests)
from tests.launch.slurm_cluster import SlurmCluster

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "data" / "corpus.jsonl.zst"
STEPS = 16


def tiny_overrides(data: dict, run_dir: Path, steps: int = STEPS) -> list[str]:
    """A small, fast, fp32 shape (2 ranks × micro-batch 4 × 128 tokens), one metrics row per step."""
    return [f"data.tokenizer={data['tokenizer']}", f"data.blend=[{data['prefix']}]", "model.seq_length=128",
            "training.micro_batch_size=4", "training.global_batch_size=8", "training.eval_interval=0",
            f"training.steps={steps}", "schedule.warmup_steps=5", "logging.log_interval=1",
            "logging.tensorboard=false", "logging.plot=false", f"logging.dir={run_dir}",
            "checkpoint.save_interval=1000"]


def metrics(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if r["kind"] == "train"]


def numerics(rows: list[dict]) -> list[tuple]:
    """What must agree bit for bit between two runs of the same config (timings never do)."""
    return [(r["step"], r["loss"], r["grad_norm"], r["lr"], r["consumed_samples"]) for r in rows]


def subprocess_env(**extra) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", **extra)
    return env


def sbatch(cluster: SlurmCluster, script: str, submit_dir: Path, env: dict, *options: str, wait: bool = True,
           timeout: float = 300) -> subprocess.CompletedProcess:
    """`sbatch [--wait] OPTIONS slurm/SCRIPT` from `submit_dir` (logs/ goes there), the CPU test mode on."""
    (submit_dir / "logs").mkdir(parents=True, exist_ok=True)
    environment = dict(cluster.env, **subprocess_env(MYLLM_HOME=str(REPO), SBATCH_GPUS_PER_NODE="0",
                                                     PYTHON=sys.executable,
                                                     OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1"),
                       **env)
    environment.pop("OMP_NUM_THREADS")          # the script sizes it from --cpus-per-task
    command = ["sbatch", "--parsable", *(["--wait"] if wait else []), "--ntasks-per-node=2", "--cpus-per-task=1",
               *options, str(REPO / "slurm" / script)]
    return subprocess.run(command, cwd=submit_dir, env=environment, capture_output=True, text=True,
                          timeout=timeout)


def job_log(submit_dir: Path) -> str:
    logs = sorted((submit_dir / "logs").glob("*.out"))
    return "\n".join(p.read_text(errors="replace") for p in logs)


def wait_for(predicate, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")

