"""The batch's KV cache: megatron-core's `StaticInferenceContext`, with ragged rows that come and go.

megatron's static context keeps, per layer, K and V buffers of shape [max_seq, max_batch, kv_heads, head_dim]
(allocated by the attention layer on the first forward) and ONE write offset shared by all rows. To batch prompts
of different lengths, rows are right-aligned at that offset and the slots before a row's first token are masked
(`pads`): the attention mask passed to GPTModel hides them, which megatron's local attention applies as given.
Keys are cached before RoPE, and RoPE scores depend only on the distance between positions, so where a row sits
in the cache does not change its maths (up to float rounding): a request may therefore join a running batch
between decode steps (its prompt is prefilled in a small context of its own and copied in), and rows may be
shifted to keep the shared offset as small as the longest live row.

Slots that a row never wrote are zeroed, never left as `torch.empty` garbage: a masked slot has probability 0,
but 0 × NaN would still poison the attention output.
"""

from __future__ import annotations

from typing import List, Sequence

import torch


def attention_mask(pads: Sequence[int], q_start: int, q_end: int) -> torch.Tensor:
    """Boolean mask [rows, 1, q_end - q_start, q_end] (True = hidden): a row's padding and the future."""
    keys = torch.arange(q_end)
    queries = torch.arange(q_start, q_end)
    pad = torch.tensor(list(pads), dtype=torch.long).view(-1, 1, 1)
    hidden = (keys.view(1, 1, -1) < pad) | (keys.view(1, 1, -1) > queries.view(1, -1, 1))
    return hidden.unsqueeze(1)


def left_padded(prompts: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, List[int]]:
    """(tokens [rows, T], position ids [rows, T], pads) for prompts right-aligned at T = the longest prompt."""
    length = max(len(p) for p in prompts)
    pads = [length - len(p) for p in prompts]
    tokens = torch.tensor([[pad_id] * pad + list(p) for p, pad in zip(prompts, pads)], dtype=torch.long)
    positions = (torch.arange(length).view(1, -1) - torch.tensor(pads).view(-1, 1)).clamp(min=0)
    return tokens, positions, pads


class BatchCache:
    """Rows of live requests in one StaticInferenceContext; row i's first `pads[i]` slots are masked."""

    def __init__(self, max_batch: int, max_seq: int):
        # megatron-core on use: see generator.py
        from megatron.core.inference.contexts import StaticInferenceContext

        self.context = StaticInferenceContext(max_batch, max_seq)
        self.max_batch, self.max_seq = max_batch, max_seq
        self.pads: List[int] = []

    @property
    def rows(self) -> int:
        return len(self.pads)

    @property
    def offset(self) -> int:
        """The next slot every row writes (the shared sequence length)."""
        return self.context.sequence_len_offset

    def allocated_bytes(self) -> int:
        """Bytes of the K and V buffers megatron allocated on this rank (0 before the first forward)."""
        return sum(k.nbytes + v.nbytes for k, v in self.context.key_value_memory_dict.values())

    def allocated_tokens(self) -> int:
        return self.max_seq * self.max_batch if self.context.key_value_memory_dict else 0

    def dtype(self):
        for key, _ in self.context.key_value_memory_dict.values():
            return key.dtype
        return None

    def _buffers(self):
        for key, value in self.context.key_value_memory_dict.values():
            yield key
            yield value

    def start(self, pads: Sequence[int]) -> None:
        """A fresh batch whose prompts the next forward prefills from slot 0."""
        self.context.reset()
        self.pads = list(pads)

    def keep(self, rows: Sequence[int]) -> None:
        """Keep only these rows (in this order), then drop slots that every kept row has masked."""
        rows = list(rows)
        if rows == list(range(self.rows)):
            return
        if not rows:
            self.pads = []
            self.context.reset()
            return
        rest = [r for r in range(self.max_batch) if r not in rows]
        self.context.swap_key_value_dict(rows + rest)      # megatron's own row permutation
        self.pads = [self.pads[r] for r in rows]
        self._shift_left(min(self.pads))

    def _shift_left(self, slots: int) -> None:
        if slots <= 0:
            return
        end, n = self.offset, self.rows
        for buf in self._buffers():
            buf[:end - slots, :n] = buf[slots:end, :n].clone()
        self.pads = [p - slots for p in self.pads]
        self.context.sequence_len_offset = end - slots

    def _shift_right(self, slots: int) -> None:
        end, n = self.offset, self.rows
        for buf in self._buffers():
            buf[slots:end + slots, :n] = buf[:end, :n].clone()
            buf[:slots, :n] = 0
        self.pads = [p + slots for p in self.pads]
        self.context.sequence_len_offset = end + slots

    def join(self, other: "BatchCache") -> None:
        """Append the rows of `other` (a freshly prefilled cache) right-aligned at the shared offset."""
        length, start = other.offset, self.rows
        if length > self.offset:
            self._shift_right(length - self.offset)
        end = self.offset
        for mine, theirs in zip(self._buffers(), other._buffers()):
            for j in range(other.rows):
                mine[:end - length, start + j] = 0
                mine[end - length:end, start + j] = theirs[:length, j]
        self.pads += [p + end - length for p in other.pads]

    def fits(self, prompt_lengths: Sequence[int]) -> bool:
        return self.rows + len(prompt_lengths) <= self.max_batch
