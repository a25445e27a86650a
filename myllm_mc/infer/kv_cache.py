"""The batch's KV cache, sized to the work: ragged rows that come and go, grown in blocks as requests need it.

Storage: per attention layer, K and V tensors of [rows, kv_groups, slots, head_dim] (each head's keys contiguous,
as SDPA reads them), allocated here for the rows and slots the admitted requests can reach (prompt + max new
tokens, rounded up to `block` slots) and grown by copying when a request joins that needs more; freed when the
batch empties (the generator's stats keep the largest size, for the planner comparison).

megatron's `StaticInferenceContext` (used by its inference wrapper for TP/PP/MoE layouts) sees the same storage:
its `key_value_memory_dict` holds [slots, rows, groups, head_dim] views of it and its `max_sequence_length` /
`max_batch_size` follow the capacity, so megatron's attention never allocates a cache of the model's context.

Rows share ONE write offset (megatron's `sequence_len_offset`): prompts of different lengths are right-aligned
at it and the slots before a row's first token are masked (`pads`); the attention mask hides them. Whether keys
are stored before RoPE (megatron's forward: rotated by slot on every step) or after it at each row's own
positions (`plain_forward`), a row's maths does not depend on where it sits, so a request may join a running
batch between decode steps (prefilled in a small cache of its own and copied in) and rows may be shifted to keep
the shared offset as small as the longest live row.

Slots a row never wrote are zeroed, never left as `torch.empty` garbage: a masked slot has probability 0, but
0 × NaN would still poison the attention output.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import torch

BLOCK = 64          # slots are allocated in multiples of this


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


@dataclass(frozen=True)
class CacheShape:
    """What one rank caches: its attention layers (megatron's global layer numbers), K/V groups, head dim, dtype."""

    layers: Tuple[int, ...]
    groups: int
    head_dim: int
    dtype: torch.dtype

    @classmethod
    def of(cls, model) -> "CacheShape":
        core = getattr(model, "module", model)          # Float16Module wraps the GPTModel
        attention = [layer.self_attention for layer in core.decoder.layers]
        first = attention[0]
        return cls(tuple(a.layer_number for a in attention), first.num_query_groups_per_partition,
                   first.hidden_size_per_attention_head, first.linear_qkv.weight.dtype)

    def bytes_per_slot(self) -> int:
        return 2 * len(self.layers) * self.groups * self.head_dim * torch.tensor([], dtype=self.dtype).element_size()


def _round_up(n: int, block: int) -> int:
    return -(-n // block) * block


class BatchCache:
    """Rows of live requests; row i's first `pads[i]` slots are masked. See the module docstring."""

    def __init__(self, shape: CacheShape, max_batch: int, max_seq: int, block: int = BLOCK):
        # megatron-core on use: see generator.py
        from megatron.core.inference.contexts import StaticInferenceContext

        self.shape, self.max_batch, self.max_seq, self.block = shape, max_batch, max_seq, block
        self.context = StaticInferenceContext(max_batch, max_seq)
        self.keys: Dict[int, torch.Tensor] = {}         # layer -> [rows, groups, slots, head_dim]
        self.values: Dict[int, torch.Tensor] = {}
        self.capacity = (0, 0)                          # (rows, slots) allocated
        self.pads: List[int] = []
        self._link()

    # --- size -----------------------------------------------------------------------------------------------
    @property
    def rows(self) -> int:
        return len(self.pads)

    @property
    def offset(self) -> int:
        """The next slot every row writes (the shared sequence length)."""
        return self.context.sequence_len_offset

    @offset.setter
    def offset(self, value: int) -> None:
        self.context.sequence_len_offset = value

    def allocated_tokens(self) -> int:
        return self.capacity[0] * self.capacity[1]

    def allocated_bytes(self) -> int:
        """Bytes of the K and V storage allocated now on this rank."""
        return sum(t.nbytes for t in (*self.keys.values(), *self.values.values()))

    def dtype(self):
        return self.shape.dtype

    def reserve(self, rows: int, slots: int) -> None:
        """Make room for `rows` rows of `slots` slots (slots rounded up to the block, both capped at the maxima),
        keeping what is stored."""
        rows = min(max(rows, self.capacity[0]), self.max_batch)
        slots = min(max(_round_up(slots, self.block), self.capacity[1]), self.max_seq)
        if (rows, slots) == self.capacity:
            return
        old_rows, old_slots = self.capacity
        s = self.shape
        for store in (self.keys, self.values):
            for layer in s.layers:
                new = torch.zeros(rows, s.groups, slots, s.head_dim, dtype=s.dtype)
                if layer in store:
                    new[:old_rows, :, :old_slots] = store[layer]
                store[layer] = new
        self.capacity = (rows, slots)
        self._link()

    def release(self) -> None:
        """Free the storage (the batch is empty)."""
        self.keys, self.values, self.capacity, self.pads = {}, {}, (0, 0), []
        self.offset = 0
        self._link()

    def _link(self) -> None:
        """Point megatron's static context at this storage (views in its [slots, rows, groups, dim] layout)."""
        self.context.key_value_memory_dict = {
            layer: (self.keys[layer].permute(2, 0, 1, 3), self.values[layer].permute(2, 0, 1, 3))
            for layer in self.keys}
        rows, slots = self.capacity
        self.context.max_batch_size, self.context.max_sequence_length = max(rows, 1), max(slots, 1)

    def _stores(self):
        for layer in self.keys:
            yield self.keys[layer]
            yield self.values[layer]

    def layer(self, number: int) -> Tuple[torch.Tensor, torch.Tensor]:
        return self.keys[number], self.values[number]

    # --- rows -----------------------------------------------------------------------------------------------
    def start(self, pads: Sequence[int]) -> None:
        """A fresh batch whose prompts the next forward prefills from slot 0."""
        self.offset = 0
        self.pads = list(pads)

    def keep(self, rows: Sequence[int]) -> None:
        """Keep only these rows (in this order), then drop slots that every kept row has masked."""
        rows = list(rows)
        if rows == list(range(self.rows)):
            return
        if not rows:
            self.release()
            return
        index = torch.tensor(rows)
        for store in self._stores():
            store[:len(rows)] = store.index_select(0, index)
        self.pads = [self.pads[r] for r in rows]
        self._shift_left(min(self.pads))

    def _shift_left(self, slots: int) -> None:
        if slots <= 0:
            return
        end, n = self.offset, self.rows
        for store in self._stores():
            store[:n, :, :end - slots] = store[:n, :, slots:end].clone()
        self.pads = [p - slots for p in self.pads]
        self.offset = end - slots

    def _shift_right(self, slots: int) -> None:
        end, n = self.offset, self.rows
        for store in self._stores():
            store[:n, :, slots:end + slots] = store[:n, :, :end].clone()
            store[:n, :, :slots] = 0
        self.pads = [p + slots for p in self.pads]
        self.offset = end + slots

    def join(self, other: "BatchCache") -> None:
        """Append the rows of `other` (a freshly prefilled cache) right-aligned at the shared offset (the caller
        has reserved the room)."""
        length, start = other.offset, self.rows
        if length > self.offset:
            self._shift_right(length - self.offset)
        end = self.offset
        for mine, theirs in zip(self._stores(), other._stores()):
            rows = slice(start, start + other.rows)
            mine[rows, :, :end - length] = 0
            mine[rows, :, end - length:end] = theirs[:other.rows, :, :length]
        self.pads += [p + end - length for p in other.pads]
