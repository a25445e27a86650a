"""Direct preference optimisation (Rafailov et al. 2023) as an objective of the shared engine.

A pair is one training sequence holding two segments, prompt+chosen and prompt+rejected, with block-diagonal
attention (`packing.py`): the micro-batch shape megatron's pipeline schedules expect is unchanged, so DPO runs
at any TP/PP/DP layout. Sequence log-probs are summed over the reply tokens only (the loss mask). The frozen
reference (`build_frozen_model`: same layout, no gradients, no optimizer state) scores each global batch once,
in a forward-only pass of the same megatron schedule, before the policy's step (`DPOObjective.prepare`).

Loss per pair, logits = β·[(log π(c) − log π_ref(c)) − (log π(r) − log π_ref(r))]:
    −(1−ε)·log σ(logits) − ε·log σ(−logits)       (ε = align.label_smoothing, conservative DPO)
averaged over the pairs of the global batch (the objective's count is pairs, not tokens).
Metrics: reward accuracy (chosen reward > rejected reward), reward margin (mean logits), chosen/rejected
log-probs (policy), and a KL proxy: mean over both replies of log π − log π_ref (0 at the start).
"""

from __future__ import annotations

import contextlib
from functools import partial
from typing import Callable, List

import numpy as np
import torch
import torch.nn.functional as F

from myllm_mc.config import Config
from myllm_mc.data.tokenizer import Tokenizer
from myllm_mc.lora.apply import adapters_disabled
from myllm_mc.train.faults import NONE
from myllm_mc.train.objective import Objective
from myllm_mc.train.run import run_objective
from myllm_mc.train.setup import build_frozen_model
from myllm_mc.train.step import run_schedule

from .chat_data import Conversation, read_pairs
from .packing import PAD_SEGMENT, block_causal_mask, epoch_order
from .sft import _is_first_rank, check_align_layout, epochs_to_build, sequence_data, steps_for_epochs, with_steps


def pack_pairs(pairs, seq_length: int, pad_id: int, seed: int, epochs: int = 1) -> dict:
    """One sequence per pair: segment 0 = prompt+chosen, segment 1 = prompt+rejected (each cut to half the
    sequence if together they do not fit)."""
    order = [i for e in range(epochs) for i in epoch_order(len(pairs), seed, e)]
    n = len(order)
    out = {"tokens": np.full((n, seq_length), pad_id, np.int64), "labels": np.full((n, seq_length), pad_id, np.int64),
           "loss_mask": np.zeros((n, seq_length), np.float32), "position_ids": np.zeros((n, seq_length), np.int64),
           "segment_ids": np.full((n, seq_length), PAD_SEGMENT, np.int64)}
    for r, index in enumerate(order):
        convs: List[Conversation] = list(pairs[index])
        limit = seq_length + 2 if sum(len(c.ids) for c in convs) <= seq_length + 2 else seq_length // 2 + 1
        at = 0
        for segment, conv in enumerate(convs):
            ids, mask = conv.ids[:limit], conv.mask[:limit]
            k = len(ids) - 1
            out["tokens"][r, at:at + k] = ids[:-1]
            out["labels"][r, at:at + k] = ids[1:]
            out["loss_mask"][r, at:at + k] = mask[1:]
            out["position_ids"][r, at:at + k] = np.arange(k)
            out["segment_ids"][r, at:at + k] = segment
            at += k
        out["position_ids"][r, at:] = np.arange(seq_length - at)
    return out


def sequence_logps(per_token_loss, batch):
    """[mbs, 2] summed log-probs of the chosen (segment 0) and rejected (segment 1) replies."""
    logp = -per_token_loss.float() * batch["loss_mask"].float()
    seg = batch["segment_ids"]
    return torch.stack([(logp * (seg == 0)).sum(-1), (logp * (seg == 1)).sum(-1)], dim=-1)


def _to_device(batch, model):
    device = next(model.parameters()).device
    return {k: v.to(device) for k, v in batch.items()}


def _run(model, batch):
    return model(batch["tokens"], batch["position_ids"], block_causal_mask(batch["segment_ids"]),
                 labels=batch["labels"])


