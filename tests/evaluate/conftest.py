"""Fixtures of the eval tests: the inference tests' 1,024-entry tokenizer and 2-layer checkpoint
(tests/infer/tiny_model.py, random init std 0.2), a second checkpoint of the same shape drawn with another seed
(for the comparison table), and an in-process model at init std 0.1 on one gloo rank."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def eval_model(tmp_path_factory):
    """{"overrides", "checkpoint", "checkpoint_b", "tokenizer", "slice"}."""
    from myllm_mc.checkpoint import save_model, store
    from myllm_mc.config import load
    from myllm_mc.model import build_model
    from myllm_mc.parallel.state import init_distributed
    from tests.infer.tiny_model import build

    root = tmp_path_factory.mktemp("eval-model")
    info = build(root)
    cfg = load("configs/tiny.yaml", info["overrides"], world_size=1)
    init_distributed(cfg, seed=99)
    chunks = build_model(cfg)
    tmp = store.prepare_tmp(root / "other" / "checkpoints", 1)
    save_model(chunks, str(tmp))
    store.commit(root / "other" / "checkpoints", 1, {"step": 1, "config": "eval-test", "seed": 99})
    return {**info, "checkpoint_b": str(root / "other" / "checkpoints")}


@pytest.fixture(scope="session")
def eval_tokenizer(eval_model):
    from myllm_mc.data.tokenizer import Tokenizer

    return Tokenizer(eval_model["tokenizer"])


@pytest.fixture(scope="session")
def sample_texts(eval_model, tmp_path_factory):
    """A .jsonl of 6 corpus documents (cut to ≤ 600 characters each) and the documents."""
    docs = [json.loads(line)["text"][:600] for line in Path(eval_model["slice"]).read_text().splitlines()[:6]]
    path = tmp_path_factory.mktemp("eval-text") / "docs.jsonl"
    path.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    return path, docs


def model_cfg(eval_model, *extra):
    from myllm_mc.config import load

    return load("configs/tiny.yaml", [*eval_model["overrides"], "model.seq_length=64", *extra], world_size=1)


@pytest.fixture
def fresh_model(eval_model):
    """(cfg, GPTModel) at init std 0.1 (logits far from flat, so NLLs differ per token), fp32, one gloo rank."""
    from myllm_mc.model import build_model
    from myllm_mc.parallel.state import init_distributed

    cfg = model_cfg(eval_model, "model.init_std=0.1")
    init_distributed(cfg, seed=7)
    (chunk,) = build_model(cfg)
    return cfg, chunk
