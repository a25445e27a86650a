"""Speculative decoding: guess the next tokens (prompt lookup, or a draft model), check them in one forward.

Why: a batch-1 decode step reads every weight to produce one token; a forward over 1 + k tokens reads them once too
and costs little more on a bandwidth-bound device, so every accepted guess is a token for (almost) free. The
drafter needs no second model: it finds the latest earlier occurrence of the last n tokens (n = 3, 2, 1) in the
prompt and the text so far and proposes the k tokens that followed it (prompt lookup / n-gram drafting; it pays
off where the output repeats its context: code edits, extraction, quoting, chat over a document, and the loops
of small models). The other drafter is a draft model: a smaller model of the same tokenizer that drafts its k
greedy tokens (`draft_model.ModelDrafter`, `--draft-config/--draft-checkpoint`). Where guesses keep failing
(open-ended text), a wider forward is wasted, so after a step that accepted nothing the request drafts again only
after 1, 2, 4 ... 16 plain steps (`backoff`), whichever the drafter.

Verification (`accept`) keeps the target model's distribution exactly. Greedy: drafts are accepted while each
equals the argmax at its position, then the argmax after the last accepted one is added, so the output is the
plain greedy output token for token. Sampling: the draft is a point mass q = δ(d), so the standard rule "accept d
with probability min(1, p(d)/q(d)) = p(d), else draw from (p − q)+ normalised = p without d" emits a token
distributed as p (the filtered distribution after temperature/top-k/top-p); after k acceptances one more token
is drawn from p at the next position. Any drafter whose guess is fixed before the draw is such a point mass (a
draft model drafting greedily is one), so the rule is exact for both. tests/infer/test_speculative.py checks both,
the second by frequencies; tests/infer/test_draft_model.py again with a draft model, end to end.
"""

from __future__ import annotations

from typing import Callable, List, Optional, Sequence, Tuple

import torch

from .sampling import SamplingParams, filtered_logits

Drafter = Callable[[Sequence[int], int], List[int]]


def prompt_lookup(ids: Sequence[int], k: int, max_ngram: int = 3, min_ngram: int = 2) -> List[int]:
    """Up to k tokens that followed the latest earlier occurrence of the longest matching tail of `ids` (a tail of
    at least `min_ngram` tokens: a single repeated token predicts little and a rejected draft costs a wider
    forward)."""
    n_ids = len(ids)
    for n in range(min(max_ngram, n_ids - 1), min_ngram - 1, -1):
        tail = list(ids[n_ids - n:])
        for start in range(n_ids - n - 1, -1, -1):
            if list(ids[start:start + n]) == tail:
                follow = list(ids[start + n:start + n + k])
                if follow:
                    return follow
    return []


def draw(probs: torch.Tensor, guess: Optional[int], generator: torch.Generator) -> int:
    """A token distributed as `probs` [vocab], the draft `guess` (None: none) accepted with probability p(guess)."""
    if guess is not None and float(torch.rand((), generator=generator)) < float(probs[guess]):
        return guess
    if guess is not None:
        probs = probs.clone()
        probs[guess] = 0.0
    return int(torch.multinomial(probs, 1, generator=generator)[0])


def accept(logits: torch.Tensor, draft: Sequence[int], params: SamplingParams,
           generator: torch.Generator) -> Tuple[List[int], List[float]]:
    """(tokens, their log-probs under the unfiltered model) from the target's logits [len(draft) + 1, vocab] at
    the positions of the last accepted token and the drafts; see the module docstring."""
    logits = logits.float()
    log_probs = torch.log_softmax(logits, dim=-1)
    tokens: List[int] = []
    for i in range(len(draft) + 1):
        guess = draft[i] if i < len(draft) else None
        if params.greedy:
            token = int(torch.argmax(logits[i]))
        else:
            token = draw(torch.softmax(filtered_logits(logits[i], params), dim=-1), guess, generator)
        tokens.append(token)
        if token != guess:
            break
    return tokens, [float(log_probs[i, t]) for i, t in enumerate(tokens)]


def backoff(misses: int) -> int:
    """Plain steps to take before drafting again after `misses` consecutive steps that accepted no draft."""
    return min(2 ** (misses - 1), 16) if misses else 0

