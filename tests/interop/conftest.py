"""A small trained MyLLM model for the interop tests, built once per session.

Why trained: random weights at std 0.02 make greedy decoding repeat one token, so "identical greedy tokens"
would prove nothing. The model (2 layers, hidden 128, 4 heads / 2 KV heads, vocab 1,024) is trained for
STEPS AdamW steps (lr 5e-3, 16 × 64 tokens) on the shipped corpus (~25 s; 80 steps still decoded "the the the…"), which gives varied greedy continuations and top-2 margins that
fp32 conversions must reproduce exactly. The tokenizer is a 1,024-entry byte-level BPE learned from the first
documents of the same corpus.
"""

from __future__ import annotations

import pytest
from interop_helpers import MODEL, REPO, STEPS, corpus_texts


@pytest.fixture(scope="session")
def family_hf_dirs(tmp_path_factory):
    """{family: HF directory}: a tiny random-weight model of each supported family saved by transformers
    (tests/interop/family_models.py), with a 1,024-entry byte-level BPE tokenizer learned from the corpus."""
    import json

    from family_models import FAMILIES, MOE_FAMILIES, save_family

    from myllm_mc.data.tokenizer_training import train_tokenizer

    root = tmp_path_factory.mktemp("families")
    (root / "subset.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in corpus_texts(300)[:300]))
    train_tokenizer([root / "subset.jsonl"], 1024, root / "tokenizer", heldout_every=0)
    return {family: save_family(family, root / family, root / "tokenizer") for family in FAMILIES + MOE_FAMILIES}


class _Imports(dict):
    """{family: {"cfg", "config_path", "checkpoint"}}, each family imported on first use (a session that needs
    one family does not pay for the others)."""

    def __init__(self, sources, root):
        super().__init__()
        self.sources, self.root = sources, root

    def __missing__(self, family):
        from myllm_mc.config import load
        from myllm_mc.interop.hf_import import import_hf

        out = self.root / family
        import_hf(self.sources[family], out)
        self[family] = {"cfg": load(out / "config.yaml", world_size=1), "config_path": out / "config.yaml",
                        "checkpoint": out / "checkpoint"}
        return self[family]


@pytest.fixture(scope="session")
def family_imports(family_hf_dirs, tmp_path_factory):
    """{family: {"cfg", "config_path", "checkpoint"}}: each family's HF model imported by `import_hf`."""
    return _Imports(family_hf_dirs, tmp_path_factory.mktemp("family-imports"))


@pytest.fixture(scope="session")
def interop_model(tmp_path_factory):
    """{"cfg", "config_path", "tokenizer", "checkpoint", "root"}: a trained tiny model saved at TP=1."""
    import json

    import torch

    from myllm_mc.checkpoint import save_model
    from myllm_mc.config import dump, load
    from myllm_mc.data.tokenizer import Tokenizer
    from myllm_mc.data.tokenizer_training import train_tokenizer
    from myllm_mc.interop.weights import build_single, single_process

    root = tmp_path_factory.mktemp("interop")
    texts = corpus_texts(400)
    (root / "subset.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts[:300]))
    train_tokenizer([root / "subset.jsonl"], 1024, root / "tokenizer", heldout_every=0)
    cfg = load(REPO / "configs" / "tiny.yaml", MODEL + [f"data.tokenizer={root / 'tokenizer' / 'tokenizer.json'}"],
               world_size=1)
    config_path = root / "config.yaml"
    config_path.write_text(dump(cfg))
    tok = Tokenizer(cfg.data.tokenizer)
    stream = torch.tensor([i for ids in tok.encode_batch(texts) for i in ids + [tok.eod]])
    model = build_single(single_process(cfg))
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3, weight_decay=0.0)
    generator = torch.Generator().manual_seed(0)
    seq = cfg.model.seq_length
    positions = torch.arange(seq)[None].expand(16, -1)
    model.train()
    for _ in range(STEPS):
        starts = torch.randint(0, len(stream) - seq - 1, (16,), generator=generator)
        window = torch.stack([stream[s:s + seq + 1] for s in starts.tolist()])
        loss = model(window[:, :-1], positions, None, labels=window[:, 1:]).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    save_model([model], str(root / "tp1"))
    from myllm_mc.plan.params import parameter_breakdown
    return {"cfg": cfg, "config_path": config_path, "tokenizer": tok, "checkpoint": root / "tp1", "root": root,
            "final_loss": float(loss), "planned_parameters": parameter_breakdown(cfg.model).total}
