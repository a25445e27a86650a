"""data.loader: webdataset — stream training sequences straight from webdataset text shards, no .bin/.idx.

Why: for corpora too large to preprocess up front, or that arrive as shards in object storage. Trade-offs against
the megatron loader: no global shuffle (order is shard order; shuffle shards across runs by seed), no train/valid
split (give separate shard lists), and resuming skips `consumed_samples` by re-reading — exact, but not free.
Documents are tokenized on the fly, end-of-document appended, and packed into seq_length + 1 token windows
exactly as GPTDataset packs them, so a sample has the same keys (tokens, labels, loss_mask, position_ids).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Iterator, List, Sequence

import numpy as np
import torch

from .readers import BadRecord, SkipLog, expand_inputs, parse_record, raw_batches


class WebDatasetTokenStream:
    """An iterable of packed samples for one data-parallel rank (and one DataLoader worker, if any)."""

    def __init__(self, shards: Sequence[str], tokenizer, seq_length: int, data_parallel_rank: int = 0,
                 data_parallel_size: int = 1, consumed_samples: int = 0, keys: Sequence[str] = ("text",),
                 seed: int = 1234, shuffle_shards: bool = False, eod_mask_loss: bool = False):
        self.shards = [str(p) for p in expand_inputs(shards)]
        if shuffle_shards:
            random.Random(seed).shuffle(self.shards)
        self.tokenizer = tokenizer
        self.seq_length = seq_length
        self.rank, self.size = data_parallel_rank, data_parallel_size
        self.consumed_samples = consumed_samples
        self.keys = list(keys)
        self.eod_mask_loss = eod_mask_loss
        self.skips = SkipLog()

    def _documents(self, shards: Sequence[str]) -> Iterator[List[int]]:
        for shard in shards:
            for batch in raw_batches(Path(shard), self.keys):
                texts = []
                for number, payload in zip(batch.numbers, batch.payloads):
                    try:
                        texts.append(parse_record(batch.kind, payload, self.keys)[0])
                    except BadRecord as bad:
                        self.skips.add(bad.reason, f"{shard}:{number}")
                for ids in self.tokenizer.encode_batch(texts, errors="replace"):
                    yield ids + [self.tokenizer.eod]

    def _windows(self) -> Iterator[np.ndarray]:
        """Every (seq_length + 1)-token window of the concatenated stream; consecutive windows share one token."""
        need = self.seq_length + 1
        buffer: List[int] = []
        for doc in self._documents(self.shards):
            buffer.extend(doc)
            while len(buffer) >= need:
                yield np.asarray(buffer[:need], dtype=np.int64)
                del buffer[:need - 1]

    def __iter__(self):
        worker = torch.utils.data.get_worker_info()
        readers = self.size * (worker.num_workers if worker else 1)
        reader = self.rank * (worker.num_workers if worker else 1) + (worker.id if worker else 0)
        for index, window in enumerate(self._windows()):
            # sample i of the run goes to reader i mod readers; skip what a checkpoint says was consumed
            if index < self.consumed_samples or index % readers != reader:
                continue
            text = torch.from_numpy(window)
            tokens, labels = text[:-1].contiguous(), text[1:].contiguous()
            loss_mask = torch.ones(self.seq_length, dtype=torch.float32)
            if self.eod_mask_loss:
                loss_mask[tokens == self.tokenizer.eod] = 0.0
            yield {"tokens": tokens, "labels": labels, "loss_mask": loss_mask,
                   "position_ids": torch.arange(self.seq_length, dtype=torch.int64)}


def build_webdataset_loader(cfg, tokenizer, data_parallel_rank: int = 0, data_parallel_size: int = 1,
                            consumed_samples: int = 0):
    """DataLoader of micro-batches for data.loader: webdataset; data.blend lists the shard files or globs."""
    shards = [entry if isinstance(entry, str) else entry[1] for entry in cfg.data.blend]
    stream = WebDatasetTokenStream(shards, tokenizer, cfg.model.seq_length, data_parallel_rank, data_parallel_size,
                                   consumed_samples, seed=cfg.training.seed, eod_mask_loss=cfg.data.eod_mask_loss)

    class _Iterable(torch.utils.data.IterableDataset):
        def __iter__(self):
            return iter(stream)

    return torch.utils.data.DataLoader(_Iterable(), batch_size=cfg.training.micro_batch_size,
                                       num_workers=cfg.data.num_workers)
