"""What a training step optimises: an objective is megatron's `forward_step_func` plus how its reports are reduced.

Contract (megatron-core's, with `calculate_per_token_loss=True`): `forward_step(data_iterator, model)` returns
`(output, loss_func)`; `loss_func(output)` returns `(loss_sum, count, {key: tensor([sum, count]), ...})`.
megatron divides the summed gradients by the global `count` (tokens for pretraining and SFT, pairs for DPO),
so a step's loss is the mean over the whole global batch however it is split across micro-batches and ranks.
`metrics(store)` turns the reports into plain numbers, identical on every rank.

A new objective (SFT, DPO, GRPO) subclasses `Objective`; the loop (`Trainer`) is never touched. An objective
that needs work before the policy's step (DPO's reference log-probs, GRPO's rollouts) overrides `prepare`.
"""

from __future__ import annotations

from typing import Dict, List, Sequence


class Objective:
    name = "objective"
    loss_key = "lm loss"                      # the report that is the loss
    metric_keys: Sequence[str] = ()           # further reports, each [sum, count], logged as their mean
    from_scratch = True                       # random init expected: check the first loss against ln(vocab)

    def forward_step(self, data_iterator, model):
        raise NotImplementedError

    def prepare(self, trainer, iterators: List, forward_only: bool) -> List:
        """Called once per global batch before the schedule runs; returns the iterators the schedule reads."""
        return iterators

    def metrics(self, forward_data_store: List[dict]) -> Dict[str, float]:
        """{"loss": mean, key: mean, ...} on every rank (collective)."""
        # torch-bound imports stay in the methods: align/sft.py subclasses Objective, and `myllm finetune`'s
        # launching parent imports it for its config check (check_align_layout) without torch
        from .step import global_metrics
        values = global_metrics(forward_data_store, (self.loss_key, *self.metric_keys))
        out = {"loss": values.pop(self.loss_key)}
        out.update({key.replace(" ", "_"): value for key, value in values.items()})
        return out


class PretrainObjective(Objective):
    """Next-token cross-entropy over every non-padding token (megatron GPTDataset batches)."""

    name = "pretrain"

    def forward_step(self, data_iterator, model):
        from myllm_mc.model import forward_step
        return forward_step(data_iterator, model)
