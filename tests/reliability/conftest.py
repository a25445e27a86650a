"""A small corpus, tokenizer (512 entries) and dataset built once for the fault-injection table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def corpus_texts(n: int = 400, chars: int = 2000) -> list:
    """The first `n` documents of the shipped corpus, each cut to `chars` characters (~0.8 MB in all)."""
    import io

    import zstandard
    texts = []
    with zstandard.ZstdDecompressor().stream_reader(open(REPO / "data" / "corpus.jsonl.zst", "rb")) as raw:
        for line in io.TextIOWrapper(raw, encoding="utf-8"):
            texts.append(json.loads(line)["text"][:chars])
            if len(texts) == n:
                break
    return texts


@pytest.fixture(scope="session")
def small_data(tmp_path_factory):
    """{"root", "jsonl", "tokenizer", "prefix", "overrides"}: a 512-token tokenizer and a dataset of 400 documents,
    and `myllm train` overrides for a ~0.1M-parameter model on them (checkpoints of ~1.5 MB)."""
    from myllm_mc.data.preprocess import preprocess
    from myllm_mc.data.tokenizer_training import train_tokenizer

    root = tmp_path_factory.mktemp("reliability-data")
    jsonl = root / "docs.jsonl"
    jsonl.write_text("".join(json.dumps({"text": t}) + "\n" for t in corpus_texts()))
    train_tokenizer([jsonl], 512, root / "tok")
    preprocess([jsonl], str(root / "corpus"), str(root / "tok" / "tokenizer.json"), workers=0, progress=False)
    prefix = root / "corpus_text_document"
    overrides = [f"data.tokenizer={root / 'tok' / 'tokenizer.json'}", f"data.blend=[{prefix}]",
                 f"data.cache_dir={root / 'index-cache'}", "model.vocab_size=512", "model.num_layers=2",
                 "model.hidden_size=64", "model.ffn_hidden_size=128", "model.kv_channels=16",
                 "model.seq_length=64", "training.micro_batch_size=2", "training.global_batch_size=4",
                 "training.eval_interval=0", "data.split=100,0,0", "schedule.warmup_steps=1", "logging.log_interval=1",
                 "logging.tensorboard=false", "logging.plot=false"]
    return {"root": root, "jsonl": jsonl, "tokenizer": root / "tok" / "tokenizer.json", "prefix": prefix,
            "overrides": overrides}


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """{"root", "checkpoint", "config", "overrides"}: the inference tests' model (tests/infer/tiny_model.py: 2
    layers, hidden 128, weights at std 0.2 so greedy text depends on every value) saved as a complete
    `checkpoints/step_0000001` with its manifest, and `config.yaml` for it; built in a fresh interpreter (~10 s)."""
    import os
    import subprocess
    import sys

    root = tmp_path_factory.mktemp("tiny-checkpoint")
    code = ("import json, sys; from pathlib import Path; from tests.infer.tiny_model import build;"
            " from myllm_mc.config import dump, load; root = Path(sys.argv[1]); info = build(root);"
            " (root / 'config.yaml').write_text(dump(load('configs/tiny.yaml', info['overrides'], world_size=1)))")
    done = subprocess.run([sys.executable, "-c", code, str(root)], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    info = json.loads((root / "info.json").read_text())
    return {"root": root, "checkpoint": Path(info["checkpoint"]), "config": root / "config.yaml",
            "overrides": info["overrides"]}
