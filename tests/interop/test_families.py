"""Every supported family in and out of megatron-core, proved against transformers' own class for it (fp32).

The models are tiny random-weight HF models built by transformers (tests/interop/family_models.py): Llama 3.x
(llama3 RoPE scaling, tied), Qwen2.5 (q/k/v biases), Qwen3 (q/k norms, head_dim 32 ≠ 64 / 4), Mistral (untied), and
the mixture-of-experts Qwen3-MoE and Mixtral (4 experts, top-2; megatron-core's MoELayer on our side).
Per family: our imported model's logits within 1e-4 of transformers' on four prompts, greedy continuations
identical over 32 tokens, the planner's count equal to the weights read and to the built model's, and
import → export bit-exact on every tensor, loaded back by transformers as the same class.
"""

from __future__ import annotations

import json

import pytest
import torch
from family_models import FAMILIES, MOE_FAMILIES, PROMPT_TEXTS
from interop_helpers import hf_greedy

NEW_TOKENS = 32




@pytest.mark.parametrize("family", FAMILIES + MOE_FAMILIES)
def test_import_matches_transformers_and_exports_bit_exact(family, family_hf_dirs, tmp_path):
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from myllm_mc.checkpoint import load_model
    from myllm_mc.config import load
    from myllm_mc.data.tokenizer import Tokenizer
    from myllm_mc.interop.hf_export import export_hf
    from myllm_mc.interop.hf_import import import_hf
    from myllm_mc.interop.weights import build_single, greedy_recompute, logits, single_process
    from myllm_mc.model import parameter_counts

    source = family_hf_dirs[family]
    imported = import_hf(source, tmp_path / "imported")
    cfg = load(tmp_path / "imported" / "config.yaml", world_size=1)
    assert cfg.model.family == family
    model = build_single(single_process(cfg))
    load_model([model], cfg.checkpoint.init_from)
    read = sum(t.numel() for t in load_file(str(source / "model.safetensors")).values())
    assert imported.parameters == imported.planned_parameters == read
    assert parameter_counts(model)["total"] == read   # vocab 1,024: no padding rows

    hf = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32).eval()
    tok = Tokenizer(source / "tokenizer.json")
    worst = 0.0
    for text in PROMPT_TEXTS:
        prompt = tok.encode(text)
        ids = torch.tensor([prompt])
        with torch.no_grad():
            worst = max(worst, (hf(ids).logits - logits(model, ids)[..., :1024]).abs().max().item())
        ours = greedy_recompute(model, prompt, NEW_TOKENS, 1024)
        assert len(set(ours)) >= 8, f"degenerate greedy decoding: {ours}"
        assert hf_greedy(hf, prompt, NEW_TOKENS) == ours, text
    print(f"{family}: max |Δlogit| vs transformers {worst:.2e}, greedy identical over {NEW_TOKENS} tokens")
    assert worst < 1e-4

    export_hf(cfg, cfg.checkpoint.init_from, tmp_path / "again")
    first, second = load_file(str(source / "model.safetensors")), load_file(str(tmp_path / "again" / "model.safetensors"))
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first), [k for k in first if not torch.equal(first[k], second[k])]
    config = json.loads((tmp_path / "again" / "config.json").read_text())
    original = json.loads((source / "config.json").read_text())
    assert config["architectures"] == original["architectures"]
    again = AutoModelForCausalLM.from_pretrained(tmp_path / "again", dtype=torch.float32).eval()
    assert type(again) is type(hf)
    ids = torch.tensor([tok.encode(PROMPT_TEXTS[0])])
    with torch.no_grad():
        assert torch.equal(again(ids).logits, hf(ids).logits)
