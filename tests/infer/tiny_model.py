"""A tiny model pretrained in-test, so greedy decoding is not the degenerate repeat of random weights.

What it is: a 1,024-entry BPE tokenizer trained on the first ~300 KB of the shipped corpus, and a 2-layer
GPTModel (hidden 128, GQA 4 heads / 2 groups, SwiGLU, RMSNorm, RoPE) trained for 80 AdamW steps on that text
(loss ~7.0 → ~4.5), saved with our checkpoint code as a complete `step_0000080` under `checkpoints/`.
About 20-30 s on 2 cores. Every inference test and the torchrun worker load it from disk.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
STEPS = 80
OVERRIDES = ["model.num_layers=2", "model.hidden_size=128", "model.num_attention_heads=4",
             "model.num_query_groups=2", "model.kv_channels=32", "model.ffn_hidden_size=384",
             "model.vocab_size=1024", "model.seq_length=128", "model.precision=fp32", "model.spec=local",
             "training.seed=1234"]


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
    """Train tokenizer + model under `root`; returns {"overrides": [...], "checkpoint": dir, "tokenizer": path}."""
    import torch

    from myllm_mc.config import load
    from myllm_mc.data.tokenizer import Tokenizer
    from myllm_mc.data.tokenizer_training import train_tokenizer
    from myllm_mc.checkpoint import save_model, store
    from myllm_mc.model import build_model
    from myllm_mc.parallel.state import init_distributed

    root.mkdir(parents=True, exist_ok=True)
    sliced = corpus_slice(root)
    train_tokenizer([sliced], 1024, root / "tokenizer")
    tokenizer_path = root / "tokenizer" / "tokenizer.json"
    overrides = OVERRIDES + [f"data.tokenizer={tokenizer_path}"]
    cfg = load("configs/tiny.yaml", overrides, world_size=1)
    tok = Tokenizer(tokenizer_path)
    ids = []
    for line in sliced.read_text().splitlines():
        ids += tok.encode(json.loads(line)["text"]) + [tok.eod]
    data = torch.tensor(ids)
    init_distributed(cfg)
    [model] = build_model(cfg)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    gen = torch.Generator().manual_seed(0)
    seq, batch = 64, 16
    losses = []
    for step in range(STEPS):
        starts = torch.randint(0, data.numel() - seq - 1, (batch,), generator=gen)
        window = torch.stack([data[s:s + seq + 1] for s in starts.tolist()])
        tokens, labels = window[:, :-1], window[:, 1:]
        positions = torch.arange(seq).expand(batch, seq)
        loss = model(tokens, positions, None, labels=labels).float().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    tmp = store.prepare_tmp(root / "checkpoints", STEPS)
    save_model([model], str(tmp))
    store.commit(root / "checkpoints", STEPS, {"step": STEPS, "config": "infer-test", "losses": losses[::10]})
    return {"overrides": overrides, "checkpoint": str(root / "checkpoints"), "tokenizer": str(tokenizer_path),
            "first_loss": losses[0], "last_loss": sum(losses[-5:]) / 5}
