"""Corpus statistics: what a corpus holds before any GPU time is spent on it.

Why bytes per token matters: budgets are stated in tokens (27.54B for MyLLM) while corpora are measured in bytes;
the planner turns one into the other with `data.bytes_per_token`, which this measures with the real tokenizer.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from .progress import Throughput
from .readers import SkipLog, iter_documents

PERCENTILES = (10, 50, 90, 99)


@dataclass
class CorpusStats:
    files: List[str]
    documents: int
    bytes: int                         # UTF-8 bytes of the text fields
    characters: int
    skipped: Dict[str, int]            # per reason: malformed_json, non_utf8, missing_key, not_text, empty
    skipped_examples: List[str]
    length_chars: Dict[str, float]     # min, mean, p10, p50, p90, p99, max of document length in characters
    tokenizer: Optional[str] = None
    tokens: Optional[int] = None       # without end-of-document tokens
    bytes_per_token: Optional[float] = None
    characters_per_token: Optional[float] = None
    length_tokens: Optional[Dict[str, float]] = None
    histogram: Optional[str] = None
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    def lines(self) -> List[str]:
        skipped = sum(self.skipped.values())
        reasons = ", ".join(f"{r} {n:,}" for r, n in self.skipped.items() if n) or "none"
        c = self.length_chars
        out = [f"files              {len(self.files)}",
               f"documents          {self.documents:,}",
               f"bytes              {self.bytes:,} ({self.bytes / 1e6:,.2f} MB)",
               f"characters         {self.characters:,}",
               f"skipped            {skipped:,} ({reasons})" + (f"; first at {', '.join(self.skipped_examples)}"
                                                                 if self.skipped_examples else ""),
               f"length, chars      min {c['min']:,.0f} · p10 {c['p10']:,.0f} · median {c['p50']:,.0f} · "
               f"p90 {c['p90']:,.0f} · p99 {c['p99']:,.0f} · max {c['max']:,.0f} · mean {c['mean']:,.0f}"]
        if self.tokens is not None:
            t = self.length_tokens
            out += [f"tokens             {self.tokens:,} (tokenizer {self.tokenizer})",
                    f"bytes per token    {self.bytes_per_token:.3f}   (characters per token "
                    f"{self.characters_per_token:.3f})",
                    f"length, tokens     min {t['min']:,.0f} · median {t['p50']:,.0f} · p99 {t['p99']:,.0f} · "
                    f"max {t['max']:,.0f}",
                    f"for the planner    --set data.bytes_per_token={self.bytes_per_token:.3f}"]
        if self.histogram:
            out.append(f"histogram          {self.histogram}")
        return out


def _distribution(lengths: np.ndarray) -> Dict[str, float]:
    if lengths.size == 0:
        return {k: 0.0 for k in ("min", "mean", *(f"p{p}" for p in PERCENTILES), "max")}
    result = {"min": float(lengths.min()), "mean": float(lengths.mean())}
    result.update({f"p{p}": float(np.percentile(lengths, p)) for p in PERCENTILES})
    result["max"] = float(lengths.max())
    return result


def corpus_stats(files: Sequence[Path], keys: Sequence[str] = ("text",), tokenizer=None,
                 histogram: Optional[str] = None, progress: bool = True, batch: int = 512) -> CorpusStats:
    """Count documents, bytes, characters and (given a Tokenizer) tokens; optionally save a length histogram."""
    skips = SkipLog()
    char_lengths, byte_total, token_lengths = [], 0, []
    pending: List[str] = []

    def flush():
        if tokenizer is not None and pending:
            ids = tokenizer.encode_batch(pending, errors="replace")
            token_lengths.extend(len(x) for x in ids)
            meter.update(tokens=sum(len(x) for x in ids))
        pending.clear()

    with Throughput("stats", progress) as meter:
        for _, texts in iter_documents(files, keys, skips):
            for text in texts:
                char_lengths.append(len(text))
                size = len(text.encode("utf-8", "surrogatepass"))
                byte_total += size
                pending.append(text)
                meter.update(documents=1, nbytes=size)
            if len(pending) >= batch:
                flush()
        flush()
    chars = np.asarray(char_lengths, dtype=np.int64)
    stats = CorpusStats(files=[str(f) for f in files], documents=len(chars), bytes=byte_total,
                        characters=int(chars.sum()), skipped=dict(skips.counts), skipped_examples=skips.examples,
                        length_chars=_distribution(chars), seconds=meter.elapsed)
    if tokenizer is not None:
        toks = np.asarray(token_lengths, dtype=np.int64)
        stats.tokenizer = str(tokenizer.path)
        stats.tokens = int(toks.sum())
        stats.bytes_per_token = byte_total / max(stats.tokens, 1)
        stats.characters_per_token = stats.characters / max(stats.tokens, 1)
        stats.length_tokens = _distribution(toks)
    if histogram:
        stats.histogram = save_histogram(chars, histogram, np.asarray(token_lengths) if tokenizer else None)
    return stats


def save_histogram(char_lengths: np.ndarray, path: str, token_lengths: Optional[np.ndarray] = None) -> str:
    """Document-length histogram on log-spaced bins (lengths span orders of magnitude)."""
    import matplotlib  # only for --histogram, and the backend is chosen before pyplot is imported
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("characters", char_lengths)] + ([("tokens", token_lengths)] if token_lengths is not None else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
    for ax, (unit, lengths) in zip(axes[0], panels):
        lengths = lengths[lengths > 0]
        if lengths.size:
            bins = np.logspace(np.log10(lengths.min()), np.log10(lengths.max() + 1), 40)
            ax.hist(lengths, bins=bins, color="#4C72B0")
            ax.axvline(np.median(lengths), color="#C44E52", linestyle="--", label=f"median {np.median(lengths):,.0f}")
            ax.legend()
        ax.set_xscale("log")
        ax.set_xlabel(f"document length ({unit}, log scale)")
        ax.set_ylabel("documents")
        ax.set_title(f"{lengths.size:,} documents")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return str(path)
