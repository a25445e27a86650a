"""HF safetensors export/import proved against transformers' own LlamaForCausalLM (fp32).

The model is the session's trained tiny model (tests/interop/conftest.py); checkpoints at TP=2 and PP=2 are the
same weights re-saved by a 2-process torchrun launch, so an export from any layout must give the same HF model.
"""

from __future__ import annotations

import json

import pytest
import torch
from interop_helpers import PROMPTS, hf_greedy

from tests.helpers.torchrun import run_torchrun

NEW_TOKENS = 16


def _ours(interop_model, checkpoint):
    from myllm_mc.checkpoint import load_model
    from myllm_mc.interop.weights import build_single, single_process

    model = build_single(single_process(interop_model["cfg"]))
    load_model([model], str(checkpoint))
    return model




@pytest.fixture(scope="module")
def layouts(interop_model):
    """{"tp1": dir, "tp2": dir, "pp2": dir}: one model, three layouts on disk."""
    root = interop_model["root"]
    if not (root / "pp2").exists():
        results = run_torchrun("tests/interop/workers/reshard.py", nproc=2,
                               args=[str(interop_model["config_path"]), str(interop_model["checkpoint"]), str(root)])
        # TP=2 really split the weights: rank 0's fused qkv holds half of the rows
        assert results[0]["shapes"]["tp2"]["decoder.layers.0.self_attention.linear_qkv.weight"] == [128, 128]
        assert "decoder.layers.1.input_layernorm.weight" not in results[0]["shapes"]["pp2"]
    return {"tp1": interop_model["checkpoint"], "tp2": root / "tp2", "pp2": root / "pp2"}


def test_hf_export_matches_transformers_from_every_layout(interop_model, layouts, tmp_path):
    from transformers import LlamaForCausalLM

    from myllm_mc.interop.hf_export import export_hf
    from myllm_mc.interop.weights import greedy_recompute, logits

    tok, cfg = interop_model["tokenizer"], interop_model["cfg"]
    prompts = [tok.encode(p) for p in PROMPTS]
    reference = _ours(interop_model, layouts["tp1"])
    ours_greedy = [greedy_recompute(reference, p, NEW_TOKENS, cfg.model.vocab_size) for p in prompts]
    assert all(len(set(g)) >= 4 for g in ours_greedy), f"degenerate greedy decoding: {ours_greedy}"
    for name, checkpoint in layouts.items():
        # the PP=2 export also exercises sharding: ~1 MB per safetensors file
        shard = 1_000_000 if name == "pp2" else 2 * 1024 ** 3
        result = export_hf(cfg, str(checkpoint), tmp_path / name, max_shard_bytes=shard)
        assert result.parameters == interop_model["planned_parameters"]
        assert (result.shards > 1) == (name == "pp2")
        hf = LlamaForCausalLM.from_pretrained(tmp_path / name, dtype=torch.float32).eval()
        for prompt, greedy in zip(prompts, ours_greedy):
            ids = torch.tensor([prompt])
            with torch.no_grad():
                theirs = hf(ids).logits
            diff = (theirs - logits(reference, ids)[..., :cfg.model.vocab_size]).abs().max().item()
            print(f"hf export from {name}: max |Δlogit| {diff:.2e}")
            assert diff < 1e-4, f"{name}: max |Δlogit| {diff:.2e}"
            assert hf_greedy(hf, prompt, NEW_TOKENS) == greedy, name


def test_hf_tokenizer_files_render_our_chat_format(interop_model, layouts, tmp_path):
    from transformers import AutoTokenizer

    from myllm_mc.interop.hf_export import export_hf

    tok = interop_model["tokenizer"]
    export_hf(interop_model["cfg"], str(layouts["tp1"]), tmp_path / "hf")
    hf_tok = AutoTokenizer.from_pretrained(tmp_path / "hf")
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2? Say it  twice."},
                {"role": "assistant", "content": "4 and 4."}, {"role": "user", "content": "Thanks ✓"}]
    ours, _ = tok.encode_chat(messages, add_generation_prompt=True)
    theirs = hf_tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    theirs = theirs["input_ids"] if isinstance(theirs, dict) or hasattr(theirs, "keys") else theirs
    assert list(theirs) == ours
    text = "Tabs\tand  spaces, digits 12345, unicode 日本語 🙂, code: def f(x): return x**2"
    assert hf_tok.encode(text, add_special_tokens=False) == tok.encode(text)
    generation = json.loads((tmp_path / "hf" / "generation_config.json").read_text())
    assert generation["eos_token_id"] == [tok.eod, tok.im_end]


def test_hf_import_then_export_is_bit_exact_and_matches_transformers(interop_model, layouts, tmp_path):
    from safetensors.torch import load_file
    from transformers import LlamaForCausalLM

    from myllm_mc.config import load
    from myllm_mc.interop.hf_export import export_hf
    from myllm_mc.interop.hf_import import import_hf
    from myllm_mc.interop.weights import logits

    export_hf(interop_model["cfg"], str(layouts["tp1"]), tmp_path / "hf")
    imported = import_hf(tmp_path / "hf", tmp_path / "imported")
    assert imported.parameters == imported.planned_parameters == interop_model["planned_parameters"]
    cfg = load(tmp_path / "imported" / "config.yaml", world_size=1)
    assert cfg.checkpoint.init_from == str(tmp_path / "imported" / "checkpoint")
    export_hf(cfg, cfg.checkpoint.init_from, tmp_path / "again")
    first, second = load_file(str(tmp_path / "hf" / "model.safetensors")), load_file(str(tmp_path / "again" / "model.safetensors"))
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        assert (tmp_path / "hf" / name).read_text() == (tmp_path / "again" / name).read_text()
    hf = LlamaForCausalLM.from_pretrained(tmp_path / "hf", dtype=torch.float32).eval()
    model = _ours(interop_model, tmp_path / "imported" / "checkpoint")
    for prompt in PROMPTS:
        ids = torch.tensor([interop_model["tokenizer"].encode(prompt)])
        with torch.no_grad():
            diff = (hf(ids).logits - logits(model, ids)[..., :cfg.model.vocab_size]).abs().max().item()
        print(f"hf import: max |Δlogit| vs transformers {diff:.2e}")
        assert diff < 1e-4
