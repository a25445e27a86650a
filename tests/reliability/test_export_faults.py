"""Export and import outputs (issue #29): one writer per output — two `myllm export` to one --out no longer both
exit 0 with one export lost (or a 22-line OSError traceback); an --out under a regular file is one line, not
NotADirectoryError; a truncated GGUF names the short tensor instead of numpy's "cannot reshape array". Each
command runs as users run it, `python -m myllm_mc.cli` in a fresh interpreter."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from tests.reliability.faults import assert_short, finish, myllm


def export_args(tiny_checkpoint, fmt, out):
    return ["export", fmt, str(tiny_checkpoint["config"]), "--checkpoint", str(tiny_checkpoint["checkpoint"]),
            "--type", "f32", "--out", str(out)]


def run(args):
    proc = myllm(args)
    out = finish(proc, timeout=300)
    return proc.returncode, out


@pytest.fixture(scope="module")
def gguf_file(tiny_checkpoint, tmp_path_factory):
    """The tiny checkpoint exported alone as F32 GGUF: what a whole export is, byte for byte."""
    path = tmp_path_factory.mktemp("export") / "alone.gguf"
    code, out = run(export_args(tiny_checkpoint, "gguf", path))
    assert code == 0, out[-3000:]
    return path


def wait_until_loading(proc, timeout: float = 120.0) -> None:
    """Until `proc` has opened a socket: its one-process gloo group, made when it starts loading the checkpoint —
    past the output check (and the lock) and before anything is published, in the old code as in the new."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        try:
            fds = [os.readlink(f"/proc/{proc.pid}/fd/{fd}") for fd in os.listdir(f"/proc/{proc.pid}/fd")]
        except OSError:
            fds = []
        if any(fd.startswith("socket:") for fd in fds):
            return
        time.sleep(0.01)
    raise AssertionError(f"the first export never started loading (exit {proc.poll()})")


@pytest.mark.parametrize("fmt", ["gguf", "hf"])
def test_two_exports_to_one_output_one_writes_it_whole_the_other_is_refused(tiny_checkpoint, gguf_file, tmp_path, fmt):
    """The race made certain: the first export is paused (SIGSTOP) while it loads, i.e. inside the window between
    its output check and its rename; the second runs to its end meanwhile; then the first resumes."""
    out = tmp_path / ("m.gguf" if fmt == "gguf" else "hf")
    first = myllm(export_args(tiny_checkpoint, fmt, out))
    try:
        wait_until_loading(first)
        os.kill(first.pid, signal.SIGSTOP)
        second = myllm(export_args(tiny_checkpoint, fmt, out))
        second_out = finish(second, timeout=300)
    finally:
        os.kill(first.pid, signal.SIGCONT)
    first_out = finish(first, timeout=300)
    assert first.returncode == 0, first_out[-3000:]
    assert second.returncode == 2, second_out[-3000:]
    assert_short(second_out, f"--out {out} is in use by another run (PID {first.pid} on", most=1)
    if fmt == "gguf":
        assert out.read_bytes() == gguf_file.read_bytes()                 # the first export, whole
    else:
        from safetensors.torch import load_file
        assert len(load_file(str(out / "model.safetensors"))) > 0
        assert json.loads((out / "config.json").read_text())["vocab_size"] == 1024
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == [out.name], left                                        # no temporary, no lock left behind


def test_an_output_under_a_regular_file_is_refused_in_one_line(tiny_checkpoint, gguf_file, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    for args in (export_args(tiny_checkpoint, "gguf", notes / "m.gguf"), export_args(tiny_checkpoint, "hf", notes / "hf"),
                 ["import", "gguf", str(gguf_file), "--out", str(notes / "imported")]):
        code, out = run(args)
        assert code == 2, (args[:2], out[-3000:])
        assert_short(out, f"{notes} is a file, not a directory — fix:", most=1)
    assert notes.read_text() == "my notes\n"


def test_a_truncated_gguf_names_the_short_tensor(gguf_file, tmp_path):
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(gguf_file.read_bytes()[: gguf_file.stat().st_size * 2 // 3])    # inside a layer's tensors
    code, out = run(["import", "gguf", str(cut), "--out", str(tmp_path / "imported")])
    assert code == 2, out[-3000:]
    assert_short(out, f"{cut}: truncated or damaged — tensor blk.", "but the file has", "fix: copy the file again",
                 most=1)
    assert "reshape" not in out and not (tmp_path / "imported").exists()
