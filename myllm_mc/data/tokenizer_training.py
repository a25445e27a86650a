"""Train the byte-level BPE: every byte is in the base alphabet, so any UTF-8 text encodes with no unknown token.

Why hold documents out: bytes per token measured on text the merges were not learned from is the figure the
planner should use (token budgets are stated in tokens, corpora are measured in bytes).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, List, Sequence

from .chat_template import CHAT_TEMPLATE
from .preprocess import no_documents_error
from .readers import SkipLog, iter_documents
from .tokenizer import EOD, IM_END, IM_START, PAD, SPECIAL_TOKENS, Tokenizer, replace_lone_surrogates

HUGE_VOCAB = 1_000_000     # above this the embedding alone dwarfs a small model; almost always a typo


@dataclass
class TokenizerReport:
    path: str
    vocab_size: int
    learned_tokens: int          # merges + byte alphabet; the rest are special or reserved
    reserved_tokens: int         # <|reserved_N|> fillers added when the corpus is too small for the vocab asked
    train_documents: int
    heldout_documents: int
    heldout_bytes: int
    heldout_tokens: int
    bytes_per_token: float       # on held-out text
    skipped: int
    seconds: float
    surrogates_replaced: int = 0     # documents whose lone surrogates became U+FFFD, as preprocessing does

    def summary(self) -> str:
        reserved = f" ({self.reserved_tokens:,} reserved fillers: corpus too small)" if self.reserved_tokens else ""
        return (f"tokenizer: vocab {self.vocab_size:,}{reserved} from {self.train_documents:,} documents in "
                f"{self.seconds:.1f} s; held-out {self.heldout_documents:,} documents: "
                f"{self.bytes_per_token:.3f} bytes/token; skipped {self.skipped:,}"
                f"{f'; {self.surrogates_replaced:,} documents had lone surrogates replaced by U+FFFD' if self.surrogates_replaced else ''}"
                f"; saved {self.path}")


def train_tokenizer(files: Sequence[Path], vocab_size: int, output_dir: str | Path, keys: Sequence[str] = ("text",),
                    heldout_every: int = 20, min_frequency: int = 2, show_progress: bool = False) -> TokenizerReport:
    """Learn `vocab_size` entries (special tokens included) and save `output_dir/tokenizer.json`.

    Every `heldout_every`-th document is kept out of training and used to measure bytes per token.
    """
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, pre_tokenizers, trainers

    if vocab_size < len(SPECIAL_TOKENS) + 256:
        raise ValueError(f"--vocab-size {vocab_size} is below the 256 byte tokens + {len(SPECIAL_TOKENS)} special "
                         f"tokens — fix: use at least {256 + len(SPECIAL_TOKENS)}")
    if vocab_size > HUGE_VOCAB:
        print(f"warning: --vocab-size {vocab_size:,} is huge (more than {HUGE_VOCAB:,}): training needs memory for "
              f"every candidate merge and the model's embedding grows with it — fix: 32k-256k is usual",
              file=sys.stderr, flush=True)
    start = time.perf_counter()
    skips = SkipLog()
    heldout: List[str] = []
    counts = {"train": 0, "records": 0, "surrogates": 0}

    def training_texts() -> Iterator[str]:
        for n, (_, texts) in enumerate(iter_documents(files, keys, skips)):
            # the same text preprocessing tokenizes: a lone surrogate becomes U+FFFD (and is counted)
            fixed = [replace_lone_surrogates(t) for t in texts]
            counts["surrogates"] += any(k for _, k in fixed)
            texts = [t for t, _ in fixed]
            if heldout_every and n % heldout_every == heldout_every - 1:
                heldout.extend(texts)
                continue
            counts["train"] += 1
            yield from texts

    hf = HFTokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=show_progress)
    hf.train_from_iterator(training_texts(), trainer)
    if not counts["train"] and not heldout:
        raise no_documents_error(list(files), keys, skips, skips.total)
    learned = hf.get_vocab_size(with_added_tokens=True) - len(SPECIAL_TOKENS)
    reserved = vocab_size - hf.get_vocab_size(with_added_tokens=True)
    if reserved > 0:   # keep vocab_size exactly as configured: the model's embedding is sized from it
        hf.add_special_tokens([f"<|reserved_{i}|>" for i in range(reserved)])

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "tokenizer.json.tmp"
    hf.save(str(tmp))
    tmp.replace(out / "tokenizer.json")
    # lets transformers' AutoTokenizer (and Megatron-LM's HuggingFaceTokenizer) load the same file
    (out / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "eos_token": EOD, "bos_token": EOD, "pad_token": PAD,
        "additional_special_tokens": [IM_START, IM_END], "model_max_length": 1 << 30,
        "chat_template": CHAT_TEMPLATE}, indent=2) + "\n")

    tok = Tokenizer(out / "tokenizer.json")
    heldout_bytes = sum(len(t.encode("utf-8", "surrogatepass")) for t in heldout)
    heldout_tokens = sum(len(ids) for ids in tok.encode_batch(heldout, errors="replace")) if heldout else 0
    report = TokenizerReport(
        path=str(out / "tokenizer.json"), vocab_size=tok.vocab_size, learned_tokens=learned,
        reserved_tokens=max(reserved, 0), train_documents=counts["train"], heldout_documents=len(heldout),
        heldout_bytes=heldout_bytes, heldout_tokens=heldout_tokens,
        bytes_per_token=heldout_bytes / heldout_tokens if heldout_tokens else float("nan"),
        skipped=skips.total, seconds=time.perf_counter() - start, surrogates_replaced=counts["surrogates"])
    (out / "training_report.json").write_text(json.dumps(asdict(report), indent=2) + "\n")
    return report
