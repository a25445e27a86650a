"""Assistant-only loss and packing on the real model (one gloo rank, tiny model with init std 0.1 so that
attention is far from uniform and a leak across conversations would show)."""

import json

import pytest
import torch

from myllm_mc.align.chat_data import Conversation
from myllm_mc.align.packing import SequenceDataset, pack
from myllm_mc.align.sft import SFTObjective


@pytest.fixture
def model(chat_tokenizer):
    from myllm_mc.config import load
    from myllm_mc.model import build_model
    from myllm_mc.parallel.state import init_distributed

    cfg = load("configs/tiny.yaml", ["model.seq_length=128", "model.num_layers=2", "model.init_std=0.1",
                                      "model.precision=fp32", "training.micro_batch_size=1",
                                      "training.global_batch_size=1"], world_size=1)
    init_distributed(cfg, seed=7)
    (chunk,) = build_model(cfg)
    return chunk


def _conversations(tokenizer, n=3, task="arithmetic"):
    out = []
    for line in list(open(f"data/tasks/sft/{task}.train.jsonl"))[:n]:
        ids, mask = tokenizer.encode_chat(json.loads(line)["messages"])
        out.append(Conversation(ids, mask))
    return out


def _per_token_loss(model, batch, packing=True):
    output, loss_fn = SFTObjective(packing).forward_step(iter([batch]), model)
    return output, loss_fn


def _batch(arrays, rows=None):
    data = SequenceDataset(arrays)
    rows = range(len(data)) if rows is None else rows
    return {k: torch.stack([data[i][k] for i in rows]) for k in data[0]}


def test_tokens_outside_replies_get_exactly_zero_gradient(model, chat_tokenizer):
    batch = _batch(pack(_conversations(chat_tokenizer), 128, chat_tokenizer.pad, True, seed=0))
    output, loss_fn = _per_token_loss(model, batch)
    output.retain_grad()
    loss_sum, count, _ = loss_fn(output)
    (loss_sum / count).backward()
    outside = batch["loss_mask"] == 0
    assert output.grad[outside].abs().max().item() == 0.0             # exactly zero, not small
    assert (output.grad[~outside] != 0).all()
    grads = [p.grad.clone() for p in model.parameters()]
    # the same batch with every label outside the replies replaced: parameter gradients are bit-identical
    model.zero_grad()
    changed = dict(batch, labels=torch.where(outside, (batch["labels"] + 17) % 1000, batch["labels"]))
    output, loss_fn = _per_token_loss(model, changed)
    loss_sum, count, _ = loss_fn(output)
    (loss_sum / count).backward()
    assert all(torch.equal(a, p.grad) for a, p in zip(grads, model.parameters()))


def test_a_packed_conversation_has_the_same_loss_as_alone(model, chat_tokenizer):
    convs = _conversations(chat_tokenizer)
    packed = pack(convs, 128, chat_tokenizer.pad, True, seed=0)
    assert len(packed["tokens"]) == 1                                  # all three share one sequence
    alone = pack(convs, 128, chat_tokenizer.pad, False, seed=0)        # same shuffled order, one per row
    with torch.no_grad():
        p_out, _ = _per_token_loss(model, _batch(packed))
        a_out, _ = _per_token_loss(model, _batch(alone), packing=False)
        leak_out, _ = _per_token_loss(model, _batch(packed), packing=False)   # plain causal: attends across
    diffs, leaks = [], []
    for segment in range(3):
        sel = torch.from_numpy(packed["segment_ids"][0] == segment)
        mask = torch.from_numpy(packed["loss_mask"][0])
        packed_loss = (p_out[0] * mask * sel).sum() / (mask * sel).sum()
        leak_loss = (leak_out[0] * mask * sel).sum() / (mask * sel).sum()
        own = torch.from_numpy(alone["loss_mask"][segment])
        alone_loss = (a_out[segment] * own).sum() / own.sum()
        diffs.append(abs(packed_loss - alone_loss).item())
        leaks.append(abs(leak_loss - alone_loss).item())
    print(f"packed vs alone: max |Δ loss| {max(diffs):.2e}; without the block mask {max(leaks[1:]):.2e}")
    assert max(diffs) < 1e-5
    assert max(leaks[1:]) > 1e-3          # the comparison can fail: without the mask the later ones differ
