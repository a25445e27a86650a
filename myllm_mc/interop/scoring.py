"""Held-out text and how an exported model is scored on it — shared by `export --check` (export_check.py) and the
quantization report (quant_report.py), so both measure perplexity and top-1 agreement the same way.

- `heldout_windows`: token windows from the end of the shipped corpus (never trained on by the presets).
- `token_nll`: per-token next-token NLL from a [positions, vocab] logit array, in float64.
- `llama_cpp_logits`: [positions, vocab] logits of a fresh llama.cpp evaluation of a window.
- `llama_cpp_available` / `llama_cpp_install_hint`: whether llama-cpp-python is importable, and the one command
  that installs it (named by every message and test skip that needs it).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import List, Sequence

import numpy as np

REPO = Path(__file__).resolve().parents[2]
LLAMA_CPP_VERSION = "0.3.36"


def heldout_windows(tokenizer, windows: int, length: int, corpus: Path) -> List[List[int]]:
    """`windows` token windows of `length` from the last documents of the corpus (the end is held out)."""
    from myllm_mc.data.readers import SkipLog, iter_documents

    texts = [t for _, parts in iter_documents([corpus], ("text",), SkipLog()) for t in parts]
    stream: List[int] = []
    for text in reversed(texts):
        stream = tokenizer.encode(text) + [tokenizer.eod] + stream
        if len(stream) >= windows * length:
            break
    return [stream[i * length:(i + 1) * length] for i in range(windows)]


def token_nll(all_logits: np.ndarray, ids: Sequence[int]) -> np.ndarray:
    """NLL (nats) of ids[1:] under logits[:-1]: one value per predicted token, computed in float64."""
    x = all_logits[:-1].astype(np.float64)
    x = x - x.max(-1, keepdims=True)
    logp = x - np.log(np.exp(x).sum(-1, keepdims=True))
    return -logp[np.arange(len(ids) - 1), np.asarray(ids[1:])]


def llama_cpp_logits(llm, ids: Sequence[int]) -> np.ndarray:
    """[len(ids), vocab] logits of a fresh evaluation of `ids` by a `llama_cpp.Llama` made with logits_all=True."""
    llm.reset()
    llm.eval(list(ids))
    return np.array(llm.scores[:len(ids)], dtype=np.float32)


def llama_cpp_available() -> bool:
    return importlib.util.find_spec("llama_cpp") is not None


def llama_cpp_install_hint() -> str:
    """The command that installs llama.cpp's Python bindings here (the repo's script where the checkout has it)."""
    if (REPO / "tools" / "install_llama_cpp.sh").is_file():
        return "bash tools/install_llama_cpp.sh"
    return (f'pip install llama-cpp-python=={LLAMA_CPP_VERSION} (a source build: needs cmake and a C++ compiler; '
            f'see docs/interop.md "llama.cpp")')
