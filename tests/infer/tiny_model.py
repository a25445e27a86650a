"""The inference tests' model: weights drawn at a larger init std, so greedy decoding is not degenerate.

Why not std 0.02 (the training default): the logits of such a model are nearly flat and greedy decoding repeats
one token from the first step, so a broken cache would still "match". At init std 0.2 the continuation of each
prompt has 28-30 distinct tokens out of 32 and the chosen token's probability is ~13 % (mean log-prob ≈ -2), so
tokens depend on the whole context; the parity test also compares log-probs within 1e-3. (A tiny model trained
in-test for 80 steps, loss 7.0 → 4.8, was tried first: its greedy output collapsed into a repeat after 4 tokens.)

What it is: a 1,024-entry BPE tokenizer trained on the first ~300 KB of the shipped corpus (so prompts, chat
templates and stop strings are real text) and a 2-layer GPTModel (hidden 128, GQA 4 heads / 2 groups of 32,
SwiGLU, RMSNorm, RoPE, fp32), saved with the checkpoint package as a complete `step_0000001` under
`checkpoints/`. A few seconds on 2 cores.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
OVERRIDES = ["model.num_layers=2", "model.hidden_size=128", "model.num_attention_heads=4",
             "model.num_query_groups=2", "model.kv_channels=32", "model.ffn_hidden_size=384",
             "model.vocab_size=1024", "model.seq_length=128", "model.precision=fp32", "model.spec=local",
             "model.init_std=0.2", "training.seed=1234"]


def corpus_slice(root: Path, max_bytes: int = 300_000) -> Path:
    import zstandard

    out, size = [], 0
    with open(REPO / "data" / "corpus.jsonl.zst", "rb") as raw:
        text = io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(raw), encoding="utf-8")
        for line in text:
            out.append(line)
            size += len(line)
            if size > max_bytes:
                break
    path = root / "slice.jsonl"
    path.write_text("".join(out))
    return path


def build(root: Path) -> dict:
    """Tokenizer + checkpoint under `root`; returns {"overrides": [...], "checkpoint": dir, "tokenizer": path}."""
    from myllm_mc.checkpoint import save_model, store
    from myllm_mc.config import load
    from myllm_mc.data.tokenizer_training import train_tokenizer
    from myllm_mc.model import build_model
    from myllm_mc.parallel.state import init_distributed

    root.mkdir(parents=True, exist_ok=True)
    sliced = corpus_slice(root)
    train_tokenizer([sliced], 1024, root / "tokenizer")
    tokenizer_path = root / "tokenizer" / "tokenizer.json"
    overrides = OVERRIDES + [f"data.tokenizer={tokenizer_path}"]
    cfg = load("configs/tiny.yaml", overrides, world_size=1)
    init_distributed(cfg)
    chunks = build_model(cfg)
    tmp = store.prepare_tmp(root / "checkpoints", 1)
    save_model(chunks, str(tmp))
    store.commit(root / "checkpoints", 1, {"step": 1, "config": "infer-test", "init_std": cfg.model.init_std})
    info = {"overrides": overrides, "checkpoint": str(root / "checkpoints"), "tokenizer": str(tokenizer_path),
            "slice": str(sliced)}
    (root / "info.json").write_text(json.dumps(info))
    return info
