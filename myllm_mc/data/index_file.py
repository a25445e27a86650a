"""What a megatron-core `.idx` says about its `.bin`, read without megatron-core (the pre-launch check runs in the
launching parent, which never imports torch): document count, token type and the `.bin` size the index describes.

Why: a `.bin` cut short (a copy that stopped, a full disk) or paired with another run's `.idx` loads without
complaint — megatron-core maps both files and fails only when a step reads past the end ("offset must be
non-negative"), on every rank, after the launch. Comparing sizes costs two reads of a few bytes.

Layout (megatron/core/datasets/indexed_dataset.py, _IndexWriter): "MMIDIDX\\0\\0", version <Q (1), dtype code <B,
sequence count <Q, document count <Q (34 bytes), then int32 lengths × sequences, int64 byte pointers × sequences,
int64 document indices × documents (and int8 modes × sequences for multimodal data).
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from typing import Optional, Tuple

from .readers import InputError

HEADER = b"MMIDIDX\x00\x00"
HEADER_BYTES = 34
DTYPE_BYTES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 8, 7: 4, 8: 2}   # megatron-core's DType codes → item size


@dataclass(frozen=True)
class IndexSummary:
    sequences: int            # what GPTDataset splits by (one per document for text preprocessed here)
    documents: int
    item_bytes: int
    bin_bytes: int            # the .bin size the index describes

    @property
    def tokens(self) -> int:
        return self.bin_bytes // self.item_bytes


def _redo(prefix: str) -> str:
    return f"fix: re-run tools/preprocess_data.py --output-prefix {prefix.removesuffix('_text_document')}"


def read_index(prefix: str) -> IndexSummary:
    """The summary of `prefix.idx`, checked against the size of `prefix.idx` and `prefix.bin`; InputError (one line)
    when the index is not megatron-core's or the .bin is shorter or longer than the index describes."""
    idx, bin_path = f"{prefix}.idx", f"{prefix}.bin"
    idx_size = os.path.getsize(idx)
    with open(idx, "rb") as f:
        header = f.read(HEADER_BYTES)
        if len(header) < HEADER_BYTES or not header.startswith(HEADER) or header[17] not in DTYPE_BYTES:
            raise InputError(f"data.blend: {idx} is not a megatron-core index — {_redo(prefix)}")
        sequences, documents = struct.unpack("<QQ", header[18:34])
        tables = sequences * (4 + 8) + documents * 8
        if idx_size not in (HEADER_BYTES + tables, HEADER_BYTES + tables + sequences):   # (+ multimodal modes)
            raise InputError(f"data.blend: {idx} has {idx_size:,} bytes but its header describes {sequences:,}"
                             f" sequences in {HEADER_BYTES + tables:,} — the index is damaged — {_redo(prefix)}")
        item = DTYPE_BYTES[header[17]]
        expected = 0
        if sequences:
            f.seek(HEADER_BYTES + 4 * (sequences - 1))
            (last_length,) = struct.unpack("<i", f.read(4))
            f.seek(HEADER_BYTES + 4 * sequences + 8 * (sequences - 1))
            (last_pointer,) = struct.unpack("<q", f.read(8))
            expected = last_pointer + last_length * item
    actual = os.path.getsize(bin_path)
    if actual != expected:
        what = ("truncated (a copy or write that stopped early)" if actual < expected else
                "larger: the .bin and .idx are not a pair (written by different runs)")
        raise InputError(f"data.blend: {bin_path} has {actual:,} bytes but {idx} describes {expected:,}"
                         f" ({sequences:,} sequences) — the .bin is {what} — {_redo(prefix)}")
    return IndexSummary(sequences, documents, item, expected)


def split_sizes(count: int, split: str) -> Tuple[int, int, int]:
    """Sequences of `count` that data.split (e.g. "969,30,1") gives train, valid and test: megatron-core's
    rounding (BlendedMegatronDatasetBuilder: round(cumulative share × count) at each book-end)."""
    weights = [float(x) for x in split.split(",")]
    total = sum(weights)
    ends = [0]
    cumulative = 0.0
    for weight in weights:
        cumulative += weight / total
        ends.append(int(round(cumulative * count)))
    return tuple(b - a for a, b in zip(ends[:-1], ends[1:]))


DTYPE_NAMES = {1: "uint8", 2: "int8", 3: "int16", 4: "int32", 5: "int64", 6: "float64", 7: "float32", 8: "uint16"}
SCAN_BYTES = 256 * 2 ** 20      # an unrecorded dataset: ids past the vocabulary looked for in this much of its .bin


def tokenizer_record_path(prefix: str) -> str:
    """`PREFIX.tokenizer.json`: the SHA-256 and size of the tokenizer preprocessing used (written with the pair)."""
    return f"{prefix}.tokenizer.json"


def tokenizer_problem(prefix: str, tokenizer) -> Optional[str]:
    """Why `prefix` cannot be read with `tokenizer`, or None. Its ids mean other strings when another tokenizer made
    it: training and eval ran on it without a word (a bigger one's ids past the embedding were an IndexError on CPU,
    a device assert on GPU and masked to zero under tensor parallelism). Recorded datasets compare the SHA-256;
    older ones are scanned (first SCAN_BYTES) for ids the tokenizer does not have."""
    ids = tokenizer.unique_identifiers
    redo = (f"fix: preprocess it again with {tokenizer.path}, or set data.tokenizer to the tokenizer it was made"
            " with")
    try:
        with open(tokenizer_record_path(prefix)) as f:
            record = json.load(f)
    except (OSError, ValueError):
        record = None
    if record:
        if record.get("sha256") == ids["sha256"]:
            return None
        return (f"{prefix} was tokenized with another tokenizer ({str(record.get('sha256'))[:12]}, "
                f"{record.get('vocab_size', 0):,} entries), not {tokenizer.path} ({ids['sha256'][:12]}) — {redo}")
    import numpy as np

    with open(f"{prefix}.idx", "rb") as f:
        code = f.read(HEADER_BYTES)[17]
    dtype = np.dtype(DTYPE_NAMES.get(code, "int32"))
    tokens = np.fromfile(f"{prefix}.bin", dtype=dtype, count=SCAN_BYTES // dtype.itemsize)
    top = int(tokens.max()) if tokens.size else -1
    if top >= ids["vocab_size"]:
        return (f"{prefix}.bin holds token id {top:,} but {tokenizer.path} has {ids['vocab_size']:,} entries (another"
                f" tokenizer's data) — {redo}")
    return None
