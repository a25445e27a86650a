"""One request's life: prompt ids in, tokens appended step by step, stop rules, streamed text, the result.

Stop rules, in order, after each new token: a stop token id ends the request (the token is kept in `token_ids`
and its log-prob, but not in `text`); a stop string ends it and `text` is cut just before the string (the tokens
up to the one that completed it are kept); `max_new_tokens` ends it with finish_reason "length".

Streaming never shows text that may later be cut: a new piece of text is held back while the completion ends
with a prefix of a stop string or with an incomplete UTF-8 character (decoded as U+FFFD).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import List, Optional

import torch

from .sampling import SamplingParams


@dataclass
class Completion:
    """What a finished request returns."""

    request_id: int
    prompt_tokens: int
    completion_tokens: int
    token_ids: List[int]
    text: str
    logprobs: Optional[List[float]]     # log p of each token in token_ids (when asked for)
    finish_reason: str                  # "stop" | "length" | "cancelled"
    time_to_first_token_s: float        # from submit to the first token
    total_s: float                      # from submit to the end
    decode_tokens_per_s: float          # tokens after the first / time after the first token
    cached_tokens: int = 0              # prompt tokens whose K/V came from the prefix cache


@dataclass
class StreamEvent:
    """New output of one request after one engine step."""

    request_id: int
    token_ids: List[int]
    text: str                           # new text that is safe to show (see the module docstring)
    logprobs: Optional[List[float]]
    finished: bool = False
    completion: Optional[Completion] = None   # set on the last event of a request


@dataclass
class RequestState:
    request_id: int
    prompt_ids: List[int]
    params: SamplingParams
    stop_ids: frozenset
    generator: torch.Generator
    submitted_at: float = field(default_factory=time.perf_counter)
    first_token_at: Optional[float] = None
    token_ids: List[int] = field(default_factory=list)
    logprobs: List[float] = field(default_factory=list)
    text: str = ""
    shown: str = ""                     # text already streamed
    finish_reason: Optional[str] = None
    max_new_tokens: int = 0             # params.max_new_tokens clamped to the context
    cached_tokens: int = 0              # prompt tokens taken from the prefix cache at admission
    draft_misses: int = 0               # speculative decoding: consecutive steps that accepted no draft
    draft_wait: int = 0                 # ... and plain steps left before the next draft

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None

    def append(self, token: int, logprob: float, tokenizer) -> StreamEvent:
        """Record one sampled token, apply the stop rules and return what is new to show."""
        self._add(token, logprob, tokenizer)
        return self._event(1)

    def extend(self, tokens, logprobs, tokenizer) -> StreamEvent:
        """Record several tokens of one step (speculative decoding) until a stop rule ends the request."""
        count = 0
        for token, logprob in zip(tokens, logprobs):
            self._add(token, logprob, tokenizer)
            count += 1
            if self.finished:
                break
        return self._event(count)

    def _add(self, token: int, logprob: float, tokenizer) -> None:
        now = time.perf_counter()
        if self.first_token_at is None:
            self.first_token_at = now
        self.token_ids.append(token)
        self.logprobs.append(logprob)
        if token in self.stop_ids:
            self.finish_reason = "stop"
        else:
            self.text = tokenizer.decode(self.token_ids)
            cut = self._stop_string_index()
            if cut is not None:
                self.text = self.text[:cut]
                self.finish_reason = "stop"
            elif len(self.token_ids) >= self.max_new_tokens:
                self.finish_reason = "length"

    def cancel(self) -> StreamEvent:
        self.finish_reason = "cancelled"
        return self._event(0)

    def _stop_string_index(self) -> Optional[int]:
        found = [i for i in (self.text.find(s) for s in self.params.stop) if i >= 0]
        return min(found) if found else None

    def _safe_text(self) -> str:
        if self.finished:
            return self.text
        text = self.text.rstrip("\ufffd")
        hold = 0
        for stop in self.params.stop:
            for n in range(min(len(stop) - 1, len(text)), hold, -1):
                if text.endswith(stop[:n]):
                    hold = n
                    break
        return text[:len(text) - hold]

    def _event(self, new_tokens: int) -> StreamEvent:
        safe = self._safe_text()
        delta = safe[len(self.shown):] if safe.startswith(self.shown) else ""
        if safe.startswith(self.shown):
            self.shown = safe
        lps = self.logprobs[len(self.logprobs) - new_tokens:] if self.params.logprobs else None
        return StreamEvent(self.request_id, self.token_ids[len(self.token_ids) - new_tokens:], delta, lps,
                           self.finished, self.completion() if self.finished else None)

    def completion(self) -> Completion:
        end = time.perf_counter()
        first = self.first_token_at if self.first_token_at is not None else end
        after_first = len(self.token_ids) - 1
        return Completion(
            request_id=self.request_id, prompt_tokens=len(self.prompt_ids), completion_tokens=len(self.token_ids),
            token_ids=list(self.token_ids), text=self.text,
            logprobs=list(self.logprobs) if self.params.logprobs else None, finish_reason=self.finish_reason,
            time_to_first_token_s=first - self.submitted_at, total_s=end - self.submitted_at,
            decode_tokens_per_s=after_first / (end - first) if after_first > 0 and end > first else 0.0,
            cached_tokens=self.cached_tokens)
