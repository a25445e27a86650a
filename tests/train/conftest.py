"""The tiny preset's data, built once per session: an 8,192-entry tokenizer and the shipped corpus as .bin/.idx."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """Config overrides that point the tiny preset at freshly built tokenizer + shards (a small, fast shape)."""
    from myllm_mc.data.preprocess import preprocess
    from myllm_mc.data.tokenizer_training import train_tokenizer

    root = tmp_path_factory.mktemp("tiny-data")
    corpus = [REPO / "data" / "corpus.jsonl.zst"]
    train_tokenizer(corpus, 8192, root / "tokenizer")
    preprocess(corpus, str(root / "corpus"), str(root / "tokenizer" / "tokenizer.json"), workers=0, progress=False)
    return [f"data.tokenizer={root / 'tokenizer' / 'tokenizer.json'}", f"data.blend=[{root / 'corpus_text_document'}]",
            "model.seq_length=128", "training.micro_batch_size=4", "training.global_batch_size=8",
            "training.eval_interval=0", "schedule.warmup_steps=5", "logging.log_interval=1",
            "logging.tensorboard=false", "logging.plot=false"]
