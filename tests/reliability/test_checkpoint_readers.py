"""Every command that reads a checkpoint verifies it against its manifest, and says when `latest` names a step
that is gone (issue #29: a one-bit flip in an embedding value changed greedy text with exit 0; a deleted step was
silently replaced by an older one). Each command runs as users run it: `python -m myllm_mc.cli` in a fresh
interpreter."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.reliability.faults import assert_short, finish, message_lines, myllm

DAMAGED = "__0_0.distcp has a wrong checksum"


def copy_root(tiny_checkpoint, tmp_path) -> Path:
    root = tmp_path / "checkpoints"
    shutil.copytree(tiny_checkpoint["checkpoint"], root)
    return root


def flip_a_bit_in_the_embedding(step: Path) -> Path:
    """Flip the top exponent bit of one embedding value (its float32 data is 64-byte aligned inside the blob):
    the value grows by 2^128, which changes the greedy text of any prompt holding that token."""
    from torch.distributed.checkpoint import FileSystemReader

    storage = FileSystemReader(str(step)).read_metadata().storage_data
    info = next(v for k, v in storage.items() if k.fqn == "embedding.word_embeddings.weight")
    path = step / info.relative_path
    data = bytearray(path.read_bytes())
    data[info.offset + info.length // 2 // 64 * 64 + 3] ^= 0x40
    path.write_bytes(bytes(data))
    return path


def run(args, **env):
    proc = myllm(args, env_extra=env)
    out = finish(proc, timeout=300)
    return proc.returncode, out


def generate(tiny_checkpoint, checkpoint, *extra):
    return ["generate", "configs/tiny.yaml", "--set", *tiny_checkpoint["overrides"], "--checkpoint", str(checkpoint),
            "--prompt", "Once upon a time", "--temperature", "0", "--max-new-tokens", "8", *extra]


def test_generate_export_eval_and_serve_refuse_a_damaged_checkpoint_in_one_line(tiny_checkpoint, tmp_path):
    root = copy_root(tiny_checkpoint, tmp_path)
    flip_a_bit_in_the_embedding(root / "step_0000001")
    config = str(tiny_checkpoint["config"])
    for args in (generate(tiny_checkpoint, root),
                 ["export", "gguf", config, "--checkpoint", str(root), "--type", "f32", "--out", str(tmp_path / "m.gguf")],
                 ["eval", config, "--checkpoint", str(root), "--tasks", "all"],
                 ["serve", config, "--checkpoint", str(root / "step_0000001"), "--port", "0"]):
        code, out = run(args)
        assert code == 2, (args[0], out[-3000:])
        assert_short(out, f"checkpoint {root / 'step_0000001'} is damaged: {DAMAGED}", most=1)
    assert not (tmp_path / "m.gguf").exists()
    code, out = run(["checkpoint", "inspect", str(root)])                 # the same verdict as inspect's
    assert code == 1 and f"DAMAGED      {DAMAGED}" in out, out


def test_over_the_size_limit_checksums_are_skipped_with_one_line_and_can_be_forced(tiny_checkpoint, tmp_path):
    root = copy_root(tiny_checkpoint, tmp_path)
    flip_a_bit_in_the_embedding(root / "step_0000001")
    code, out = run(generate(tiny_checkpoint, root), MYLLM_VERIFY_MAX_GIB="0.0001")
    notice = [line for line in message_lines(out) if "checksums skipped" in line]
    assert code == 0 and len(notice) == 1, out[-3000:]
    assert "over MYLLM_VERIFY_MAX_GIB=0.0001: sizes verified" in notice[0] and "MYLLM_VERIFY_CHECKPOINT=1" in notice[0]
    code, out = run(generate(tiny_checkpoint, root), MYLLM_VERIFY_MAX_GIB="0.0001", MYLLM_VERIFY_CHECKPOINT="1")
    assert code == 2, out[-3000:]
    assert_short(out, DAMAGED, most=1)
    shard = root / "step_0000001" / "__0_1.distcp"                           # sizes are checked at any size
    with open(shard, "r+b") as f:
        f.truncate(shard.stat().st_size - 100)
    code, out = run(generate(tiny_checkpoint, root), MYLLM_VERIFY_MAX_GIB="0.0001")
    assert code == 2, out[-3000:]
    assert_short(out, "__0_1.distcp has", "the manifest says", most=1)


def test_a_latest_naming_a_deleted_step_is_said_by_inspect_and_generate(tiny_checkpoint, tmp_path):
    root = copy_root(tiny_checkpoint, tmp_path)
    shutil.copytree(root / "step_0000001", root / "step_0000002")           # a newer step, then deleted by hand
    (root / "latest").write_text("step_0000002\n")
    shutil.rmtree(root / "step_0000002")
    said = (f"checkpoint: {root / 'latest'} names 'step_0000002', not a complete checkpoint; using the newest"
            " complete one, step_0000001")
    code, out = run(generate(tiny_checkpoint, root))
    assert code == 0 and out.count(said) == 1, out[-3000:]                 # once, though three steps resolve it
    assert "Traceback" not in out
    code, out = run(["checkpoint", "inspect", str(root)])
    assert code == 0 and said in out and "Traceback" not in out, out
    assert f"checkpoint   {root / 'step_0000001'}" in out
