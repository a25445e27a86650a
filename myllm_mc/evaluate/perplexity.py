"""Perplexity and bits per byte of a token stream, from megatron-core's per-token cross-entropy.

Windows: the stream is cut into non-overlapping windows of `seq_length` inputs, each with the next `seq_length`
tokens as labels (window i reads stream[i*s : i*s+s] and predicts stream[i*s+1 : i*s+s+1]), exactly the samples
megatron's GPTDataset makes. So every token after the first is predicted once, and the context restarts at each
window boundary (no sliding window: a token early in a window sees little context, which makes perplexity a bit
higher than a strided evaluation would; it is the same number the training loop's validation loss gives).
The last window is padded and its padding masked out.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch

LN2 = math.log(2.0)


@dataclass
class PerplexityResult:
    """Sums over every predicted token; the figures are derived from them."""

    tokens: int               # tokens predicted (stream length - 1)
    nll_sum: float            # Σ -ln p(token | context), nats
    nbytes: int               # UTF-8 bytes of the text those tokens spell (see the caller for which)
    windows: int

    @property
    def mean_nll(self) -> float:
        return self.nll_sum / max(self.tokens, 1)

    @property
    def perplexity(self) -> float:
        return math.exp(self.mean_nll)

    @property
    def bits_per_byte(self) -> float:
        return self.nll_sum / LN2 / max(self.nbytes, 1)

    @property
    def bytes_per_token(self) -> float:
        return self.nbytes / max(self.tokens, 1)

    def as_dict(self) -> dict:
        return {**asdict(self), "mean_nll": self.mean_nll, "perplexity": self.perplexity,
                "bits_per_byte": self.bits_per_byte, "bytes_per_token": self.bytes_per_token}


def token_nll(model, tokens: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """-ln p(labels[b, t] | tokens[b, :t+1]) as [b, s] float32: megatron's fused vocab cross-entropy, the
    per-token loss the training loop averages (a Float16Module-wrapped bf16 model works the same)."""
    device = next(model.parameters()).device
    b, s = tokens.shape
    positions = torch.arange(s, device=device).expand(b, -1)
    with torch.no_grad():
        out = model(tokens.to(device), positions, None, labels=labels.to(device))
    return out.float()


def token_logits(model, tokens: torch.Tensor) -> torch.Tensor:
    """[b, s, padded vocab] logits of one causal forward without labels (lm-eval's backend needs the whole
    distribution: the argmax as well as the log-probability of the continuation)."""
    device = next(model.parameters()).device
    b, s = tokens.shape
    positions = torch.arange(s, device=device).expand(b, -1)
    with torch.no_grad():
        return model(tokens.to(device), positions, None)


def next_token_windows(stream: Sequence[int], seq_length: int) -> List[Tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(inputs, labels, loss_mask) per window, each [seq_length]; see the module docstring."""
    stream = np.asarray(stream, dtype=np.int64)
    out = []
    for start in range(0, max(len(stream) - 1, 0), seq_length):
        piece = stream[start:start + seq_length + 1]
        n = len(piece) - 1
        inputs = np.zeros(seq_length, dtype=np.int64)
        labels = np.zeros(seq_length, dtype=np.int64)
        mask = np.zeros(seq_length, dtype=np.float32)
        inputs[:n], labels[:n], mask[:n] = piece[:-1], piece[1:], 1.0
        out.append((inputs, labels, mask))
    return out


def score_stream(model, stream: Sequence[int], seq_length: int, nbytes: int, batch_size: int = 8,
                 progress: Optional[Callable[[int, int], None]] = None) -> PerplexityResult:
    """Sum the NLL of every predicted token of `stream` (float64 accumulation of float32 per-token losses)."""
    windows = next_token_windows(stream, seq_length)
    nll, tokens = 0.0, 0
    for first in range(0, len(windows), batch_size):
        rows = windows[first:first + batch_size]
        inputs, labels, mask = (torch.from_numpy(np.stack(col)) for col in zip(*rows))
        losses = token_nll(model, inputs, labels).cpu().double()
        nll += float((losses * mask.double()).sum())
        tokens += int(mask.sum())
        if progress:
            progress(min(first + batch_size, len(windows)), len(windows))
    return PerplexityResult(tokens=tokens, nll_sum=nll, nbytes=int(nbytes), windows=len(windows))
