"""GGUF per family: each family's imported model exported under its llama.cpp architecture (llama and mistral as
`llama` with Q/K permuted, `qwen2` with q/k/v biases, `qwen3` with q/k norms; Llama 3.x's scaling as
`rope_freqs.weight`; Qwen3-MoE as `qwen3moe`, Mixtral as `llama` with stacked experts) and read back by our importer
(fast tier) and by llama.cpp (slow tier, greedy identical)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from family_models import FAMILIES, MOE_FAMILIES, PROMPT_TEXTS
from interop_helpers import greedy, needs_llama_cpp, prompt_logits

NEW_TOKENS = 32
ARCH = {"llama": "llama", "mistral": "llama", "qwen2": "qwen2", "qwen3": "qwen3", "qwen3_moe": "qwen3moe",
        "mixtral": "llama"}


def _ours(entry):
    from myllm_mc.checkpoint import load_model
    from myllm_mc.interop.weights import build_single, single_process

    model = build_single(single_process(entry["cfg"]))
    load_model([model], str(entry["checkpoint"]))
    return model


@pytest.mark.parametrize("family", FAMILIES + MOE_FAMILIES)
def test_gguf_f32_round_trip_is_exact(family, family_imports, tmp_path):
    import gguf

    from myllm_mc.config import load as load_config
    from myllm_mc.data.tokenizer import Tokenizer
    from myllm_mc.interop.gguf_export import export_gguf
    from myllm_mc.interop.gguf_import import import_gguf
    from myllm_mc.interop.weights import logits

    entry = family_imports[family]
    cfg = entry["cfg"]
    export_gguf(cfg, str(entry["checkpoint"]), tmp_path / "m.gguf", "f32")
    reader = gguf.GGUFReader(str(tmp_path / "m.gguf"))
    assert bytes(reader.fields["general.architecture"].parts[-1]).decode() == ARCH[family]
    assert any(t.name == "rope_freqs.weight" for t in reader.tensors) == (cfg.model.rope_scaling == "llama3")
    imported = import_gguf(tmp_path / "m.gguf", tmp_path / "back")
    back = load_config(tmp_path / "back" / "config.yaml", world_size=1).model
    for key in ("qkv_bias", "qk_norm", "rope_scaling", "rope_scaling_factor", "kv_channels", "tie_embeddings",
                "rotary_base"):
        assert getattr(back, key) == getattr(cfg.model, key), key
    assert back.family == ("llama" if family == "mistral" else family)
    for key in ("num_experts", "top_k", "ffn_hidden_size", "router_pre_softmax", "layer_pattern"):
        assert getattr(back.moe, key) == getattr(cfg.model.moe, key), key
    assert imported.parameters == imported.planned_parameters
    ours = _ours(entry)
    again = _ours({"cfg": load_config(tmp_path / "back" / "config.yaml", world_size=1),
                   "checkpoint": tmp_path / "back" / "checkpoint"})
    ids = torch.tensor([Tokenizer(cfg.data.tokenizer).encode(PROMPT_TEXTS[0])])
    assert torch.equal(logits(ours, ids), logits(again, ids))


def _llama_cpp(path):
    """llama.cpp with an F32 KV cache: its default F16 cache alone moves these logits by ~5e-3, which would hide
    whether the F32 file is exact."""
    from llama_cpp import Llama

    return Llama(model_path=str(path), n_ctx=64, logits_all=True, verbose=False, n_threads=2, seed=0, type_k=0, type_v=0)


@needs_llama_cpp
@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES + MOE_FAMILIES)
def test_llama_cpp_greedy_equals_ours(family, family_imports, tmp_path):
    """F32: llama.cpp's logits within 1e-4 of ours and its greedy continuation identical over 32 tokens on every
    prompt. F16: logits within 0.05 (weight rounding); on our greedy continuation llama.cpp picks our token at every
    position whose top-2 margin exceeds twice the measured error (free-running identity is printed: a random-weight
    model has near-ties, e.g. a 0.0012 margin, that F16 rounding may flip)."""
    from myllm_mc.data.tokenizer import Tokenizer
    from myllm_mc.interop.gguf_export import export_gguf
    from myllm_mc.interop.weights import greedy_recompute, logits

    entry = family_imports[family]
    ours = _ours(entry)
    tok = Tokenizer(entry["cfg"].data.tokenizer)
    prompts = [tok.encode(t) for t in PROMPT_TEXTS]
    want = [greedy_recompute(ours, p, NEW_TOKENS, 1024) for p in prompts]
    sequences = [p + w for p, w in zip(prompts, want)]
    reference = [logits(ours, torch.tensor(s))[0, :, :1024].numpy() for s in sequences]
    for fmt, bound in (("f32", 1e-4), ("f16", 0.05)):
        export_gguf(entry["cfg"], str(entry["checkpoint"]), tmp_path / f"m.{fmt}.gguf", fmt)
        llm = _llama_cpp(tmp_path / f"m.{fmt}.gguf")
        theirs = [prompt_logits(llm, s) for s in sequences]
        worst = max(float(np.abs(t - r).max()) for t, r in zip(theirs, reference))
        free = [greedy(llm, p, NEW_TOKENS) == w for p, w in zip(prompts, want)]
        print(f"{family} {fmt}: llama.cpp max |Δlogit| {worst:.2e}; greedy identical on {sum(free)}/{len(free)}"
              f" prompts over {NEW_TOKENS} tokens")
        assert worst < bound, (family, fmt, worst)
        if fmt == "f32":
            assert all(free), (family, fmt)
        for prompt, t, r in zip(prompts, theirs, reference):
            steps = slice(len(prompt) - 1, len(prompt) - 1 + NEW_TOKENS)
            top2 = np.sort(r[steps], axis=-1)[:, -2:]
            clear = (top2[:, 1] - top2[:, 0]) > 2 * worst
            assert (t[steps].argmax(-1) == r[steps].argmax(-1))[clear].all(), (family, fmt)
