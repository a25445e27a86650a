"""GRPO's loss on the real model against a direct computation from the formula, advantages, and the zero
gradient of a group whose rewards are all equal (one gloo rank, tiny model, fp32)."""

from types import SimpleNamespace

import pytest
import torch

from myllm_mc.align.grpo_loss import aggregate, group_advantages, k3, vocab_parallel_entropy

VOCAB = 8192


@pytest.fixture(scope="module")
def model():
    from myllm_mc.config import load
    from myllm_mc.model import build_model
    from myllm_mc.parallel.state import init_distributed

    cfg = load("configs/grpo_tiny.yaml", ["model.seq_length=32", "model.num_layers=2", "model.hidden_size=64",
                                          "model.ffn_hidden_size=128", "model.kv_channels=16", "model.init_std=0.1",
                                          "training.micro_batch_size=4", "training.global_batch_size=16",
                                          "align.grpo.group_size=4", "align.grpo.beta=0.1",
                                          "align.grpo.max_new_tokens=10"], world_size=1)
    init_distributed(cfg, seed=3)
    (chunk,) = build_model(cfg)
    return cfg, chunk


def _objective(cfg, **grpo):
    import dataclasses

    from myllm_mc.align.grpo import GRPOObjective
    cfg = dataclasses.replace(cfg, align=dataclasses.replace(cfg.align, grpo=dataclasses.replace(cfg.align.grpo, **grpo)))
    objective = GRPOObjective(cfg, ["accuracy"], 4, SimpleNamespace(vocab_size=VOCAB, pad=0))
    objective.first_iteration = False
    return objective


def _batch(model, advantages):
    gen = torch.Generator().manual_seed(0)
    rows, seq = len(advantages), 32
    ids = torch.randint(0, VOCAB, (rows, seq + 1), generator=gen)
    mask = torch.zeros(rows, seq)
    mask[:, 20:] = 1.0
    mask[1, 26:] = 0.0                                          # a shorter completion
    with torch.no_grad():
        logits = model(ids[:, :-1], torch.arange(seq).expand(rows, seq), None)
        logp = torch.log_softmax(logits.float(), -1).gather(-1, ids[:, 1:, None])[..., 0]
    old = logp + 0.3 * torch.randn(rows, seq, generator=gen)     # ratios far enough from 1 to clip some
    ref = logp + 0.2 * torch.randn(rows, seq, generator=gen)
    return {"tokens": ids[:, :-1], "labels": ids[:, 1:], "position_ids": torch.arange(seq).expand(rows, seq),
            "mask": mask, "completion": mask, "sampler_logps": old * mask, "advantages": torch.tensor(advantages),
            "rewards": torch.zeros(rows), "components": torch.zeros(rows, 1), "lengths": mask.sum(1),
            "kept": torch.ones(rows), "old_logps": old, "ref_logps": ref}


def _direct(model, batch, beta, eps, mode, max_new):
    logits = model(batch["tokens"], batch["position_ids"], None)
    logp = torch.log_softmax(logits.float(), -1).gather(-1, batch["labels"][..., None])[..., 0]
    ratio = torch.exp(logp - batch["old_logps"])
    adv = batch["advantages"][:, None]
    pg = -torch.minimum(ratio * adv, torch.clamp(ratio, 1 - eps, 1 + eps) * adv)
    d = batch["ref_logps"] - logp
    per_token = (pg + beta * (torch.exp(d) - d - 1)) * batch["mask"]
    if mode == "token":
        return per_token.sum() / batch["mask"].sum()
    if mode == "sequence":
        return (per_token.sum(1) / batch["mask"].sum(1)).mean()
    return (per_token.sum(1) / max_new).mean()


