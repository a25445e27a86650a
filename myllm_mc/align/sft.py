"""Supervised fine-tuning: next-token loss on assistant tokens only, as an objective of the shared engine.

Loss convention: like pretraining, the mean cross-entropy over every *counted* token of the global batch
(megatron's `calculate_per_token_loss`): here the counted tokens are the assistant replies and their
<|im_end|>. A conversation with a long reply therefore weighs more than one with a short reply, and DP2, TP2,
PP2 and DP1 with accumulation give the same loss (tested to 1e-4).
"""

from __future__ import annotations

import dataclasses
import math
from functools import partial

import numpy as np

from myllm_mc.config import Config, ConfigError
from myllm_mc.data.datasets import ResumableBatchSampler
from myllm_mc.data.tokenizer import Tokenizer
from myllm_mc.lora import check_lora
from myllm_mc.parallel.hardware import resolve_spec
from myllm_mc.parallel.launch import launcher_rank
from myllm_mc.train.faults import NONE
from myllm_mc.train.objective import Objective

from .chat_data import check_sources, read_sft_sources
from .packing import SequenceDataset, block_causal_mask, pack


class SFTObjective(Objective):
    name = "sft"
    loss_key = "lm loss"
    from_scratch = False

    def __init__(self, packing: bool):
        self.packing = packing

    def forward_step(self, data_iterator, model):
        # torch-bound imports stay in the functions here: `myllm finetune`'s launching parent imports this module
        # for check_align_layout, without torch
        from myllm_mc.model import lm_loss

        batch = next(data_iterator)
        device = next(model.parameters()).device
        batch = {k: v.to(device) for k, v in batch.items()}
        mask = block_causal_mask(batch["segment_ids"]) if self.packing else None
        output = model(batch["tokens"], batch["position_ids"], mask, labels=batch["labels"])
        return output, partial(lm_loss, batch["loss_mask"])


def check_align_layout(cfg: Config, method: str = "sft") -> None:
    """What fine-tuning cannot do yet, refused before any work (one line each)."""
    if cfg.parallel.context > 1:
        raise ConfigError("parallel.context > 1: fine-tuning sequences carry a block-diagonal mask that context"
                          " parallelism does not split — fix: set parallel.context=1 (chat sequences are short)")
    if method != "grpo" and cfg.align.packing and resolve_spec(cfg.model) == "te":
        raise ConfigError("align.packing=true with the Transformer Engine spec: TE's fused attention takes no"
                          " block-diagonal mask here — fix: set align.packing=false (or model.spec=local)")
    if not cfg.align.train:
        raise ConfigError("align.train is empty — fix: list chat JSONL files, e.g. data/tasks/sft/arithmetic.train.jsonl")
    check_sources(cfg.align.train, "align.train", method)
    check_sources(cfg.align.valid, "align.valid", method)
    check_lora(cfg)


def steps_for_epochs(cfg: Config, sequences_per_epoch: int) -> int:
    """The run's training steps: ceil(align.epochs × sequences per epoch / global batch) when align.epochs is set,
    else training.steps as configured. Decided where the run is set up (run_sft, run_dpo), before the data is built."""
    if not cfg.align.epochs:
        return cfg.training.steps
    return math.ceil(cfg.align.epochs * sequences_per_epoch / cfg.training.global_batch_size)


def with_steps(cfg: Config, steps: int) -> Config:
    return dataclasses.replace(cfg, training=dataclasses.replace(cfg.training, steps=steps))


def epochs_to_build(cfg: Config, sequences_per_epoch: int) -> int:
    """Epochs of data that cover cfg.training.steps global batches, plus one."""
    gbs = cfg.training.global_batch_size
    return max(1, math.ceil(cfg.training.steps * gbs / max(sequences_per_epoch, 1))) + 1


def read_sft_data(cfg: Config, tokenizer, echo=print):
    """(conversations, sequences per epoch) of align.train; the reader's summary is echoed."""
    a, seq = cfg.align, cfg.model.seq_length
    conversations, stats = read_sft_sources(a.train, tokenizer, a.strict, a.max_records)
    stats.truncated = sum(len(c.ids) > seq + 1 for c in conversations)
    echo(stats.summary("sft train"))
    if not conversations:
        raise SystemExit(f"align.train: no usable chat record in {', '.join(a.train)} — fix: check the files")
    return conversations, len(pack(conversations, seq, tokenizer.pad, a.packing, cfg.training.seed)["tokens"])


def build_sft_data(cfg: Config, tokenizer, conversations, one_epoch: int, echo=print):
    """(train arrays, valid arrays or None) for cfg.training.steps steps. Deterministic: every rank builds it."""
    a, seq, steps = cfg.align, cfg.model.seq_length, cfg.training.steps
    train = pack(conversations, seq, tokenizer.pad, a.packing, cfg.training.seed, epochs_to_build(cfg, one_epoch))
    tokens = sum(min(len(c.ids) - 1, seq) for c in conversations)     # what is trained on: longer ones are cut
    echo(f"sft: {len(conversations):,} conversations, {tokens:,} tokens, {one_epoch:,} sequences of {seq} per epoch"
         f" ({'packed' if a.packing else 'padded'}, {100 * tokens / (one_epoch * seq):.0f}% real tokens);"
         f" {steps} steps = {steps * cfg.training.global_batch_size / one_epoch:.2f} epochs")
    valid = None
    if a.valid:
        held_out, vstats = read_sft_sources(a.valid, tokenizer, a.strict)
        echo(vstats.summary("sft valid"))
        if held_out:
            valid = pack(held_out, seq, tokenizer.pad, a.packing, cfg.training.seed + 1, epochs=1)
            need = cfg.training.eval_steps * cfg.training.global_batch_size
            if len(valid["tokens"]) < need:                 # repeat the held-out set to fill the eval batches
                reps = -(-need // len(valid["tokens"]))
                valid = {k: np.concatenate([v] * reps) for k, v in valid.items()}
    return train, valid


def sequence_data(train, valid):
    """`make_data` for run_objective: DP-sharded iterators over packed sequences, resumable by position."""
    def make(cfg: Config, state):
        import torch
        from megatron.core import parallel_state as ps

        from myllm_mc.train.trainer import ObjectiveData

        rank, size = ps.get_data_parallel_rank(), ps.get_data_parallel_world_size()
        mbs = cfg.training.micro_batch_size

        def loader(arrays, consumed):
            dataset = SequenceDataset(arrays)
            return iter(torch.utils.data.DataLoader(
                dataset, batch_sampler=ResumableBatchSampler(len(dataset), consumed, mbs, rank, size)))

        return ObjectiveData(lambda consumed: loader(train, consumed),
                             (lambda: loader(valid, 0)) if valid is not None else None)
    return make


def run_sft(cfg: Config, faults=None, extra_callbacks=()):
    """`myllm finetune sft`: data → shared state set-up (init_from at any layout, resume) → SFT objective."""
    from myllm_mc.train.run import run_objective

    check_align_layout(cfg)
    echo = print if _is_first_rank() else (lambda message: None)
    tokenizer = Tokenizer(cfg.data.tokenizer)
    conversations, one_epoch = read_sft_data(cfg, tokenizer, echo)
    cfg = with_steps(cfg, steps_for_epochs(cfg, one_epoch))         # align.epochs decides the steps when set
    train, valid = build_sft_data(cfg, tokenizer, conversations, one_epoch, echo)
    return run_objective(cfg, SFTObjective(cfg.align.packing), sequence_data(train, valid),
                         faults or NONE, extra_callbacks)


def _is_first_rank() -> bool:
    return launcher_rank() == 0
