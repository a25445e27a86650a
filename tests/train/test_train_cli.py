"""`myllm train` as users run it: convergence on the shipped corpus, SIGTERM, kill -9 during a save, NaN batches."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from myllm_mc.checkpoint import store
from myllm_mc.train.diagnostics import NONFINITE_EXIT
from myllm_mc.train.signals import PREEMPTED_EXIT
from tests.helpers.processes import run_in_group

REPO = Path(__file__).resolve().parents[2]


def train_command(overrides, *extra):
    return [sys.executable, "-m", "myllm_mc.cli", "train", "configs/tiny.yaml", *extra, "--set", *overrides]


def run(overrides, *extra, timeout=600):
    """`myllm train` in its own process group (stderr merged into stdout)."""
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))
    return run_in_group(train_command(overrides, *extra), timeout=timeout, cwd=REPO, env=env)


def metrics(log_dir):
    return [json.loads(line) for line in (Path(log_dir) / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_sigterm_saves_the_current_step_and_exits_75(tiny_data, tmp_path):
    overrides = tiny_data + ["training.steps=500", f"logging.dir={tmp_path}", f"checkpoint.dir={tmp_path / 'ckpt'}",
                             "checkpoint.save_interval=1000"]
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="2")
    proc = subprocess.Popen(train_command(overrides), cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 300
    while time.time() < deadline:
        log = tmp_path / "metrics.jsonl"
        if log.exists() and len(log.read_text().splitlines()) >= 3:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == PREEMPTED_EXIT, out[-3000:]
    last_step = metrics(tmp_path)[-1]["step"]
    saved = store.read_meta(store.find_latest(tmp_path / "ckpt"))
    assert 3 <= saved["step"] == last_step < 500
    assert "received SIGTERM: saved and exiting for requeue" in out


@pytest.mark.slow
def test_kill_9_during_save_keeps_the_previous_checkpoint_and_resume_continues(tiny_data, tmp_path):
    ckpt = tmp_path / "ckpt"
    overrides = tiny_data + ["training.steps=12", f"logging.dir={tmp_path}", f"checkpoint.dir={ckpt}",
                             "checkpoint.save_interval=4"]
    crashed = run(overrides, "--kill-in-save-step", "8")
    assert crashed.returncode == -signal.SIGKILL
    assert (ckpt / ".tmp-step_0000008").is_dir()                  # the half-published save is still there...
    assert store.find_latest(ckpt).name == "step_0000004"          # ...and invisible
    resumed = run(overrides, "--resume", "auto")
    assert resumed.returncode == 0, resumed.stdout[-3000:]
    assert f"resumed from {ckpt / 'step_0000004'} at step 4" in resumed.stdout
    assert store.find_latest(ckpt).name == "step_0000012"
    assert not list(ckpt.glob(".tmp-*"))
    steps = [r["step"] for r in metrics(tmp_path) if r["kind"] == "train"]
    assert steps[-8:] == list(range(5, 13))


@pytest.mark.slow
def test_nan_batches_are_skipped_then_stop_with_a_message(tiny_data, tmp_path):
    overrides = tiny_data + ["training.steps=6", f"logging.dir={tmp_path / 'a'}", "checkpoint.dir=null",
                             "diagnostics.max_skipped_steps=1"]
    once = run(overrides, "--poison-step", "3")
    assert once.returncode == 0, once.stdout[-3000:]
    rows = [r for r in metrics(tmp_path / "a") if r["kind"] == "train"]
    assert [r["skipped"] for r in rows] == [0, 0, 1, 0, 0, 0]
    assert math.isnan(rows[2]["loss"]) and all(math.isfinite(r["loss"]) for r in rows[3:])
    assert "step 3: non-finite loss nan" in once.stdout and "update skipped (1/1 allowed)" in once.stdout

    overrides[-3] = f"logging.dir={tmp_path / 'b'}"
    stopped = run(overrides, "--poison-step", "3", "--poison-step", "4")
    assert stopped.returncode == NONFINITE_EXIT
    assert ("stopping at step 4: 2 non-finite steps (3, 4) exceed diagnostics.max_skipped_steps=1;"
            " last good checkpoint: none saved yet; try a lower optimizer.lr") in stopped.stdout
