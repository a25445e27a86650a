"""Shared by the interop tests: the tiny model's shape, prompts, corpus text, and llama.cpp (llama-cpp-python)
as the independent reader of our GGUF files."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from myllm_mc.interop.scoring import llama_cpp_install_hint

HAVE_LLAMA_CPP = importlib.util.find_spec("llama_cpp") is not None
LLAMA_CPP_MISSING = f"llama.cpp (llama-cpp-python) not installed — install: {llama_cpp_install_hint()}"
needs_llama_cpp = pytest.mark.skipif(not HAVE_LLAMA_CPP, reason=LLAMA_CPP_MISSING)


def hf_greedy(hf, prompt, new_tokens):
    """transformers' argmax continuation (no stop token: the comparison runs the full length)."""
    import torch

    ids = list(prompt)
    with torch.no_grad():
        for _ in range(new_tokens):
            ids.append(int(hf(torch.tensor([ids])).logits[0, -1].argmax()))
    return ids[len(prompt):]


def load(path, n_ctx: int = 256):
    from llama_cpp import Llama

    # logits_all=True: without it Llama.scores stays zero after eval()
    return Llama(model_path=str(path), n_ctx=n_ctx, logits_all=True, verbose=False, n_threads=2, seed=0)


def prompt_logits(llm, ids) -> np.ndarray:
    """[len(ids), vocab] logits of a fresh evaluation of `ids`."""
    llm.reset()
    llm.eval(list(ids))
    return np.array(llm.scores[:len(ids)], dtype=np.float32)


def greedy(llm, prompt, new_tokens: int) -> list[int]:
    llm.reset()
    llm.eval(list(prompt))
    out = []
    for _ in range(new_tokens):
        token = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        out.append(token)
        llm.eval([token])
    return out


def log_perplexity(all_logits: np.ndarray, ids) -> float:
    """Mean next-token negative log-likelihood of ids[1:] under logits[:-1] (natural log)."""
    logits = all_logits[:-1].astype(np.float64)
    logits -= logits.max(axis=-1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
    return float(-logp[np.arange(len(ids) - 1), np.asarray(ids[1:])].mean())


REPO = Path(__file__).resolve().parents[2]
STEPS = 250
MODEL = ["model.num_layers=2", "model.hidden_size=128", "model.num_attention_heads=4", "model.num_query_groups=2",
         "model.kv_channels=32", "model.ffn_hidden_size=384", "model.vocab_size=1024", "model.seq_length=64",
         "model.precision=fp32", "model.init_std=0.02", "model.name=interop-tiny"]
PROMPTS = ["The history of the city", "In 1905, the first", "Water is a"]


def corpus_texts(limit: int):
    from myllm_mc.data.readers import SkipLog, iter_documents

    texts = []
    for _, parts in iter_documents([REPO / "data" / "corpus.jsonl.zst"], ("text",), SkipLog()):
        texts.extend(parts)
        if len(texts) >= limit:
            break
    return texts
