"""Fault-injection table, signals through `myllm train --nproc-per-node 2`: TERM, USR1 and INT sent to the parent
alone or to its whole process group reach both ranks; the run saves the current step, exits with the documented
code (75 preempted, 130 interrupted) after the save, prints a few lines, and leaves no process behind."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from myllm_mc.checkpoint import find_latest, manifest, read_meta

from .faults import assert_nothing_left, assert_short, finish, myllm, train_args


def wait_for_steps(log_dir: Path, proc, steps: int, timeout: float = 400) -> None:
    deadline = time.time() + timeout
    log = log_dir / "metrics.jsonl"
    while time.time() < deadline and proc.poll() is None:
        if log.exists() and len(log.read_text().splitlines()) >= steps:
            return
        time.sleep(0.1)
    raise AssertionError(f"no {steps} steps logged (exit {proc.poll()}):\n{finish(proc)[-3000:]}")


@pytest.mark.slow
@pytest.mark.parametrize("sig, target, code", [
    (signal.SIGTERM, "parent", 75),     # docker stop, systemd: the parent only
    (signal.SIGUSR1, "group", 75),      # Slurm's --signal=USR1 to the whole step
    (signal.SIGINT, "group", 130),      # Ctrl-C in a terminal: the foreground process group
])
def test_a_signal_reaches_every_rank_which_saves_then_the_parent_exits(small_data, tmp_path, sig, target, code):
    ckpt = tmp_path / "ckpt"
    overrides = small_data["overrides"] + ["training.steps=3000", "checkpoint.save_interval=100000",
                                           f"checkpoint.dir={ckpt}", f"logging.dir={tmp_path}"]
    proc = myllm(train_args(overrides, "--nproc-per-node", "2"))
    wait_for_steps(tmp_path, proc, 2)
    if sig == signal.SIGTERM:
        # meanwhile a second run on the same checkpoint.dir is refused before it starts, naming the holder
        second = myllm(train_args(overrides, "--nproc-per-node", "2"))
        out2 = finish(second, timeout=120)
        assert second.returncode == 2, out2
        assert_short(out2, f"checkpoint.dir {ckpt} is in use by another run (PID", most=1)
    if target == "parent":
        os.kill(proc.pid, sig)
    else:
        os.killpg(proc.pid, sig)
    out = finish(proc, timeout=400)
    assert proc.returncode == code, out[-3000:]
    name = signal.Signals(sig).name
    expected = ("saved and exiting for requeue" if code == 75 else "continue with --resume auto")
    assert_short(out, f"received {name}: ", expected, most=4)
    if sig == signal.SIGINT:
        assert "interrupted — saving the current step" in out
    assert_nothing_left(str(tmp_path))
    logged = [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    saved = find_latest(ckpt)
    assert read_meta(saved)["step"] == logged[-1] >= 2 and manifest.verify(saved) == []
    assert not (ckpt / ".lock").exists()