class DPOObjective(Objective):
    name = "dpo"
    loss_key = "dpo loss"
    metric_keys = ("reward accuracy", "reward margin", "chosen logps", "rejected logps", "kl proxy")
    from_scratch = False

    def __init__(self, reference: List, beta: float, label_smoothing: float = 0.0):
        self.reference, self.beta, self.label_smoothing = reference, beta, label_smoothing
        self.reference_scope: Callable = contextlib.nullcontext   # LoRA: the policy with its adapters off

    # -- reference log-probs, once per global batch ---------------------------------------------------------
    def prepare(self, trainer, iterators, forward_only):
        n = trainer.num_microbatches
        batches = [next(iterators[0]) for _ in range(n)]
        for other in iterators[1:]:                  # interleaved schedules: every chunk's iterator advances
            for _ in range(n):
                next(other)
        with torch.no_grad(), self.reference_scope():
            store = run_schedule(self.reference, self._reference_step, [iter(batches) for _ in self.reference], n,
                                 trainer.cfg.model.seq_length, trainer.cfg.training.micro_batch_size, True)
        for batch, entry in zip(batches, store):     # the last pipeline stage only: where the loss is computed
            batch["ref_logps"] = entry["ref logps"]
        return [iter(batches) for _ in iterators]

    def _reference_step(self, data_iterator, model):
        batch = _to_device(next(data_iterator), model)
        output = _run(model, batch)

        def collect(per_token_loss):
            one = torch.ones((), dtype=torch.int, device=per_token_loss.device)
            return per_token_loss.sum() * 0, one, {"ref logps": sequence_logps(per_token_loss, batch).detach()}
        return output, collect

    # -- the policy's step ---------------------------------------------------------------------------------
    def forward_step(self, data_iterator, model):
        batch = _to_device(next(data_iterator), model)
        return _run(model, batch), partial(self.loss, batch)

    def loss(self, batch, per_token_loss):
        policy = sequence_logps(per_token_loss, batch)
        ref = batch["ref_logps"].to(policy.device)
        delta = policy - ref                                        # [mbs, 2]: log π − log π_ref
        logits = self.beta * (delta[:, 0] - delta[:, 1])
        eps = self.label_smoothing
        losses = -(1 - eps) * F.logsigmoid(logits) - eps * F.logsigmoid(-logits)
        pairs = torch.tensor(float(len(logits)), device=policy.device)

        def report(values):
            return torch.stack([values.detach().float().sum(), pairs])
        return losses.sum(), pairs.to(torch.int), {
            "dpo loss": report(losses), "reward accuracy": report((logits > 0).float()),
            "reward margin": report(logits), "chosen logps": report(policy[:, 0]),
            "rejected logps": report(policy[:, 1]), "kl proxy": report(delta.mean(-1))}


def read_dpo_pairs(cfg: Config, tokenizer, echo=print) -> list:
    """The preference pairs of align.train; the reader's summary is echoed."""
    a = cfg.align
    pairs, stats = read_pairs(a.train, tokenizer, a.strict, a.max_records)
    echo(stats.summary("dpo train"))
    if not pairs:
        raise SystemExit(f"align.train: no usable preference pair in {', '.join(a.train)} — fix: check the files")
    return pairs


def build_dpo_data(cfg: Config, tokenizer, pairs, echo=print):
    """(train arrays, valid arrays or None) for cfg.training.steps steps."""
    a, seq, steps = cfg.align, cfg.model.seq_length, cfg.training.steps
    train = pack_pairs(pairs, seq, tokenizer.pad, cfg.training.seed, epochs_to_build(cfg, len(pairs)))
    echo(f"dpo: {len(pairs):,} pairs, {steps} steps = {steps * cfg.training.global_batch_size / len(pairs):.2f} epochs,"
         f" beta {a.beta}, label smoothing {a.label_smoothing}")
    valid = None
    if a.valid:
        held_out, vstats = read_pairs(a.valid, tokenizer, a.strict)
        echo(vstats.summary("dpo valid"))
        if held_out:
            need = cfg.training.eval_steps * cfg.training.global_batch_size
            valid = pack_pairs(held_out, seq, tokenizer.pad, cfg.training.seed + 1, epochs=-(-need // len(held_out)))
    return train, valid


def adapter_reference(cfg: Config) -> bool:
    """With LoRA the reference is the frozen base itself (adapters off), unless align.reference names other weights."""
    return cfg.align.lora.enabled and cfg.align.reference in (None, cfg.checkpoint.init_from)


def run_dpo(cfg: Config, faults=None, extra_callbacks=()):
    """`myllm finetune dpo`: policy from `checkpoint.init_from` (or resumed), frozen reference from
    `align.reference` or `checkpoint.init_from`, both in the run's layout."""
    check_align_layout(cfg, "dpo")
    echo = print if _is_first_rank() else (lambda message: None)
    tokenizer = Tokenizer(cfg.data.tokenizer)
    pairs = read_dpo_pairs(cfg, tokenizer, echo)
    cfg = with_steps(cfg, steps_for_epochs(cfg, len(pairs)))        # align.epochs decides the steps when set
    train, valid = build_dpo_data(cfg, tokenizer, pairs, echo)
    objective = DPOObjective([], cfg.align.beta, cfg.align.label_smoothing)
    base = sequence_data(train, valid)

    def make_data(run_cfg, state):
        if adapter_reference(cfg):
            objective.reference = state.model
            objective.reference_scope = partial(adapters_disabled, state.model)
            echo("dpo reference: the policy's base with its LoRA adapters disabled (no frozen copy in memory)")
        else:
            objective.reference = build_frozen_model(run_cfg, cfg.align.reference or cfg.checkpoint.init_from)
        return base(run_cfg, state)

    return run_objective(cfg, objective, make_data, faults or NONE, extra_callbacks)
