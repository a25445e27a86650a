"""Synthetic data for benchmarks: random token ids written as a real .bin/.idx pair plus a matching tokenizer.json.

Why files and not an in-memory iterator: the benchmark must time the very step `myllm train` runs, and that step
pulls its micro-batches through megatron-core's GPTDataset and the resumable DataLoader. Writing random tokens in
the same format keeps that path, data time included, while needing no corpus (the 1B preset has none shipped).
"""

from __future__ import annotations

import fcntl
import json
from pathlib import Path
from typing import List

import numpy as np

from myllm_mc.data.indexed_output import AtomicIndexedWriter, pair_paths, smallest_dtype
from myllm_mc.data.tokenizer import SPECIAL_TOKENS

# enough distinct tokens that GPTDataset's epochs repeat rarely in a short benchmark, small enough to write in ~1 s
MAX_TOKENS = 8_000_000
DOCUMENT_TOKENS = 4096



def run_tokens(cfg, steps: int) -> int:
    """Tokens `steps` optimizer steps of `cfg` read (each sample is seq_length + 1 tokens: inputs and the shifted
    labels): how much synthetic data a benchmark of that many steps needs."""
    return steps * cfg.training.global_batch_size * (cfg.model.seq_length + 1)

def write_tokenizer(path: Path, vocab_size: int) -> Path:
    """A word-level tokenizer.json with exactly `vocab_size` ids, the special tokens first (ids 0..3)."""
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
    vocab.update({f"t{i}": i for i in range(len(SPECIAL_TOKENS), vocab_size)})
    spec = {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
                          "normalized": False, "special": True} for i, t in enumerate(SPECIAL_TOKENS)],
        "normalizer": None, "pre_tokenizer": {"type": "WhitespaceSplit"}, "post_processor": None, "decoder": None,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": SPECIAL_TOKENS[1]},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(spec))
    return path


def synthetic_overrides(directory: str | Path, vocab_size: int, tokens_needed: int, seed: int = 1234) -> List[str]:
    """Write (or reuse) random-token data for `vocab_size` and return the `--set` overrides that point a run at it.

    Documents are DOCUMENT_TOKENS uniform random ids ending in end-of-document; the split is all-train, because
    a benchmark never evaluates.
    """
    directory = Path(directory) / f"synthetic-v{vocab_size}"
    tokenizer = directory / "tokenizer.json"
    prefix = str(directory / "random_text_document")
    total = max(DOCUMENT_TOKENS, min(int(tokens_needed), MAX_TOKENS))
    documents = -(-total // DOCUMENT_TOKENS)
    marker = directory / "tokens.json"
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as lock:      # ranks started by srun/torchrun all arrive here at once
        fcntl.flock(lock, fcntl.LOCK_EX)
        _write_if_missing(directory, tokenizer, prefix, marker, vocab_size, documents, seed)
    return [f"data.tokenizer={tokenizer}", f"data.blend=[{prefix}]", "data.split=100,0,0",
            f"data.cache_dir={directory / 'cache'}"]


def _write_if_missing(directory: Path, tokenizer: Path, prefix: str, marker: Path, vocab_size: int, documents: int,
                      seed: int) -> None:
    complete = all(Path(p).is_file() for p in pair_paths(prefix)) and tokenizer.is_file()
    if not (complete and marker.is_file() and json.loads(marker.read_text())["documents"] >= documents):
        write_tokenizer(tokenizer, vocab_size)
        rng = np.random.default_rng(seed)
        dtype = smallest_dtype(vocab_size)
        tokens = rng.integers(len(SPECIAL_TOKENS), vocab_size, size=documents * DOCUMENT_TOKENS).astype(dtype)
        tokens[DOCUMENT_TOKENS - 1::DOCUMENT_TOKENS] = 0            # end-of-document id
        writer = AtomicIndexedWriter(prefix, dtype)
        writer.add_documents(tokens, [DOCUMENT_TOKENS] * documents)
        writer.commit()
        marker.write_text(json.dumps({"documents": documents, "vocab_size": vocab_size}))
