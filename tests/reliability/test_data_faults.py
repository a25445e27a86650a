"""Fault-injection table, data stages: damaged, empty or odd inputs, a second writer, a full or read-only output,
SIGTERM. Each case asserts the exit code, a short message naming the cause, and that a good dataset survives."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .faults import REPO, assert_short

PROG = "myllm preprocess"


def preprocess(args, capsys):
    from myllm_mc.data.preprocess_cli import run
    code = run([*args, "--workers", "0", "--no-progress"], PROG)
    out = capsys.readouterr()
    return code, out.out + out.err


def tokenizer_train(args, capsys):
    from myllm_mc.data.tokenizer_cli import run
    code = run(args, "myllm tokenizer train")
    out = capsys.readouterr()
    return code, out.out + out.err


def digest(prefix) -> str:
    return "".join(hashlib.sha256(Path(f"{prefix}{s}").read_bytes()).hexdigest() for s in (".bin", ".idx"))


@pytest.fixture
def good_output(small_data, tmp_path):
    """An existing good dataset at the output prefix, and its digest: no failure may touch it."""
    out = tmp_path / "out"
    for suffix in (".bin", ".idx"):
        (tmp_path / f"out_text_document{suffix}").write_bytes(Path(f"{small_data['prefix']}{suffix}").read_bytes())
    return out, digest(f"{out}_text_document")


def damaged_inputs(small_data, tmp_path) -> dict:
    """Every supported kind, damaged: truncated .zst and .gz, a cut Parquet file, a cut tar."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import zstandard
    raw = small_data["jsonl"].read_bytes()
    zst = zstandard.ZstdCompressor().compress(raw)
    gz = gzip.compress(raw)
    (tmp_path / "t.jsonl.zst").write_bytes(zst[: len(zst) // 2])
    (tmp_path / "t.jsonl.gz").write_bytes(gz[: len(gz) // 2])
    pq.write_table(pa.table({"text": [json.loads(line)["text"] for line in raw.decode().splitlines()]}),
                   tmp_path / "whole.parquet")
    whole = (tmp_path / "whole.parquet").read_bytes()
    (tmp_path / "t.parquet").write_bytes(whole[: len(whole) // 2])
    import io
    import tarfile
    with tarfile.open(tmp_path / "whole.tar", "w") as tar:
        for i, line in enumerate(raw.decode().splitlines()[:50]):
            data = json.loads(line)["text"].encode()
            info = tarfile.TarInfo(f"{i:06d}.txt")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    whole = (tmp_path / "whole.tar").read_bytes()
    (tmp_path / "t.tar").write_bytes(whole[: len(whole) // 2 + 100])
    return {"zst": tmp_path / "t.jsonl.zst", "gz": tmp_path / "t.jsonl.gz", "parquet": tmp_path / "t.parquet",
            "tar": tmp_path / "t.tar"}


def test_damaged_inputs_of_each_kind_fail_naming_file_and_place(small_data, tmp_path, good_output, capsys):
    out, before = good_output
    for kind, path in damaged_inputs(small_data, tmp_path).items():
        code, text = preprocess(["--input", str(path), "--output-prefix", str(out), "--tokenizer",
                                 str(small_data["tokenizer"])], capsys)
        assert code == 2, (kind, text)
        assert_short(text, str(path), "damaged input", most=1)
        if kind in ("zst", "gz"):
            assert "after line" in text and "truncated" in text or "ends inside a frame" in text, text
        assert digest(f"{out}_text_document") == before, kind
        if kind in ("zst", "gz"):              # tokenizer training reads through the same reader
            code, text = tokenizer_train(["--input", str(path), "--vocab-size", "300", "--output",
                                          str(tmp_path / f"tok-{kind}")], capsys)
            assert code == 2 and not (tmp_path / f"tok-{kind}" / "tokenizer.json").exists(), text
            assert_short(text, str(path), "damaged input", most=1)


@pytest.mark.parametrize("case", ["empty", "blank", "binary", "parquet-without-text", "all-missing-key"])
def test_zero_usable_documents_is_an_error_saying_what_was_found(small_data, tmp_path, good_output, capsys, case):
    out, before = good_output
    if case == "parquet-without-text":
        import pyarrow as pa
        import pyarrow.parquet as pq
        path = tmp_path / "x.parquet"
        pq.write_table(pa.table({"body": ["some text"] * 5, "id": list(range(5))}), path)
        expect = ["no column 'text'", "columns: body, id", "--json-keys"]
    else:
        path = tmp_path / "x.jsonl"
        content = {"empty": b"", "blank": b"\n \n\t\n", "binary": bytes(range(256)) * 20,
                   "all-missing-key": b'{"body": "a"}\n{"body": "b"}\n'}[case]
        path.write_bytes(content)
        expect = {"empty": ["no usable documents", "no records at all"],
                  "blank": ["no usable documents", "no records at all"],
                  "binary": ["no usable documents", "none usable", "skipped"],
                  "all-missing-key": ["no usable documents", "missing_key 2", "--json-keys text"]}[case]
    code, text = preprocess(["--input", str(path), "--output-prefix", str(out), "--tokenizer",
                             str(small_data["tokenizer"])], capsys)
    assert code == 2, text
    assert_short(text, *expect, most=1)
    assert digest(f"{out}_text_document") == before
    code, text = tokenizer_train(["--input", str(path), "--vocab-size", "300", "--output", str(tmp_path / "tok")],
                                 capsys)
    assert code == 2, text
    assert_short(text, expect[0], most=2)


def test_lone_surrogates_are_replaced_and_counted_in_tokenizer_training_as_in_preprocessing(small_data, tmp_path,
                                                                                         capsys):
    path = tmp_path / "s.jsonl"
    texts = ["plain text number %d with some words" % i for i in range(40)] + ["bad \ud800 here", "\udfff end"]
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))    # json.dumps escapes them
    code, text = tokenizer_train(["--input", str(path), "--vocab-size", "300", "--output", str(tmp_path / "tok"),
                                  "--heldout-every", "0"], capsys)
    assert code == 0, text
    assert "2 documents had lone surrogates replaced by U+FFFD" in text
    code, text = preprocess(["--input", str(path), "--output-prefix", str(tmp_path / "o"), "--tokenizer",
                             str(tmp_path / "tok" / "tokenizer.json")], capsys)
    assert code == 0 and "2 documents had lone surrogates replaced by U+FFFD" in text, text


def test_a_live_writer_on_the_prefix_refuses_a_second_run_and_its_temporaries_survive(small_data, tmp_path,
                                                                                   good_output, capsys):
    out, before = good_output
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])    # a live "run A"
    try:
        import socket
        lock = Path(f"{out}.lock")
        lock.write_text(json.dumps({"host": socket.gethostname(), "pid": holder.pid, "since": time.time()}))
        theirs = Path(f"{out}_text_document.bin.tmp-{holder.pid}")
        theirs.write_bytes(b"run A's save in progress")
        code, text = preprocess(["--input", str(small_data["jsonl"]), "--output-prefix", str(out), "--tokenizer",
                                 str(small_data["tokenizer"])], capsys)
        assert code == 2
        assert_short(text, "is in use by another run", f"PID {holder.pid}", most=1)
        assert theirs.read_bytes() == b"run A's save in progress" and digest(f"{out}_text_document") == before
        holder.kill()
        holder.wait()
        # the holder is gone: its lock is taken over (with a message), its temporaries are provably stale
        code, text = preprocess(["--input", str(small_data["jsonl"]), "--output-prefix", str(out), "--tokenizer",
                                 str(small_data["tokenizer"])], capsys)
        assert code == 0, text
        assert f"taking over the lock on output prefix {out}: its holder (PID {holder.pid}" in text
        assert not theirs.exists() and not lock.exists()
        assert digest(f"{out}_text_document") == before            # same input, same tokenizer: same bytes
    finally:
        holder.kill()


def _mount(*args) -> str | None:
    done = subprocess.run(["mount", *args], capture_output=True, text=True)
    return None if done.returncode == 0 else (done.stderr.strip() or "mount failed")


@pytest.mark.parametrize("fault", ["full", "read-only"])
def test_a_full_or_read_only_output_directory_is_one_line_and_nothing_is_lost(small_data, tmp_path, capsys,
                                                                              monkeypatch, fault):
    """Full: a 64 KiB tmpfs. Read-only: a tmpfs remounted read-only (root ignores permission bits)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    error = _mount("-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt))
    if error:
        pytest.skip(f"cannot mount a tmpfs here ({error})")
    try:
        if fault == "read-only" and (error := _mount("-o", "remount,ro", str(mnt))):
            pytest.skip(f"cannot remount read-only ({error})")
        code, text = preprocess(["--input", str(small_data["jsonl"]), "--output-prefix", str(mnt / "out"),
                                 "--tokenizer", str(small_data["tokenizer"])], capsys)
        assert code == 1, text
        cause = "no space left on the device" if fault == "full" else "read-only file system"
        assert_short(text, cause, str(mnt), most=1)
        assert [p.name for p in mnt.iterdir()] == []                # no partial file, no lock left behind
        monkeypatch.setenv("MYLLM_DEBUG", "1")                      # the debug switch adds the traceback
        code, text = preprocess(["--input", str(small_data["jsonl"]), "--output-prefix", str(mnt / "out"),
                                 "--tokenizer", str(small_data["tokenizer"])], capsys)
        assert code == 1 and "Traceback" in text and cause in text
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_huge_vocabulary_and_huge_document_warn(small_data, tmp_path, capsys, monkeypatch):
    from myllm_mc.data import readers
    monkeypatch.setattr(readers, "HUGE_DOCUMENT_BYTES", 10_000)
    path = tmp_path / "big.jsonl"
    path.write_text(json.dumps({"text": "word " * 5000}) + "\n" + small_data["jsonl"].read_text())
    code, text = preprocess(["--input", str(path), "--output-prefix", str(tmp_path / "o"), "--tokenizer",
                             str(small_data["tokenizer"])], capsys)
    assert code == 0
    assert f"warning: {path}:1 is a single 0.0 MB document: tokenizing it takes about 0.0 GB" in text
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")                       # the vocabulary warning comes before any work (then: no documents)
    code, text = tokenizer_train(["--input", str(empty), "--vocab-size", "5000000", "--output", str(tmp_path / "t")],
                                 capsys)
    assert code == 2 and "warning: --vocab-size 5,000,000 is huge" in text and "no usable documents" in text


def test_sigterm_during_preprocessing_is_one_line_and_keeps_the_previous_dataset(small_data, tmp_path, good_output):
    out, before = good_output
    big = tmp_path / "big.jsonl"
    text = small_data["jsonl"].read_text()
    big.write_text(text * 60)                                     # ~ 60 × 400 documents: seconds of work
    proc = subprocess.Popen([sys.executable, "-m", "myllm_mc.cli", "preprocess", "--input", str(big),
                             "--output-prefix", str(out), "--tokenizer", str(small_data["tokenizer"]), "--workers",
                             "1", "--no-progress"], cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not list(tmp_path.glob("out_text_document.bin.tmp-*")):
        time.sleep(0.05)
    assert proc.poll() is None, "finished before it could be interrupted"
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, output
    assert_short(output, "stopped by SIGTERM", "previous dataset is intact", most=1)
    assert digest(f"{out}_text_document") == before
    assert not list(tmp_path.glob("out_text_document.*.tmp-*")) and not Path(f"{out}.lock").exists()
