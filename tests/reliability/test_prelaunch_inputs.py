"""Fault-injection table, before any process starts (issue #29): inputs that used to pass `myllm config check` and
then stop every rank of `myllm train` in its first step — a `.bin` that does not match its `.idx`, a split with no
training documents, a checkpoint directory that is a file. Each is refused in one line, exit 2, by `config check`
and by `myllm train --nproc-per-node 2` before it starts torchrun (both in a fresh interpreter, as users run them)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from .faults import REPO, assert_short


def myllm(*args):
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-m", "myllm_mc.cli", *args], capture_output=True, text=True, cwd=REPO,
                          env=env, timeout=300)
    return done.returncode, done.stdout + done.stderr


def copy_dataset(small_data, where):
    """A copy of the fixture's .bin/.idx pair under `where` (the fixture's own stays intact for other tests)."""
    prefix = where / "corpus_text_document"
    for suffix in (".bin", ".idx"):
        shutil.copyfile(f"{small_data['prefix']}{suffix}", f"{prefix}{suffix}")
    return prefix


def truncated_bin(small_data, tmp_path):
    prefix = copy_dataset(small_data, tmp_path)
    size = os.path.getsize(f"{prefix}.bin")
    os.truncate(f"{prefix}.bin", size // 2)
    return [f"data.blend=[{prefix}]"], [f"{prefix}.bin has {size // 2:,} bytes but {prefix}.idx describes {size:,}",
                                        "the .bin is truncated", "fix: re-run tools/preprocess_data.py"]


def larger_bin(small_data, tmp_path):
    prefix = copy_dataset(small_data, tmp_path)
    size = os.path.getsize(f"{prefix}.bin")
    with open(f"{prefix}.bin", "ab") as f:                       # as if another run's bigger .bin were paired
        f.write(b"\0" * 1000)
    return [f"data.blend=[{prefix}]"], [f"{prefix}.bin has {size + 1000:,} bytes but {prefix}.idx describes {size:,}",
                                        "not a pair", "fix: re-run tools/preprocess_data.py"]


def no_train_share(small_data, tmp_path):
    return ["data.split=0,0,100"], ["data.split: 0,0,100 gives training no documents — fix:"]


def train_share_rounds_to_nothing(small_data, tmp_path):     # 400 documents: round(400 × 1/2001) = 0
    return ["data.split=1,1000,1000"], ["data.split: 1,1000,1000 gives the train split 0 of the 400 documents"]


def checkpoint_dir_is_a_file(small_data, tmp_path):
    (tmp_path / "ckpt").write_text("not a directory")
    return [f"checkpoint.dir={tmp_path / 'ckpt'}"], [f"checkpoint.dir: {tmp_path / 'ckpt'} is a file, not a"
                                                     f" directory — fix:"]


def checkpoint_dir_under_a_file(small_data, tmp_path):
    (tmp_path / "runs").write_text("not a directory")
    where = tmp_path / "runs" / "tiny" / "checkpoints"
    return [f"checkpoint.dir={where}"], [f"checkpoint.dir: {where} has a parent {tmp_path / 'runs'} that is a file"]


CASES = [truncated_bin, larger_bin, no_train_share, train_share_rounds_to_nothing, checkpoint_dir_is_a_file,
         checkpoint_dir_under_a_file]


@pytest.mark.parametrize("case", CASES, ids=[c.__name__ for c in CASES])
def test_config_check_and_train_refuse_it_before_launch(small_data, tmp_path, case):
    overrides, needles = case(small_data, tmp_path)
    overrides = small_data["overrides"] + [f"checkpoint.dir={tmp_path / 'run' / 'ckpt'}",
                                           f"logging.dir={tmp_path / 'run'}"] + overrides
    code, text = myllm("config", "check", "configs/tiny.yaml", "--world-size", "2", "--set", *overrides)
    assert code == 2, text
    assert_short(text, "config error:", *needles, most=1)
    code, text = myllm("train", "configs/tiny.yaml", "--nproc-per-node", "2", "--set", *overrides)
    assert code == 2, text[-3000:]
    assert_short(text, *needles, most=1)
    assert not (tmp_path / "run").exists()                    # refused before anything was written


def test_the_good_dataset_passes(small_data, tmp_path):
    prefix = copy_dataset(small_data, tmp_path)
    code, text = myllm("config", "check", "configs/tiny.yaml", "--set", *small_data["overrides"],
                       f"data.blend=[{prefix}]", f"checkpoint.dir={tmp_path / 'ckpt'}")
    assert code == 0 and text.startswith("ok: configs/tiny.yaml"), text


def test_finetune_refuses_a_checkpoint_dir_that_is_a_file_before_launch(tmp_path):
    (tmp_path / "ckpt").write_text("not a directory")
    code, text = myllm("finetune", "sft", "configs/sft_tiny.yaml", "--nproc-per-node", "2", "--set",
                       f"checkpoint.dir={tmp_path / 'ckpt'}", f"logging.dir={tmp_path / 'run'}")
    assert code == 2, text[-3000:]
    assert_short(text, f"checkpoint.dir: {tmp_path / 'ckpt'} is a file, not a directory — fix:", most=1)
