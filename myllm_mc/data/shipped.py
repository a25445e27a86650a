"""The tiny preset's data from the shipped corpus, prepared on first use.

`myllm train configs/tiny.yaml` from a fresh clone would otherwise fail in every rank on a missing tokenizer.
When the config names the preset's own paths (runs/tokenizer-8k/tokenizer.json, runs/data/corpus_text_document)
and they do not exist yet, the launching parent trains the tokenizer and writes the shards once — with progress
lines — before any rank starts. Any other missing path is left to the usual one-line error.
"""

from __future__ import annotations

from pathlib import Path

from .preprocess import preprocess
from .tokenizer_training import train_tokenizer

REPO = Path(__file__).resolve().parents[2]
SHIPPED_CORPUS = REPO / "data" / "corpus.jsonl.zst"
PRESET_TOKENIZER = "runs/tokenizer-8k/tokenizer.json"
PRESET_PREFIX = "runs/data/corpus"                 # → runs/data/corpus_text_document.{bin,idx}


def _blend_prefixes(blend) -> list:
    return [entry if isinstance(entry, str) else entry[-1] for entry in blend]


def needs_preparing(cfg) -> bool:
    d = cfg.data
    prefixes = _blend_prefixes(d.blend)
    if d.tokenizer != PRESET_TOKENIZER or prefixes != [PRESET_PREFIX + "_text_document"] or d.loader != "megatron":
        return False
    have = Path(d.tokenizer).is_file() and all(Path(p + ext).is_file() for p in prefixes for ext in (".bin", ".idx"))
    return not have and SHIPPED_CORPUS.is_file()


def prepare_shipped_corpus(cfg, echo=print) -> bool:
    """Train the tokenizer and write the shards if the preset's files are missing. Returns True if it did."""
    if not needs_preparing(cfg):
        return False
    tokenizer = Path(cfg.data.tokenizer)
    echo(f"first use: preparing the shipped corpus for this preset (once) — {cfg.model.vocab_size:,}-entry tokenizer"
         f" → {tokenizer}, then shards → {PRESET_PREFIX}_text_document.bin/.idx")
    if not tokenizer.is_file():
        train_tokenizer([SHIPPED_CORPUS], cfg.model.vocab_size, tokenizer.parent, show_progress=True)
    Path(PRESET_PREFIX).parent.mkdir(parents=True, exist_ok=True)
    result = preprocess([SHIPPED_CORPUS], PRESET_PREFIX, str(tokenizer), workers=0, progress=True)
    echo(result.summary())
    return True
