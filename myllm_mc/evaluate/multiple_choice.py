"""Multiple choice by log-likelihood, from a plain JSONL that users write themselves:

    {"context": "The capital of France is", "choices": [" Paris", " Rome", " Oslo"], "gold": 0}

Each choice is scored as log p(choice | context) = Σ over the choice's tokens of log p(token | everything before),
with the context and the choice tokenized separately and concatenated (so a choice's tokens do not depend on the
context; put the separating space at the start of the choice, as the common harnesses do). `accuracy` picks the
choice with the highest sum; `accuracy_norm` the highest sum divided by the choice's UTF-8 byte length (longer
answers are not penalised for having more tokens). An empty context is read as the end-of-document id.
Long pairs keep their last seq_length + 1 tokens (the context is cut from the left).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch

from myllm_mc.jsonl import read_jsonl

from .inputs import EvalError
from .perplexity import token_nll


@dataclass
class MCSet:
    path: str
    items: List[Tuple[str, List[str], int]]                 # (context, choices, gold)
    skipped: Dict[str, int] = field(default_factory=dict)    # reason → records

    def summary(self) -> str:
        skipped = sum(self.skipped.values())
        why = ", ".join(f"{n} {reason}" for reason, n in sorted(self.skipped.items()))
        return (f"multiple choice: {len(self.items)} questions from {self.path}"
                + (f"; skipped {skipped} malformed ({why})" if skipped else ""))


def _problem(record) -> Optional[str]:
    """Why a record cannot be scored (a short reason name), or None."""
    if not isinstance(record, dict):
        return "not_an_object"
    if not isinstance(record.get("context"), str):
        return "context_not_string"
    choices = record.get("choices")
    if not isinstance(choices, list) or len(choices) < 2 or not all(isinstance(c, str) for c in choices):
        return "choices_not_two_or_more_strings"
    if not all(choices):
        return "empty_choice"
    gold = record.get("gold")
    if not isinstance(gold, int) or isinstance(gold, bool) or not 0 <= gold < len(choices):
        return "gold_not_a_choice_index"
    return None


def read_mc_file(path: str, limit: Optional[int] = None) -> MCSet:
    """Valid records (the first `limit`), malformed ones counted by reason; EvalError when none is valid."""
    p = Path(path)
    if not p.is_file():
        raise EvalError(f"multiple-choice file {path!r} not found — fix: pass a JSONL file with one"
                        ' {"context": ..., "choices": [...], "gold": N} per line')
    items, skipped = [], Counter()
    for _, record in read_jsonl(p, errors="replace", on_malformed=lambda bad: skipped.update(["malformed_json"])):
        problem = _problem(record)
        if problem:
            skipped[problem] += 1
            continue
        if limit is None or len(items) < limit:
            items.append((record["context"], list(record["choices"]), record["gold"]))
    if not items:
        raise EvalError(f"{path}: no valid multiple-choice record ({sum(skipped.values())} malformed) — fix: one"
                        ' {"context": "...", "choices": ["...", "..."], "gold": 0} per line')
    return MCSet(str(path), items, dict(skipped))


def choice_loglikelihoods(model, tokenizer, items, seq_length: int, batch_size: int = 16,
                          progress: Optional[Callable[[int, int], None]] = None) -> List[List[float]]:
    """log p(choice | context) for every choice of every item, in order."""
    pairs = []
    for context, choices, _ in items:
        ctx = tokenizer.encode(context) if context else [tokenizer.eod]
        for choice in choices:
            cont = tokenizer.encode(choice)
            ids = (ctx + cont)[-(seq_length + 1):]
            pairs.append((ids, min(len(cont), len(ids) - 1)))
    scores = []
    for first in range(0, len(pairs), batch_size):
        batch = pairs[first:first + batch_size]
        width = max(len(ids) for ids, _ in batch) - 1
        inputs = np.zeros((len(batch), width), dtype=np.int64)
        labels = np.zeros_like(inputs)
        mask = np.zeros((len(batch), width), dtype=np.float64)
        for row, (ids, n) in enumerate(batch):
            k = len(ids) - 1
            inputs[row, :k], labels[row, :k] = ids[:-1], ids[1:]
            mask[row, k - n:k] = 1.0                 # the choice's tokens are the last n labels
        nll = token_nll(model, torch.from_numpy(inputs), torch.from_numpy(labels)).cpu().double().numpy()
        scores += list(-(nll * mask).sum(axis=1))
        if progress:
            progress(min(first + batch_size, len(pairs)), len(pairs))
    out, at = [], 0
    for _, choices, _ in items:
        out.append([float(s) for s in scores[at:at + len(choices)]])
        at += len(choices)
    return out


def score_choices(model, tokenizer, mc: MCSet, seq_length: int, batch_size: int = 16,
                  progress: Optional[Callable[[int, int], None]] = None) -> dict:
    """{"questions", "accuracy", "accuracy_norm", "correct", "correct_norm", "skipped"}."""
    lls = choice_loglikelihoods(model, tokenizer, mc.items, seq_length, batch_size, progress)
    correct = correct_norm = 0
    for (_, choices, gold), ll in zip(mc.items, lls):
        correct += int(np.argmax(ll)) == gold
        norm = [v / len(c.encode("utf-8")) for v, c in zip(ll, choices)]
        correct_norm += int(np.argmax(norm)) == gold
    n = len(mc.items)
    return {"file": mc.path, "questions": n, "correct": correct, "accuracy": correct / n,
            "correct_norm": correct_norm, "accuracy_norm": correct_norm / n, "skipped": dict(mc.skipped)}
