"""Task accuracy through the real path (chat-template prompt → greedy decoding in the infer Generator →
verifier) on a model trained in-test to answer four shipped test prompts: accuracy and format 1.0; the same
prompts with wrong reference answers: accuracy 0.0 while format stays 1.0 (the two figures are independent)."""

from __future__ import annotations

import json

import torch

from tests.evaluate.conftest import model_cfg


def _records():
    rows = []
    for task in ("arithmetic", "format"):
        rows += [json.loads(line) for line in open(f"data/tasks/prompts/{task}.test.jsonl")][:2]
    return rows


def _fit(chunk, tokenizer, records, steps=60):
    """Adam on each prompt + its right reply (assistant tokens only carry loss), as SFT would."""
    rows, masks = [], []
    for r in records:
        reply = f"<answer>{r['answer']}</answer>" if r["task"] == "format" else r["answer"]
        ids, mask = tokenizer.encode_chat(r["messages"] + [{"role": "assistant", "content": reply}])
        rows.append(ids)
        masks.append(mask)
    width = max(map(len, rows)) - 1
    tokens = torch.zeros(len(rows), width, dtype=torch.long)
    labels, loss_mask = torch.zeros_like(tokens), torch.zeros(len(rows), width)
    for i, (ids, mask) in enumerate(zip(rows, masks)):
        n = len(ids) - 1
        tokens[i, :n], labels[i, :n] = torch.tensor(ids[:-1]), torch.tensor(ids[1:])
        loss_mask[i, :n] = torch.tensor(mask[1:], dtype=torch.float)
    positions = torch.arange(width)[None].expand(len(rows), -1)
    opt = torch.optim.Adam(chunk.parameters(), lr=3e-3)
    chunk.train()
    for _ in range(steps):
        opt.zero_grad()
        loss = (chunk(tokens, positions, None, labels=labels) * loss_mask).sum() / loss_mask.sum()
        loss.backward()
        opt.step()
    chunk.eval()
    return loss.item(), width + 1


def test_task_accuracy_and_format_on_prompts_a_model_was_taught(eval_model, eval_tokenizer):
    from myllm_mc.evaluate import task_accuracy
    from myllm_mc.infer import Generator
    from myllm_mc.model import build_model
    from myllm_mc.parallel.state import init_distributed

    cfg = model_cfg(eval_model, "model.init_std=0.1", "model.seq_length=128")   # the prompts need > 64 tokens
    init_distributed(cfg, seed=7)
    (chunk,) = build_model(cfg)
    records = _records()
    loss, longest = _fit(chunk, eval_tokenizer, records)
    generator = Generator(chunk, eval_tokenizer, cfg.model, max_batch_size=4, seed=0)
    table = task_accuracy(generator, records, max_new_tokens=24)
    wrong = [dict(r, answer=str(int(r["answer"]) + 1)) for r in records]
    control = task_accuracy(generator, wrong, max_new_tokens=24)
    print(f"SFT-style fit loss {loss:.4f} (longest conversation {longest} tokens); accuracy "
          f"{table['all']['accuracy']:.2f}, format {table['all']['format']:.2f}; wrong references: accuracy "
          f"{control['all']['accuracy']:.2f}, format {control['all']['format']:.2f}")
    assert loss < 0.05
    assert table["all"]["too_long"] == 0 and table["all"]["total"] == 4
    assert {k: (v["correct"], v["format_ok"], v["total"]) for k, v in table.items()} == {
        "arithmetic": (2, 2, 2), "format": (2, 2, 2), "all": (4, 4, 4)}
    assert control["all"]["accuracy"] == 0.0 and control["all"]["format"] == 1.0
