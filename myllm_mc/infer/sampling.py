"""Per-request sampling settings and the sampler that applies them row by row to one batch of logits.

Why our own sampler rather than megatron's `TextGenerationController.sample_from_logits`: the controller applies
ONE `SamplingParams` to a whole batch (and rejects top-k together with top-p), while a server batches requests
that each carry their own temperature, top-k, top-p and seed. The maths is the usual one: temperature scales the
logits, top-k keeps the k largest, top-p keeps the smallest set whose probability reaches p, then one draw from a
per-request `torch.Generator` (so a seed reproduces a request whatever it was batched with).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import torch

from myllm_mc.errors import MyllmError

# The one default temperature: SamplingParams, `myllm generate` and `myllm chat` take it from here. 1.0 is also the
# OpenAI API's documented default, which the server keeps (serve/schemas.py API_DEFAULT_TEMPERATURE; the schema
# module imports no torch, so it states the value and tests/serve checks that the two agree).
DEFAULT_TEMPERATURE = 1.0


class GenerationError(MyllmError, ValueError):
    """A request that cannot run; the message is one line naming the problem and the fix. `param` names the request
    field at fault when there is one (the server reports it in its error body)."""

    def __init__(self, message: str, param: Optional[str] = None):
        super().__init__(message)
        self.param = param


# what torch.Generator.manual_seed takes (the server's API range is int64, so its seed + choice index stays inside)
SEED_MIN, SEED_MAX = -(2**63), 2**64 - 1


@dataclass(frozen=True)
class SamplingParams:
    """What one request asks for. temperature 0 (or top_k 1) is greedy decoding."""

    max_new_tokens: int = 64
    temperature: float = DEFAULT_TEMPERATURE
    top_k: int = 0                      # 0 = no top-k filter
    top_p: float = 1.0                  # 1.0 = no nucleus filter
    seed: Optional[int] = None          # None: a fresh seed per request (drawn from the generator's base seed)
    stop_token_ids: Sequence[int] = field(default_factory=tuple)   # added to the tokenizer's end tokens
    stop: Sequence[str] = field(default_factory=tuple)             # stop strings; cut from the returned text
    logprobs: bool = False              # return log p(chosen token) under the model (temperature 1, unfiltered)
    ignore_eos: bool = False            # do not stop at the tokenizer's end tokens (benchmarks)

    def check(self) -> None:
        """The sampling rules, in one place: the CLIs, the engine (`Generator.submit`) and the server call this."""
        if self.max_new_tokens < 1:
            raise GenerationError(f"max_new_tokens={self.max_new_tokens}: must be at least 1 — fix: e.g. --max-new-tokens 64",
                                  "max_new_tokens")
        if self.temperature < 0:
            raise GenerationError(f"temperature={self.temperature}: must be >= 0 (0 = greedy) — fix: e.g. --temperature 0.8",
                                  "temperature")
        if self.top_k < 0:
            raise GenerationError(f"top_k={self.top_k}: must be >= 0 (0 = off) — fix: e.g. --top-k 50", "top_k")
        if not 0.0 < self.top_p <= 1.0:
            raise GenerationError(f"top_p={self.top_p}: must be in (0, 1] (1 = off) — fix: e.g. --top-p 0.9", "top_p")
        if self.seed is not None and not SEED_MIN <= self.seed <= SEED_MAX:
            raise GenerationError(f"seed={self.seed}: must be a 64-bit integer, from -2**63 to 2**64-1 — fix: e.g. --seed 1",
                                  "seed")
        if any(not s for s in self.stop):
            raise GenerationError("an empty stop string would stop before the first token — fix: drop it from --stop",
                                  "stop")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0 or self.top_k == 1


def filtered_logits(logits: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    """One row of logits (fp32, [vocab]) after temperature, top-k and top-p; removed entries are -inf."""
    out = logits / params.temperature
    if params.top_k > 0 and params.top_k < out.numel():
        kth = torch.topk(out, params.top_k).values[-1]
        out = out.masked_fill(out < kth, float("-inf"))
    if params.top_p < 1.0:
        sorted_logits, order = torch.sort(out, descending=True)
        probs = torch.softmax(sorted_logits, dim=-1)
        # drop a token when the tokens before it already reach top_p (the first one is always kept)
        drop_sorted = (torch.cumsum(probs, dim=-1) - probs) >= params.top_p
        drop = torch.zeros_like(drop_sorted).scatter(0, order, drop_sorted)
        out = out.masked_fill(drop, float("-inf"))
    return out


def sample_rows(logits: torch.Tensor, params: Sequence[SamplingParams],
                generators: Sequence[torch.Generator]) -> tuple[torch.Tensor, torch.Tensor]:
    """(token id per row, log p(token) under the unmodified model distribution per row) for logits [rows, vocab]."""
    logits = logits.float()
    log_probs = torch.log_softmax(logits, dim=-1)
    tokens = torch.empty(logits.size(0), dtype=torch.long)
    for row, (p, gen) in enumerate(zip(params, generators)):
        if p.greedy:
            tokens[row] = torch.argmax(logits[row])
        else:
            probs = torch.softmax(filtered_logits(logits[row], p), dim=-1)
            tokens[row] = torch.multinomial(probs, 1, generator=gen)[0]
    chosen = log_probs.gather(1, tokens.unsqueeze(1)).squeeze(1)
    return tokens, chosen
