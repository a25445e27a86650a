"""Generation on a model with LoRA adapters attached (not merged) runs the adapters. The engine's plain forward reads
each linear layer's weight directly; on an adapted model it dropped the adapters and `myllm generate`, `eval`'s task
accuracy, the server and GRPO's rollouts answered with the base model's tokens, exit 0. The engine now keeps such a
model on megatron's forward, and its tokens equal those of the merged weights."""

import pytest
import torch
from lora_helpers import REPO

from myllm_mc.config import load
from myllm_mc.data.tokenizer import Tokenizer
from myllm_mc.infer import GenerationError, Generator, SamplingParams
from myllm_mc.infer.plain_forward import unsupported
from myllm_mc.lora.apply import apply_lora, merge_adapters
from myllm_mc.model import build_model
from myllm_mc.parallel.state import init_distributed

GREEDY = SamplingParams(temperature=0, max_new_tokens=24, ignore_eos=True)
PROMPTS = [[5, 17, 250, 9], [400, 3, 3, 12, 77, 901], [64]]


def _tokens(model, tokenizer, cfg, **kwargs):
    gen = Generator(model, tokenizer, cfg.model, max_batch_size=4, seed=7, **kwargs)
    return gen, [c.token_ids for c in gen.generate(PROMPTS, GREEDY)]


def test_an_adapted_model_generates_with_its_adapters(lora_base):
    cfg = load(REPO / "configs" / "sft_tiny.yaml", lora_base["model"] + ["align.lora.enabled=true",
                                                                         "align.lora.rank=4"], world_size=1)
    tokenizer = Tokenizer(cfg.data.tokenizer)
    init_distributed(cfg, seed=11)
    (model,) = build_model(cfg)
    model.eval()
    _, base = _tokens(model, tokenizer, cfg)
    adapters = apply_lora([model], cfg.align.lora, seed=1)
    with torch.no_grad():                                   # as after training: B far from 0
        for adapter in adapters:
            adapter.B.normal_(0, 0.2, generator=torch.Generator().manual_seed(3))
    assert unsupported(model) == "a linear layer whose forward was changed (LoRA adapters, hooks)"
    with pytest.raises(GenerationError, match="LoRA adapters"):
        Generator(model, tokenizer, cfg.model, forward="plain")
    gen, adapted = _tokens(model, tokenizer, cfg)
    assert gen.plain is None and adapted != base            # megatron's forward, and the adapters change the answer
    merge_adapters([model])
    assert unsupported(model) is None
    gen, merged = _tokens(model, tokenizer, cfg)
    assert gen.plain is not None and merged == adapted      # the fast path on the merged weights: the same tokens
