"""Write a megatron-core indexed dataset (.bin/.idx) so that only a complete run leaves a valid-looking pair.

Why: a killed run that left `prefix.bin` and `prefix.idx` behind would be trained on silently. The builder writes
`prefix.bin.tmp-PID`; the index is finalised to `prefix.idx.tmp-PID`; `commit()` removes any old pair (index
first), renames the .bin, then the .idx last — the .idx appearing is the mark of completion. `PREFIX.tokenizer.json`
(the tokenizer's SHA-256 and size, renamed in before the pair) lets every reader refuse it with another tokenizer.
"""

from __future__ import annotations

import glob
import json
import os
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from myllm_mc.locking import temporary_is_stale

from .index_file import tokenizer_record_path


def smallest_dtype(vocab_size: int):
    """The narrowest token type megatron-core's IndexedDataset stores that holds ids 0..vocab_size-1."""
    if vocab_size <= 1 << 8:
        return np.uint8
    if vocab_size <= 1 << 16:
        return np.uint16
    return np.int32


def pair_paths(prefix: str) -> tuple:
    return f"{prefix}.bin", f"{prefix}.idx"


def remove_stale_temporaries(prefix: str) -> None:
    """Leftovers of a killed run on the same prefix (a SIGKILL cannot clean up after itself) — only those whose
    writer is provably gone: another live run's temporaries are never touched."""
    for path in [found for ext in (".bin", ".idx", ".tokenizer.json")
                 for found in glob.glob(glob.escape(prefix) + ext + ".tmp-*")]:
        if temporary_is_stale(path):
            try:
                os.remove(path)
            except FileNotFoundError:
                pass


class AtomicIndexedWriter:
    """megatron-core's IndexedDatasetBuilder behind temporary names; commit() or abort() exactly once."""

    def __init__(self, prefix: str, dtype, tokenizer: Optional[dict] = None):
        # megatron-core (→ torch) on first use: preprocessing forks its workers before it, and torch-free modules
        # import this one (preflight through data.datasets, tokenizer training through data.preprocess)
        from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

        self.prefix = prefix
        Path(prefix).parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(prefix)
        self.final_bin, self.final_idx = pair_paths(prefix)
        self.tmp_bin = f"{self.final_bin}.tmp-{os.getpid()}"
        self.tmp_idx = f"{self.final_idx}.tmp-{os.getpid()}"
        self.tmp_record = f"{tokenizer_record_path(prefix)}.tmp-{os.getpid()}"
        self.builder = IndexedDatasetBuilder(self.tmp_bin, dtype=dtype)
        self.documents = 0
        self.tokens = 0
        self.tokenizer = tokenizer        # {"sha256", "vocab_size"}: written to PREFIX.tokenizer.json with the pair

    def add_documents(self, tokens: np.ndarray, lengths: Sequence[int]) -> None:
        """Append consecutive documents given as one flat array and their lengths."""
        offset = 0
        for length in lengths:
            self.builder.add_document(tokens[offset:offset + length], [int(length)])
            offset += length
        self.documents += len(lengths)
        self.tokens += offset

    def add_index(self, prefix: str) -> None:
        """Append a whole existing dataset (merging shards)."""
        from megatron.core.datasets.indexed_dataset import IndexedDataset

        dataset = IndexedDataset(prefix)
        self.documents += len(dataset.document_indices) - 1
        self.tokens += int(dataset.sequence_lengths.sum())
        del dataset
        self.builder.add_index(prefix)

    def commit(self) -> str:
        self.builder.finalize(self.tmp_idx)
        record = tokenizer_record_path(self.prefix)
        if self.tokenizer:
            with open(self.tmp_record, "w") as f:
                json.dump({"sha256": self.tokenizer["sha256"], "vocab_size": self.tokenizer["vocab_size"]}, f)
        for old in (self.final_idx, self.final_bin, record):
            if os.path.exists(old):
                os.remove(old)
        if self.tokenizer:
            os.replace(self.tmp_record, record)
        os.replace(self.tmp_bin, self.final_bin)
        os.replace(self.tmp_idx, self.final_idx)
        return self.prefix

    def abort(self) -> None:
        try:
            self.builder.data_file.close()
        except Exception:
            pass
        for path in (self.tmp_bin, self.tmp_idx, self.tmp_record):
            if os.path.exists(path):
                os.remove(path)
