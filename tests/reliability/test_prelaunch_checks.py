"""Fault-injection table, before any process starts: `myllm config check` (the Slurm scripts' fail-fast step, and
what `myllm train` runs before torchrun) refuses a run that would fail after its ranks start — one line, exit 2."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import pytest

from .faults import REPO, assert_short


def check(overrides, capsys, *extra):
    from myllm_mc.cli import main
    code = main(["config", "check", "configs/tiny.yaml", *extra, "--set", *overrides])
    out = capsys.readouterr()
    return code, out.out + out.err


def test_good_inputs_pass(small_data, capsys):
    code, text = check(small_data["overrides"], capsys)
    assert code == 0 and text.startswith("ok: configs/tiny.yaml"), text


@pytest.mark.parametrize("case, override, needles", [
    ("missing data prefix", "data.blend=[/nonexistent/corpus_text_document]",
     ["/nonexistent/corpus_text_document.bin and /nonexistent/corpus_text_document.idx not found"]),
    ("missing tokenizer", "data.tokenizer=/nonexistent/tokenizer.json", ["tokenizer not found: /nonexistent"]),
    ("tokenizer larger than the model", "model.vocab_size=256", ["has 512 tokens but model.vocab_size is 256"]),
    ("lr zero", "optimizer.lr=0", ["optimizer.lr: 0", "must be a positive number"]),
    ("lr negative", "optimizer.lr=-1e-3", ["optimizer.lr: -0.001"]),
    ("lr NaN", "optimizer.lr=nan", ["optimizer.lr: nan"]),
])
def test_a_run_that_would_fail_after_start_is_refused_in_one_line(small_data, capsys, case, override, needles):
    code, text = check(small_data["overrides"] + [override], capsys)
    assert code == 2, (case, text)
    assert_short(text, "config error:", *needles, most=1)


def test_no_data_skips_the_file_checks_for_stages_that_run_before_the_data_exists(small_data, capsys):
    code, text = check(small_data["overrides"] + ["data.blend=[/nonexistent/x]"], capsys, "--no-data")
    assert code == 0, text


def test_many_epochs_of_a_tiny_dataset_warn(small_data, capsys):
    code, text = check(small_data["overrides"] + ["training.steps=100000"], capsys)
    assert code == 0
    line = next(line for line in text.splitlines() if line.startswith("warning:"))
    assert "epochs: the model will memorise it" in line and "100,000 steps read 25,600,000" in line


def test_a_checkpoint_dir_held_by_a_live_run_is_refused_before_launch(small_data, capsys, tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        (tmp_path / "ckpt").mkdir()
        (tmp_path / "ckpt" / ".lock").write_text(json.dumps({"host": socket.gethostname(), "pid": holder.pid,
                                                             "since": time.time()}))
        code, text = check(small_data["overrides"] + [f"checkpoint.dir={tmp_path / 'ckpt'}"], capsys)
        assert code == 2
        assert_short(text, f"checkpoint.dir {tmp_path / 'ckpt'} is in use by another run (PID {holder.pid}", most=1)
    finally:
        holder.kill()
        holder.wait()
    code, text = check(small_data["overrides"] + [f"checkpoint.dir={tmp_path / 'ckpt'}"], capsys)
    assert code == 0, text                      # its holder is gone: a run may take it over


def test_slurm_fail_fast_check_catches_missing_data(small_data, tmp_path):
    """What slurm/pretrain_1b.sh runs in the batch shell before srun: a missing prefix ends it there."""
    done = subprocess.run([sys.executable, "-m", "myllm_mc.cli", "config", "check", "configs/tiny.yaml",
                           "--world-size", "2", "--set", *small_data["overrides"], "data.blend=[/nonexistent/c]"],
                          capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 2
    assert_short(done.stdout + done.stderr, "/nonexistent/c.bin and /nonexistent/c.idx not found", most=1)
