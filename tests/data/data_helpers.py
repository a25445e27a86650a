"""Helpers for the data tests: run the repo's tools as a user would, write each input format, read datasets back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import zstandard

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "data" / "corpus.jsonl.zst"


def run_tool(*args, timeout=300, check=True):
    """Run a repo script (tools/...) or `-m` module in a subprocess, as a user would."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, *map(str, args)], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def load_corpus():
    lines = zstandard.ZstdDecompressor().decompress(CORPUS.read_bytes()).decode("utf-8").splitlines()
    return [json.loads(line) for line in lines]


def write_jsonl(path: Path, docs, compress: str = "") -> Path:
    payload = "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs).encode("utf-8")
    if compress == "gz":
        import gzip
        payload = gzip.compress(payload)
    elif compress == "zst":
        payload = zstandard.ZstdCompressor().compress(payload)
    path.write_bytes(payload)
    return path


def write_parquet(path: Path, docs) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq
    pq.write_table(pa.table({"text": [d["text"] for d in docs], "title": [d.get("title", "") for d in docs]}), path,
                   row_group_size=50)
    return path


def write_webdataset(path: Path, docs) -> Path:
    import webdataset as wds
    with wds.TarWriter(str(path)) as sink:
        for i, d in enumerate(docs):
            sink.write({"__key__": f"doc{i:06d}", "txt": d["text"]})
    return path


def read_documents(prefix: str):
    """Every document of an indexed dataset as a list of ints (through megatron-core's reader)."""
    from megatron.core.datasets.indexed_dataset import IndexedDataset
    dataset = IndexedDataset(prefix)
    return [dataset[i].tolist() for i in range(len(dataset))], dataset
