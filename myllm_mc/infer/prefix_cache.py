"""Prefix caching: the K/V of token blocks already computed, reused by a later request that starts the same way.

A system prompt or a chat history is the start of many requests. After a request is prefilled (and again when it
finishes, covering its reply: the next chat turn starts with it), every full `block` of its tokens is stored,
keyed by all the token ids from the start of the sequence up to the block's end, so a block is reused only
behind the very same prefix and at the very same positions. A new request then copies the K/V of its longest
stored block prefix into its cache row and prefills only the rest (at least its last token, whose logits give
the first new token). Its output is the output without the cache, up to the float rounding of a prefill split
at another point (tested token for token).

The K/V are stored as the forward caches them (after RoPE at the row's own positions for `plain_forward`, before
RoPE for megatron's forward; both are position-exact here since a block only serves its own positions). The
store is bounded (`budget_bytes`) and evicts the least recently used block. The weights must not change while
a store is in use: `Generator(prefix_cache_mib=0)` (the default for generators built on a model being trained)
turns it off; `load_generator` (generate, chat, serve) turns it on.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Dict, List, Sequence, Tuple

import torch

BLOCK = 16


class PrefixCache:
    """Token-block prefix → per-layer K/V [groups, block, head_dim]; see the module docstring."""

    def __init__(self, layers: Sequence[int], bytes_per_slot: int, budget_bytes: int, block: int = BLOCK):
        self.layers, self.block = tuple(layers), block
        self.block_bytes = bytes_per_slot * block
        self.max_blocks = budget_bytes // self.block_bytes if self.block_bytes else 0
        self.blocks: "OrderedDict[Tuple[int, ...], Dict[int, Tuple[torch.Tensor, torch.Tensor]]]" = OrderedDict()
        self.hits = 0                           # requests that reused at least one block
        self.reused_tokens = 0

    @property
    def enabled(self) -> bool:
        return self.max_blocks > 0

    def clear(self) -> None:
        self.blocks.clear()

    def match(self, ids: Sequence[int]) -> int:
        """How many leading tokens of `ids` have stored K/V (whole blocks, always fewer than len(ids))."""
        if not self.enabled:
            return 0
        n = 0
        while n + self.block < len(ids) and tuple(ids[:n + self.block]) in self.blocks:
            n += self.block
        return n

    def copy_into(self, ids: Sequence[int], count: int, cache, row: int, slot: int) -> None:
        """Write the stored K/V of the first `count` tokens of `ids` (whole blocks) into `cache` row `row` from
        `slot` on."""
        for start in range(0, count, self.block):
            key = tuple(ids[:start + self.block])
            self.blocks.move_to_end(key)
            stored = self.blocks[key]
            for layer in self.layers:
                keys, values = cache.layer(layer)
                k, v = stored[layer]
                keys[row, :, slot + start:slot + start + self.block] = k
                values[row, :, slot + start:slot + start + self.block] = v

    def remember(self, ids: Sequence[int], cache, row: int, slot: int) -> None:
        """Store the full blocks of `ids` whose K/V sit in `cache` row `row` from `slot` on."""
        if not self.enabled:
            return
        for start in range(0, len(ids) - self.block + 1, self.block):
            key = tuple(ids[:start + self.block])
            if key in self.blocks:
                self.blocks.move_to_end(key)
                continue
            span = slice(slot + start, slot + start + self.block)
            self.blocks[key] = {layer: tuple(t[row, :, span].clone() for t in cache.layer(layer))
                                for layer in self.layers}
            while len(self.blocks) > self.max_blocks:
                self.blocks.popitem(last=False)

    def stored_tokens(self) -> int:
        return len(self.blocks) * self.block


def reusable(prefix: PrefixCache, prompts: List[List[int]], pads: List[int]) -> Tuple[int, List[int]]:
    """(first slot the prefill must compute, tokens each row takes from the store) for prompts right-aligned
    behind `pads`: every row is computed from the same slot on, so a row reuses its stored prefix up to there."""
    matched = [prefix.match(p) for p in prompts]
    first = min(pad + m for pad, m in zip(pads, matched))
    return first, [max(0, first - pad) for pad in pads]
