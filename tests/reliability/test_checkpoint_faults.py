"""Fault-injection table, checkpoints: a second run on one directory, a damaged or deleted shard, a garbage
`latest`, another tokenizer or model shape, a full disk. Each asserts the exit code, a short message naming the
cause, and that the last good checkpoint survives (its manifest verifies)."""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from myllm_mc.checkpoint import find_latest, manifest, resolve_resume
from myllm_mc.checkpoint.errors import CheckpointError
from myllm_mc.checkpoint.lock import acquire, release_all
from myllm_mc.locking import LockHeld, RunLock

from .faults import assert_short, finish, myllm, train_args


# --- the lock, without training ------------------------------------------------------------------------------
def test_lock_refuses_a_live_holder_takes_over_a_dead_one_and_names_it(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    path = tmp_path / ".lock"
    path.write_text(json.dumps({"host": socket.gethostname(), "pid": holder.pid, "since": time.time()}))
    with pytest.raises(LockHeld, match=f"is in use by another run \\(PID {holder.pid} on {socket.gethostname()}"):
        RunLock(path, "x").acquire()
    holder.kill()
    holder.wait()
    messages = []
    lock = RunLock(path, "x", warn=messages.append).acquire()
    assert messages == [f"taking over the lock on x: its holder (PID {holder.pid} on {socket.gethostname()}) is no "
                        f"longer running"]
    assert json.loads(path.read_text())["pid"] != holder.pid
    lock.release()
    assert not path.exists()
    other = {"host": "another-host", "pid": 1, "since": time.time()}       # cannot be checked from here
    path.write_text(json.dumps(other))
    with pytest.raises(LockHeld, match=f"if that run is gone, remove {path}"):
        RunLock(path, "x").acquire()


def test_checkpoint_lock_is_one_per_directory(tmp_path):
    try:
        assert acquire(tmp_path)
        assert acquire(tmp_path)                           # again in the same process: already ours
        code = ("from myllm_mc.checkpoint.lock import acquire\nimport sys\n"
                f"try:\n    acquire({str(tmp_path)!r})\nexcept Exception as e:\n    print(e); sys.exit(3)")
        other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert other.returncode == 3 and "is in use by another run" in other.stdout
    finally:
        release_all()
    assert not (tmp_path / ".lock").exists()


# --- training runs -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def two_checkpoints(small_data, tmp_path_factory):
    """A finished 4-step run with checkpoints at steps 2 and 4 (single process)."""
    root = tmp_path_factory.mktemp("two-checkpoints")
    overrides = small_data["overrides"] + ["training.steps=4", "checkpoint.save_interval=2", "checkpoint.keep_last=2",
                                           f"checkpoint.dir={root / 'ckpt'}", f"logging.dir={root / 'logs'}"]
    out = finish(myllm(train_args(overrides)))
    assert "done: step 4/4" in out, out[-3000:]
    assert [p.name for p in sorted((root / "ckpt").glob("step_*"))] == ["step_0000002", "step_0000004"]
    assert not (root / "ckpt" / ".lock").exists()                 # released at the end of the run
    return root, overrides


def copy_run(two_checkpoints, tmp_path):
    root, overrides = two_checkpoints
    shutil.copytree(root / "ckpt", tmp_path / "ckpt")
    return tmp_path / "ckpt", [o for o in overrides if not o.startswith(("checkpoint.dir", "logging.dir"))] + [
        f"checkpoint.dir={tmp_path / 'ckpt'}", f"logging.dir={tmp_path / 'logs'}"]


def shard(step_dir: Path) -> Path:
    return sorted(step_dir.glob("*.distcp"))[0]


def test_manifest_detects_truncated_and_deleted_shards_and_garbage_latest(two_checkpoints, tmp_path):
    ckpt, _ = copy_run(two_checkpoints, tmp_path)
    step4 = ckpt / "step_0000004"
    assert manifest.verify(step4) == [] and manifest.verify(ckpt / "step_0000002") == []
    victim = shard(step4)
    size = victim.stat().st_size
    with open(victim, "r+b") as f:
        f.truncate(size // 2)
    assert manifest.verify(step4) == [f"{victim.name} has {size // 2:,} bytes, the manifest says {size:,}"]
    flipped = shard(ckpt / "step_0000002")
    data = bytearray(flipped.read_bytes())
    data[len(data) // 2] ^= 0xFF
    flipped.write_bytes(bytes(data))
    assert manifest.verify(ckpt / "step_0000002") == [f"{flipped.name} has a wrong checksum"]
    (ckpt / "latest").write_text("garbage\n")
    messages = []
    with pytest.raises(CheckpointError, match="no valid checkpoint"):
        resolve_resume("auto", str(ckpt), messages.append)
    assert "names 'garbage', not a complete checkpoint" in messages[0]
    victim.unlink()
    assert manifest.verify(step4)[0] == f"{victim.name} is missing"


@pytest.mark.slow
def test_resume_auto_skips_a_damaged_checkpoint_and_inspect_reports_it(two_checkpoints, tmp_path):
    ckpt, overrides = copy_run(two_checkpoints, tmp_path)
    good = manifest.verify(ckpt / "step_0000002")
    victim = shard(ckpt / "step_0000004")
    with open(victim, "r+b") as f:
        f.truncate(victim.stat().st_size // 2)
    inspect = subprocess.run([sys.executable, "-m", "myllm_mc.cli", "checkpoint", "inspect", str(ckpt)],
                             capture_output=True, text=True)
    assert inspect.returncode == 1 and f"DAMAGED      {victim.name} has" in inspect.stdout, inspect.stdout
    out = finish(myllm(train_args([o.replace("training.steps=4", "training.steps=6") for o in overrides],
                                  "--resume", "auto")))
    assert ("checkpoint: resuming from step_0000002, the newest valid checkpoint (skipped step_0000004: "
            f"{victim.name} has") in out, out[-3000:]
    assert f"resumed from {ckpt / 'step_0000002'} at step 2" in out and "done: step 6/6" in out, out[-3000:]
    assert good == [] and find_latest(ckpt).name == "step_0000006" and manifest.verify(ckpt / "step_0000006") == []


def test_resume_with_another_model_shape_or_tokenizer_is_refused_in_one_line(two_checkpoints, tmp_path, capsys):
    from myllm_mc.cli import main
    ckpt, overrides = copy_run(two_checkpoints, tmp_path)
    resume = overrides + ["checkpoint.resume=auto"]
    assert main(["config", "check", "configs/tiny.yaml", "--set", *resume, "model.vocab_size=1024",
                 "model.hidden_size=128"]) == 2
    text = capsys.readouterr().err
    assert_short(text, "saved with a different model shape", "model.hidden_size 64 → 128", "model.vocab_size 512 → 1024",
                 most=1)
    tokenizer = next(o.split("=", 1)[1] for o in overrides if o.startswith("data.tokenizer="))
    other = tmp_path / "other.json"                            # same vocabulary size, different file
    other.write_text(json.dumps(json.loads(Path(tokenizer).read_text()), indent=1))
    assert main(["config", "check", "configs/tiny.yaml", "--set", *resume, f"data.tokenizer={other}"]) == 2
    assert_short(capsys.readouterr().err, "saved with a different tokenizer", "allow_tokenizer_change=true", most=1)
    # allowed, the checkpoint no longer refuses; the shards, made by the first tokenizer file, still do
    assert main(["config", "check", "configs/tiny.yaml", "--set", *resume, f"data.tokenizer={other}",
                 "checkpoint.allow_tokenizer_change=true"]) == 2
    text = capsys.readouterr().err
    assert "saved with a different tokenizer" not in text
    assert_short(text, "was tokenized with another tokenizer", "fix: preprocess it again", most=1)


@contextlib.contextmanager
def _tmpfs_for_one_more_checkpoint(two_checkpoints, tmp_path):
    """A tmpfs 1.6× the size of the step-2 checkpoint (skips where mounting is not allowed), unmounted after."""
    root, _ = two_checkpoints
    size = sum(f.stat().st_size for f in (root / "ckpt" / "step_0000002").rglob("*") if f.is_file())
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={int(size * 1.6)}", "tmpfs", str(mnt)],
                             capture_output=True, text=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


@pytest.mark.slow
def test_a_full_disk_refuses_the_save_in_one_line_and_keeps_the_last_checkpoint(small_data, two_checkpoints,
                                                                                tmp_path):
    """A tmpfs 1.6× the size of one checkpoint holds the step-2 save but not a second one next to it: the step-4
    save is refused in one line before writing anything, and the step-2 checkpoint still verifies."""
    with _tmpfs_for_one_more_checkpoint(two_checkpoints, tmp_path) as mnt:
        overrides = small_data["overrides"] + ["training.steps=6", "checkpoint.save_interval=2",
                                               "checkpoint.keep_last=5", f"checkpoint.dir={mnt / 'ckpt'}",
                                               f"logging.dir={tmp_path / 'logs'}"]
        proc = myllm(train_args(overrides))
        out = finish(proc)
        assert proc.returncode == 2, out[-3000:]
        assert_short(out, f"no space for a checkpoint in {mnt / 'ckpt'}", "the last checkpoint is intact", most=1)
        assert sorted(p.name for p in (mnt / "ckpt").iterdir()) == ["latest", "step_0000002"]
        assert manifest.verify(mnt / "ckpt" / "step_0000002") == []


@pytest.mark.slow
def test_a_disk_that_fills_during_a_save_removes_the_partial_save_and_keeps_the_last_checkpoint(small_data,
                                                                                                 two_checkpoints,
                                                                                                 tmp_path):
    """The same 1.6× tmpfs, but the free-space pre-check is lowered to 1 byte (MYLLM_DEBUG_SPACE_CHECK_BYTES, a
    documented debug knob): the step-4 save starts and hits ENOSPC mid-write (torch's writer reports it as
    "[Errno 28]" or as "unexpected pos A vs B"). One line says no space is left, where, the size needed (the step-2
    manifest + 5 %) and the free space; exit 2; the partial save is gone; step 2 still verifies."""
    with _tmpfs_for_one_more_checkpoint(two_checkpoints, tmp_path) as mnt:
        overrides = small_data["overrides"] + ["training.steps=6", "checkpoint.save_interval=2",
                                               "checkpoint.keep_last=5", f"checkpoint.dir={mnt / 'ckpt'}",
                                               f"logging.dir={tmp_path / 'logs'}"]
        proc = myllm(train_args(overrides), env_extra={"MYLLM_DEBUG_SPACE_CHECK_BYTES": "1"})
        out = finish(proc)
        assert proc.returncode == 2, out[-3000:]
        step2 = mnt / "ckpt" / "step_0000002"
        needed = json.loads((step2 / manifest.MANIFEST_FILE).read_text())["bytes"] * 1.05
        assert_short(out, f"no space left in {mnt / 'ckpt'} while saving step 4 (needs ~{int(needed) / 2**20:,.1f} "
                     "MiB, ", "the partial save was removed",
                     "the last checkpoint is intact", most=1)
        assert "no space for a checkpoint" not in out                 # the pre-check did pass
        assert sorted(p.name for p in (mnt / "ckpt").iterdir()) == ["latest", "step_0000002"]
        assert (mnt / "ckpt" / "latest").read_text().strip() == "step_0000002"
        assert manifest.verify(step2) == []


@pytest.mark.slow
def test_growing_the_vocabulary_is_refused_without_the_option_and_initialised_with_it(two_checkpoints, tmp_path,
                                                                                      capsys):
    """init_from the 512-token step-2 checkpoint into model.vocab_size=640: refused in one line without
    checkpoint.allow_vocab_growth (and refused as a resume even with it); with it, the 512 old rows are
    bit-exact, the 128 new ones the mean of the old, and `myllm train` runs a step from there."""
    from myllm_mc.cli import main
    from tests.helpers.torchrun import run_torchrun
    ckpt, overrides = copy_run(two_checkpoints, tmp_path)
    source = ckpt / "step_0000002"
    grow = [o for o in overrides if not o.startswith(("checkpoint.dir", "model.vocab_size"))] + [
        "model.vocab_size=640", f"checkpoint.init_from={source}", f"checkpoint.dir={tmp_path / 'grown'}"]
    assert main(["config", "check", "configs/tiny.yaml", "--set", *grow]) == 2
    assert_short(capsys.readouterr().err, "cannot initialise from", "model.vocab_size 512 → 640",
                 "checkpoint.allow_vocab_growth=true", most=1)
    assert main(["config", "check", "configs/tiny.yaml", "--set", *grow, "model.hidden_size=128",
                 "checkpoint.allow_vocab_growth=true"]) == 2          # any other shape change: still refused
    assert_short(capsys.readouterr().err, "model.hidden_size 64 → 128", most=1)
    assert main(["config", "check", "configs/tiny.yaml", "--set", *overrides, "model.vocab_size=640",
                 "checkpoint.resume=auto", "checkpoint.allow_vocab_growth=true"]) == 2
    assert_short(capsys.readouterr().err, "cannot resume from", "checkpoint.init_from=<it> (not resume)", most=1)
    allowed = grow + ["checkpoint.allow_vocab_growth=true"]
    assert main(["config", "check", "configs/tiny.yaml", "--set", *allowed]) == 0
    capsys.readouterr()

    [result] = run_torchrun("tests/reliability/workers/vocab_growth.py", 1, [str(source), "512", *allowed])
    assert result["shape"] == [640, 64]
    assert result["old_rows_equal"] and result["new_rows_equal_mean"] and result["mean_norm"] > 0
    assert result["messages"][-1] == (f"initialised weights from {source} (vocabulary grown from 512 to 640 rows; "
                                      f"new rows = the mean of the old)")
    out = finish(myllm(train_args([o.replace("training.steps=4", "training.steps=1") for o in allowed])))
    assert "done: step 1/1" in out and "vocabulary grown from 512 to 640 rows" in out, out[-3000:]
