"""GGUF export/import proved against llama.cpp (llama-cpp-python) and against our own fp32 model.

Bounds for the quantized types, on the session's trained tiny model (tests/interop/conftest.py), over the
comparison at every position of three 64-token corpus passages (the model's context length):
  Q8_0: top-1 agreement with our fp32 ≥ 95 %, perplexity within 1 % of ours;
  Q4_0: top-1 agreement ≥ 75 %, perplexity within 10 %  (measured figures: docs/interop.md).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from interop_helpers import PROMPTS, corpus_texts, greedy, load, log_perplexity, needs_llama_cpp, prompt_logits

NEW_TOKENS = 32
QUANT_BOUNDS = {"q8_0": (0.95, 0.01), "q4_0": (0.75, 0.10)}   # (min top-1 agreement, max relative ppl change)


@pytest.fixture(scope="module")
def exported(interop_model, tmp_path_factory):
    """{fmt: GGUFExport} for every type, from the TP=1 checkpoint, plus our fp32 model."""
    from myllm_mc.interop.gguf_export import GGUF_TYPES, export_gguf

    root = tmp_path_factory.mktemp("gguf")
    files = {fmt: export_gguf(interop_model["cfg"], str(interop_model["checkpoint"]), root / f"m.{fmt}.gguf", fmt)
             for fmt in GGUF_TYPES}
    return files


@pytest.fixture(scope="module")
def ours(interop_model):
    from myllm_mc.checkpoint import load_model
    from myllm_mc.interop.weights import build_single, single_process

    model = build_single(single_process(interop_model["cfg"]))
    load_model([model], str(interop_model["checkpoint"]))
    return model


def _passages(tok, count=3, length=64):
    """`count` windows of the model's context length from documents the tokenizer and model saw least of."""
    texts = [t for t in corpus_texts(440)[400:] if len(tok.encode(t)) >= length][:count]
    assert len(texts) == count
    return [tok.encode(t)[:length] for t in texts]


def test_gguf_sizes_match_the_planner(exported, interop_model):
    """File = the planner's weight bytes + tokenizer/metadata, which is the same few KB for every type."""
    overheads = {fmt: e.file_bytes - e.planned_weight_bytes for fmt, e in exported.items()}
    for e in exported.values():
        print(e.summary())
    assert all(0 < extra < 64_000 for extra in overheads.values()), overheads
    assert max(overheads.values()) - min(overheads.values()) < 512, overheads   # alignment padding only
    assert exported["q4_0"].file_bytes < exported["q8_0"].file_bytes < exported["f16"].file_bytes


def test_gguf_import_reproduces_our_logits(exported, interop_model, ours, tmp_path):
    from myllm_mc.checkpoint import load_model
    from myllm_mc.config import load
    from myllm_mc.interop.gguf_import import import_gguf
    from myllm_mc.interop.weights import build_single, logits, single_process

    tok = interop_model["tokenizer"]
    limits = {"f32": 1e-5, "f16": 1e-2}
    for fmt, limit in limits.items():
        result = import_gguf(exported[fmt].out, tmp_path / fmt)
        assert result.parameters == result.planned_parameters == interop_model["planned_parameters"]
        cfg = load(tmp_path / fmt / "config.yaml", world_size=1)
        from myllm_mc.model.llama_layout import LlamaShape
        want = interop_model["cfg"].model
        assert LlamaShape.of(cfg.model) == LlamaShape.of(want)
        assert (cfg.model.rotary_base, cfg.model.norm_epsilon, cfg.model.seq_length) == (
            want.rotary_base, want.norm_epsilon, want.seq_length)
        model = build_single(single_process(cfg))
        load_model([model], cfg.checkpoint.init_from)
        # the rebuilt tokenizer (from GGUF metadata) gives our ids
        from myllm_mc.data.tokenizer import Tokenizer
        rebuilt = Tokenizer(cfg.data.tokenizer)
        text = "Numbers 3.14159 and 2024; <|im_start|>user\n  indented\tcode() ✓ 日本"
        assert rebuilt.encode(text) == tok.encode(text)
        assert rebuilt.encode(text, allow_special=True) == tok.encode(text, allow_special=True)
        for prompt in PROMPTS:
            ids = torch.tensor([tok.encode(prompt)])
            diff = (logits(model, ids) - logits(ours, ids)).abs().max().item()
            print(f"gguf import {fmt}: max |Δlogit| {diff:.2e}")
            assert diff <= limit, f"{fmt}: {diff:.2e}"


