"""Preprocessing: format equivalence, worker/MPI determinism, bad input accounting, atomic output."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from data_helpers import CORPUS, REPO, read_documents, run_tool, write_jsonl, write_parquet, write_webdataset

from myllm_mc.data.preprocess import preprocess
from myllm_mc.data.readers import InputError, expand_inputs
from tests.helpers import missing


def _tok_path(tokenizer) -> str:
    return str(tokenizer.path)


def test_every_format_gives_the_same_token_stream(tmp_path, corpus_docs, small_tokenizer):
    docs = corpus_docs[::15]
    inputs = {"jsonl": write_jsonl(tmp_path / "d.jsonl", docs), "gz": write_jsonl(tmp_path / "d.jsonl.gz", docs, "gz"),
              "zst": write_jsonl(tmp_path / "d.jsonl.zst", docs, "zst"),
              "parquet": write_parquet(tmp_path / "d.parquet", docs), "tar": write_webdataset(tmp_path / "d.tar", docs)}
    streams = {}
    for name, path in inputs.items():
        result = preprocess([path], str(tmp_path / name), _tok_path(small_tokenizer), workers=0, progress=False)
        assert result.documents == len(docs) and result.skips.total == 0
        streams[name], dataset = read_documents(result.outputs[0])
        assert dataset.index.dtype == np.uint16           # smallest type for a 2,048 vocabulary
    reference = streams.pop("jsonl")
    for name, stream in streams.items():
        assert stream == reference, name
    # the stream is the documents, each tokenized and closed by one end-of-document token
    for doc, ids in zip(docs, reference):
        assert ids[-1] == small_tokenizer.eod and small_tokenizer.eod not in ids[:-1]
        assert small_tokenizer.decode(ids[:-1]) == doc["text"]


def test_no_append_eod_and_multiple_keys(tmp_path, corpus_docs, small_tokenizer):
    docs = corpus_docs[:20]
    path = write_jsonl(tmp_path / "d.jsonl", docs)
    result = preprocess([path], str(tmp_path / "o"), _tok_path(small_tokenizer), keys=("text", "title"),
                        workers=0, append_eod=False, progress=False)
    assert [Path(p).name for p in result.outputs] == ["o_text_document", "o_title_document"]
    titles, _ = read_documents(result.outputs[1])
    assert [small_tokenizer.decode(t) for t in titles] == [d["title"] for d in docs]


def test_workers_1_and_2_are_byte_identical_and_match_single_process(tmp_path):
    tokenizer = tmp_path / "tok"
    run_tool("tools/train_tokenizer.py", "--input", CORPUS, "--vocab-size", "4096", "--output", tokenizer)
    outputs = {}
    for workers in ("0", "1", "2"):
        proc = run_tool("tools/preprocess_data.py", "--input", CORPUS, "--output-prefix", tmp_path / f"w{workers}",
                        "--tokenizer", tokenizer / "tokenizer.json", "--workers", workers)
        assert "1,458 documents" in proc.stdout and "tokens/s" in proc.stdout and "skipped 0" in proc.stdout
        outputs[workers] = [(tmp_path / f"w{workers}_text_document{s}").read_bytes() for s in (".bin", ".idx")]
    assert outputs["1"] == outputs["2"] == outputs["0"]
    docs, dataset = read_documents(str(tmp_path / "w2_text_document"))
    assert len(docs) == 1458 and len(dataset.document_indices) == 1459


@pytest.mark.skipif(missing.mpi() is not None, reason=str(missing.mpi()))
def test_mpi_two_ranks_then_merge_equals_single_process(tmp_path, corpus_docs, small_tokenizer):
    mpirun = shutil.which("mpirun")
    files = [write_jsonl(tmp_path / f"part{i}.jsonl", corpus_docs[i::3][:60]) for i in range(3)]
    single = preprocess(files, str(tmp_path / "single"), _tok_path(small_tokenizer), workers=0, progress=False)
    env = dict(os.environ, PYTHONPATH=str(REPO), OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_rmaps_base_oversubscribe="1")
    proc = subprocess.run([mpirun, "--allow-run-as-root", "--oversubscribe", "-np", "2", sys.executable,
                           "tools/preprocess_data.py", "--mpi", "--workers", "1", "--input", *map(str, files),
                           "--output-prefix", str(tmp_path / "mpi"), "--tokenizer", _tok_path(small_tokenizer),
                           "--no-progress"], cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "2 ranks" in proc.stdout and "180 documents" in proc.stdout
    for suffix in (".bin", ".idx"):
        assert (tmp_path / f"mpi_text_document{suffix}").read_bytes() == \
               Path(single.outputs[0] + suffix).read_bytes()
    assert not list(tmp_path.glob("*shard*"))          # shards merged and removed


def test_merge_tool_alone(tmp_path, corpus_docs, small_tokenizer):
    a = write_jsonl(tmp_path / "a.jsonl", corpus_docs[:30])
    b = write_jsonl(tmp_path / "b.jsonl", corpus_docs[30:50])
    tok = _tok_path(small_tokenizer)
    for name, files in (("a", [a]), ("b", [b]), ("ab", [a, b])):
        preprocess(files, str(tmp_path / name), tok, workers=0, progress=False)
    proc = run_tool("tools/merge_datasets.py", "--input", tmp_path / "a_text_document", tmp_path / "b_text_document",
                    "--output-prefix", tmp_path / "merged")
    assert "50 documents" in proc.stdout
    for suffix in (".bin", ".idx"):
        assert (tmp_path / f"merged{suffix}").read_bytes() == (tmp_path / f"ab_text_document{suffix}").read_bytes()
    bad = run_tool("tools/merge_datasets.py", "--input", tmp_path / "nothing", "--output-prefix", tmp_path / "m2",
                   check=False)
    assert bad.returncode == 2 and "missing" in bad.stderr and bad.stderr.count("\n") == 1


def _corrupt_file(path: Path) -> Path:
    lines = [b'{"text": "good one"}', b'{"text": "unterminated', b'{"text": "bad byte \xff\xfe here"}',
             b'{"title": "no text key"}', b'{"text": ""}', b'{"text": "   \\n\\t "}', b'{"text": 42}',
             b'["an", "array"]', b"", b'{"text": "good two"}', b'{"text": null}',
             b'{"text": "lone \\ud800 surrogate"}', b"not json at all", b'{"text": "good three"}']
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_bad_input_is_counted_and_skipped(tmp_path, small_tokenizer):
    path = _corrupt_file(tmp_path / "corrupt.jsonl")
    result = preprocess([path], str(tmp_path / "o"), _tok_path(small_tokenizer), workers=1, progress=False)
    assert result.documents == 4                        # three good + the surrogate one (kept, U+FFFD)
    assert result.surrogates_replaced == 1
    assert result.skips.counts == {"malformed_json": 3, "non_utf8": 1, "missing_key": 2, "not_text": 1, "empty": 2}
    assert result.skips.examples == [f"{path}:2 (malformed_json)", f"{path}:3 (non_utf8)", f"{path}:4 (missing_key)"]
    docs, _ = read_documents(result.outputs[0])
    assert [small_tokenizer.decode(d[:-1]) for d in docs] == ["good one", "good two", "lone \ufffd surrogate",
                                                              "good three"]
    summary = result.summary()
    assert "skipped 9 (malformed_json 3, non_utf8 1, missing_key 2, not_text 1, empty 2)" in summary


def test_strict_and_missing_inputs_are_one_line_errors(tmp_path, small_tokenizer):
    path = _corrupt_file(tmp_path / "corrupt.jsonl")
    tok = _tok_path(small_tokenizer)
    proc = run_tool("tools/preprocess_data.py", "--input", path, "--output-prefix", tmp_path / "s", "--tokenizer",
                    tok, "--strict", check=False)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "--strict" in proc.stderr
    assert f"{path}:2 (malformed_json)" in proc.stderr
    assert not list(tmp_path.glob("s_*"))              # nothing left behind, not even temporaries
    for args, message in ((["--input", tmp_path / "absent.jsonl"], "no such input file"),
                          (["--input", str(tmp_path / "*.parquet")], "matches no file"),
                          (["--input", tmp_path / "corrupt.jsonl", "--tokenizer", tmp_path / "no.json"],
                           "tokenizer not found")):
        (tmp_path / "x.csv").write_text("a,b\n")
        full = ["tools/preprocess_data.py", *args, "--output-prefix", tmp_path / "m"]
        if "--tokenizer" not in args:
            full += ["--tokenizer", tok]
        proc = run_tool(*full, check=False)
        assert proc.returncode == 2 and message in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    with pytest.raises(InputError, match="unknown input format"):
        expand_inputs([str(tmp_path / "x.csv")])
    assert not list(tmp_path.glob("m_*"))


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_interrupted_run_leaves_no_valid_looking_output(tmp_path, corpus_docs, small_tokenizer, sig):
    from megatron.core.datasets.indexed_dataset import IndexedDataset
    big = write_jsonl(tmp_path / "big.jsonl", corpus_docs * 6)       # ~50 MB: many seconds of work
    prefix = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "tools/preprocess_data.py", "--input", str(big), "--output-prefix",
                             str(prefix), "--tokenizer", _tok_path(small_tokenizer), "--workers", "1"],
                            cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    tmp_bin = None
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:      # wait until it is mid-write
        found = list(tmp_path.glob("out_text_document.bin.tmp-*"))
        if found and found[0].stat().st_size > 1_000_000:
            tmp_bin = found[0]
            break
        time.sleep(0.05)
    assert tmp_bin is not None and proc.poll() is None, "the run finished before it could be interrupted"
    proc.send_signal(sig)
    proc.wait(timeout=30)
    assert not (tmp_path / "out_text_document.bin").exists() and not (tmp_path / "out_text_document.idx").exists()
    with pytest.raises(AssertionError):                          # megatron-core asserts the .idx exists
        IndexedDataset(str(prefix) + "_text_document")
    if sig == signal.SIGTERM:                                   # a polite stop also removes its temporaries
        assert not list(tmp_path.glob("out_*")), list(tmp_path.glob("out_*"))
    # a rerun clears what a SIGKILL left and completes
    small = write_jsonl(tmp_path / "small.jsonl", corpus_docs[:5])
    preprocess([small], str(prefix), _tok_path(small_tokenizer), workers=0, progress=False)
    assert sorted(p.name for p in tmp_path.glob("out_*")) == ["out_text_document.bin", "out_text_document.idx",
                                                                 "out_text_document.tokenizer.json"]


def test_strict_stops_promptly_with_many_batches_in_flight(tmp_path, corpus_docs, small_tokenizer):
    """The reader runs ahead of the writer; a strict stop must not hang waiting for it."""
    path = write_jsonl(tmp_path / "big.jsonl", corpus_docs * 2)
    with open(path, "ab") as f:
        f.write(b"{broken\n")
    with open(path, "rb") as f:
        lines = f.read().splitlines(keepends=True)
    path.write_bytes(lines[0] + b"{broken\n" + b"".join(lines[1:]))
    start = time.time()
    proc = run_tool("tools/preprocess_data.py", "--input", path, "--output-prefix", tmp_path / "s", "--tokenizer",
                    _tok_path(small_tokenizer), "--workers", "1", "--strict", check=False, timeout=120)
    assert proc.returncode == 2 and f"{path}:2 (malformed_json)" in proc.stderr
    assert time.time() - start < 60 and not list(tmp_path.glob("s_*"))
