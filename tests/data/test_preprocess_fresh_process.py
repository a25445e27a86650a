"""tools/preprocess_data.py in a fresh interpreter, once per input format, with a worker pool.

Why a fresh process each: the pool's feeder thread reads the inputs while the main thread imports megatron-core
for the writers; on a .tar, webdataset imports torch in that thread, and two threads importing torch at once
left it half-initialised ("cannot import name 'set_module' from partially initialized module 'torch.utils'").
Only a process that has not imported torch yet shows it, which no in-process test is.
"""

from __future__ import annotations

import io
import tarfile

import pytest
from data_helpers import run_tool, write_jsonl, write_parquet


def _write_tar(path, docs):
    """A webdataset shard as any tool writes one: plain tarfile, one `<key>.txt` member per sample."""
    with tarfile.open(path, "w") as tar:
        for i, doc in enumerate(docs):
            data = doc["text"].encode("utf-8")
            info = tarfile.TarInfo(f"{i:06d}.txt")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _short(corpus_docs, n):
    """n small documents (the first 400 characters of each): the tool's start-up is what is under test."""
    return [{"text": d["text"][:400], "title": d.get("title", "")} for d in (corpus_docs * 2)[:n]]


def _inputs(kind, tmp_path, docs):
    if kind == "tar":
        return [_write_tar(tmp_path / "shard.tar", docs)], len(docs)
    if kind == "jsonl":
        return [write_jsonl(tmp_path / "d.jsonl", docs)], len(docs)
    if kind == "jsonl.zst":
        return [write_jsonl(tmp_path / "d.jsonl.zst", docs, "zst")], len(docs)
    if kind == "parquet":
        return [write_parquet(tmp_path / "d.parquet", docs)], len(docs)
    folder = tmp_path / "corpus"             # a directory: every data file under it, in sorted order
    (folder / "more").mkdir(parents=True)
    write_jsonl(folder / "a.jsonl.gz", docs[:100], "gz")
    _write_tar(folder / "more" / "b.tar", docs[100:])
    return [folder], len(docs)


# the .tar run is the regression and stays in the fast tier; the other formats are one tool process each (slow tier)
@pytest.mark.parametrize("kind", ["tar"] + [pytest.param(kind, marks=pytest.mark.slow)
                                            for kind in ("jsonl", "jsonl.zst", "parquet", "directory")])
def test_preprocess_tool_in_a_fresh_process(kind, tmp_path, corpus_docs, small_tokenizer):
    inputs, documents = _inputs(kind, tmp_path, _short(corpus_docs, 400))
    proc = run_tool("tools/preprocess_data.py", "--input", *inputs, "--output-prefix", tmp_path / "out",
                    "--tokenizer", small_tokenizer.path, "--workers", "2", "--no-progress", check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"preprocess: {documents:,} documents" in proc.stdout and "skipped 0" in proc.stdout, proc.stdout
    assert (tmp_path / "out_text_document.bin").exists() and (tmp_path / "out_text_document.idx").exists()