@needs_llama_cpp
def test_llama_cpp_tokenizes_like_us(exported, interop_model):
    tok = interop_model["tokenizer"]
    llm = load(exported["f32"].out)
    texts = ["Hello, world!", "naïve café — Ünïcödé: 日本語のテキスト, emoji 🙂🚀, ﬁ ligature",
             "digits 0 12 345 6789 3.14159 1,000,000 and 2024-12-01", "def f(x):\n    return {'a': [x, x**2]}  # code",
             "whitespace   runs\t\ttabs\n\n\nnewlines    end   ", "  leading spaces and trailing   ",
             "special <|im_start|>user\nhi<|im_end|>\n<|endoftext|> tokens"]
    for text in texts:
        assert llm.tokenize(text.encode(), add_bos=False, special=False) == tok.encode(text), text
        assert llm.tokenize(text.encode(), add_bos=False, special=True) == tok.encode(text, allow_special=True), text
    ids = tok.encode(texts[1])
    assert llm.detokenize(ids).decode() == texts[1]


@needs_llama_cpp
def test_llama_cpp_greedy_equals_ours_f32_f16(exported, interop_model, ours):
    from myllm_mc.interop.weights import greedy_recompute, logits

    tok, vocab = interop_model["tokenizer"], interop_model["cfg"].model.vocab_size
    for fmt in ("f32", "f16"):
        llm = load(exported[fmt].out)
        for prompt in PROMPTS:
            ids = tok.encode(prompt)
            mine = greedy_recompute(ours, ids, NEW_TOKENS, vocab)
            assert len(set(mine)) >= 4, f"degenerate reference: {mine}"
            theirs = greedy(llm, ids, NEW_TOKENS)
            first = np.abs(prompt_logits(llm, ids)[-1] - logits(ours, torch.tensor([ids]))[0, -1].numpy()).max()
            print(f"llama.cpp {fmt} {prompt!r}: greedy {'identical' if theirs == mine else 'DIFFERENT'} over"
                  f" {NEW_TOKENS}; first-step max |Δlogit| {first:.2e}")
            assert theirs == mine, (fmt, prompt)


@needs_llama_cpp
def test_llama_cpp_quantized_top1_and_perplexity(exported, interop_model, ours):
    from myllm_mc.interop.weights import logits

    passages = _passages(interop_model["tokenizer"])
    references = [logits(ours, torch.tensor([ids]))[0].numpy() for ids in passages]
    ref_nll = np.mean([log_perplexity(r, ids) for r, ids in zip(references, passages)])
    for fmt in ("f32",) + tuple(QUANT_BOUNDS):
        llm = load(exported[fmt].out)
        theirs = [prompt_logits(llm, ids) for ids in passages]
        nll = np.mean([log_perplexity(t, ids) for t, ids in zip(theirs, passages)])
        agreement = float(np.mean(np.concatenate([t.argmax(-1) == r.argmax(-1) for t, r in zip(theirs, references)])))
        change = abs(math.exp(nll - ref_nll) - 1)
        print(f"llama.cpp {fmt}: top-1 agreement {agreement:.3f}, perplexity {math.exp(nll):.3f} vs ours"
              f" {math.exp(ref_nll):.3f} ({change:.2%})")
        if fmt == "f32":
            assert abs(nll - ref_nll) < 1e-4 and agreement >= 0.99, (agreement, nll, ref_nll)
            continue
        min_agreement, max_change = QUANT_BOUNDS[fmt]
        assert agreement >= min_agreement and change <= max_change, (fmt, agreement, change)