@pytest.mark.parametrize("mode", ["token", "sequence", "constant"])
def test_one_step_loss_and_gradients_equal_the_formula(model, mode):
    cfg, chunk = model
    objective = _objective(cfg, beta=0.1, epsilon=0.2, loss_aggregation=mode)
    batch = _batch(chunk, [0.5, -1.0, 1.5, -0.7])
    chunk.zero_grad()
    output, loss_fn = objective.forward_step(iter([batch]), chunk)
    loss_sum, count, reports = loss_fn(output)
    loss = loss_sum / count
    loss.backward()
    ours = [p.grad.clone() for p in chunk.parameters()]
    chunk.zero_grad()
    expected = _direct(chunk, batch, 0.1, 0.2, mode, 10)
    expected.backward()
    theirs = [p.grad.clone() for p in chunk.parameters()]
    clip = reports["clip fraction"]
    print(f"{mode}: loss {loss.item():.8f} vs formula {expected.item():.8f}; clipped tokens "
          f"{clip[0].item():.0f}/{clip[1].item():.0f}")
    assert 0 < clip[0] < clip[1]                                 # the clip is exercised, not bypassed
    assert abs(loss.item() - expected.item()) < 1e-6
    worst = max((a - b).abs().max().item() for a, b in zip(ours, theirs))
    assert worst < 1e-6, worst
    assert max(g.abs().max().item() for g in ours) > 1e-4       # gradients that can tell a difference


def test_a_group_of_equal_rewards_contributes_exactly_zero_gradient(model):
    cfg, chunk = model
    advantages, spread = group_advantages(torch.tensor([1.0, 1.0, 1.0, 1.0, 0.0, 1.0, 0.0, 1.0]), 4)
    assert advantages[:4].tolist() == [0.0] * 4 and spread.tolist() == [False] * 4 + [True] * 4
    objective = _objective(cfg, beta=0.0)
    batch = _batch(chunk, advantages[:4].tolist())
    chunk.zero_grad()
    output, loss_fn = objective.forward_step(iter([batch]), chunk)
    loss_sum, count, _ = loss_fn(output)
    (loss_sum / count).backward()
    assert all(p.grad is None or p.grad.abs().max().item() == 0.0 for p in chunk.parameters())
    objective = _objective(cfg, beta=0.0)                       # the other group does move the weights
    batch = _batch(chunk, advantages[4:].tolist())
    output, loss_fn = objective.forward_step(iter([batch]), chunk)
    loss_sum, count, _ = loss_fn(output)
    (loss_sum / count).backward()
    assert max(p.grad.abs().max().item() for p in chunk.parameters() if p.grad is not None) > 1e-4


def test_group_advantages_grpo_and_dr_grpo():
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.2, 0.2, 0.2, 0.2, 3.0, 1.0, 2.0, 2.0])
    scaled, spread = group_advantages(rewards, 4)
    g = rewards.view(3, 4).double()
    expected = (g - g.mean(1, keepdim=True)) / (g.std(1, keepdim=True) + 1e-4)
    expected[1] = 0.0
    assert torch.allclose(scaled.double(), expected.view(-1), atol=1e-6)
    assert spread.tolist() == [True] * 4 + [False] * 4 + [True] * 4
    unscaled, _ = group_advantages(rewards, 4, scale=False)
    assert unscaled.tolist()[:4] == [0.5, -0.5, -0.5, 0.5] and unscaled.tolist()[4:8] == [0.0] * 4
    assert abs(unscaled[8:].sum().item()) < 1e-6


def test_k3_is_zero_at_equal_policies_and_positive_otherwise():
    a = torch.tensor([-1.0, -2.0, -0.5])
    assert k3(a, a).tolist() == [0.0, 0.0, 0.0]
    assert (k3(a, a + 0.3) > 0).all() and (k3(a, a - 0.3) > 0).all()


def test_aggregations_on_known_numbers():
    per_token = torch.tensor([[1.0, 2.0, 3.0, 0.0], [4.0, 0.0, 0.0, 0.0], [9.0, 9.0, 9.0, 9.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])   # row 3 dropped
    assert [x.item() for x in aggregate(per_token, mask, "token", 4)] == [10.0, 4]
    assert [x.item() for x in aggregate(per_token, mask, "sequence", 4)] == [2.0 + 4.0, 2]
    assert [x.item() for x in aggregate(per_token, mask, "constant", 4)] == [6.0 / 4 + 4.0 / 4, 2]


def test_entropy_matches_torch(model):
    logits = torch.randn(3, 5, 50, generator=torch.Generator().manual_seed(1)) * 3
    expected = torch.distributions.Categorical(logits=logits).entropy()
    assert torch.allclose(vocab_parallel_entropy(logits), expected, atol=1e-5)
