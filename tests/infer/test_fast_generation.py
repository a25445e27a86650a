"""The fast paths of the engine give the tokens of the plain one: the plain forward against megatron's forward, prefix
caching against no cache and against full recompute (fresh, batched, joining, chat-history hits)."""

from __future__ import annotations

import pytest
import torch

from myllm_mc.infer import Generator, SamplingParams
from tests.infer.test_generate import full_recompute

GREEDY = SamplingParams(temperature=0, max_new_tokens=16, ignore_eos=True, logprobs=True)


def _twin(generator, **kwargs):
    return Generator(generator.wrapper.model, generator.tokenizer, generator.model_cfg, max_batch_size=4, seed=7,
                     **kwargs)


@pytest.fixture(scope="module")
def megatron_forward(generator):
    return _twin(generator, forward="megatron")


def test_plain_forward_equals_megatron_forward(generator, megatron_forward, corpus_prompts):
    assert generator.plain is not None and megatron_forward.plain is None
    plain = _twin(generator)                                  # no prefix cache: both compute every token
    ours = plain.generate(corpus_prompts, GREEDY)
    theirs = megatron_forward.generate(corpus_prompts, GREEDY)
    for a, b in zip(ours, theirs):
        assert a.token_ids == b.token_ids
        assert max(abs(x - y) for x, y in zip(a.logprobs, b.logprobs)) < 1e-4


def test_prefix_cache_hits_give_the_tokens_of_no_cache(generator, megatron_forward, corpus_prompts):
    short, middle, long = corpus_prompts
    system = long[:32]                                        # two 16-token blocks shared by every request below
    first, second = system + middle, system + short + middle[:3]
    for gen in (_twin(generator, prefix_cache_mib=8), _twin(generator, forward="megatron", prefix_cache_mib=8)):
        assert gen.prefix.enabled
        done = gen.generate([first], GREEDY)[0]
        assert done.cached_tokens == 0
        again = gen.generate([second, first], GREEDY)           # a batch of two hits, ragged
        # right-aligned (pads 9 and 0), both rows are computed from slot 41 on: `second` reuses its 32 stored
        # tokens, `first` 41 of its 48
        assert [c.cached_tokens for c in again] == [32, 41]
        assert again[1].token_ids == done.token_ids
        assert again[0].token_ids == full_recompute(gen, second, 16)[0]
        assert gen.stats.prefix_reused_tokens == 73
        # a chat's next turn: the previous prompt and reply, then more
        turn = first + done.token_ids + short
        running = gen.submit(long, GREEDY)                      # a hit joining a running batch
        gen.step()
        joined = gen.submit(turn, GREEDY)
        out = {}
        while gen.has_work():
            for event in gen.step():
                if event.finished:
                    out[event.request_id] = event.completion
        assert out[running].completion_tokens == 16
        # `first` and its reply were stored when it finished: 4 blocks of the 70-token turn
        assert out[joined].cached_tokens == 64 and out[joined].token_ids == full_recompute(gen, turn, 16)[0]
        assert out[running].token_ids == full_recompute(gen, long, 16)[0]


def test_prefix_cache_is_bounded_and_off_by_default(generator, corpus_prompts):
    assert not _twin(generator).prefix.enabled
    small = _twin(generator, prefix_cache_mib=2 * 16 * generator.shape.bytes_per_slot() / 2**20)   # two blocks
    small.generate([corpus_prompts[2]], SamplingParams(temperature=0, max_new_tokens=2))
    assert small.prefix.stored_tokens() == 32 and len(small.prefix.blocks) == 2


@pytest.mark.parametrize("extra, plain", [(["model.qkv_bias=true"], True), (["model.qk_norm=true"], True),
                                          (["model.moe.num_experts=4", "model.moe.top_k=2"], False)])
def test_family_variants_take_the_plain_forward_with_megatrons_tokens(generator, extra, plain):
    """Qwen2's q/k/v biases and Qwen3's q/k norms run on the plain forward and give megatron's tokens; an MoE model
    stays on megatron's forward (random weights at std 0.2, built in this process's layout)."""
    from myllm_mc.infer import inference_config
    from myllm_mc.model import build_model

    shape = ["model.num_layers=2", "model.hidden_size=64", "model.num_attention_heads=4", "model.num_query_groups=2",
             "model.kv_channels=16", "model.ffn_hidden_size=128", "model.vocab_size=1024", "model.seq_length=128",
             "model.init_std=0.2", "model.spec=local"]
    cfg = inference_config("configs/tiny.yaml", shape + extra, world_size=1)
    [model] = build_model(cfg)
    for layer in model.decoder.layers:
        if layer.self_attention.linear_qkv.bias is not None:       # zero at init: make the biases count
            torch.nn.init.normal_(layer.self_attention.linear_qkv.bias, std=0.5)
    prompts = [list(range(10, 30)), list(range(40, 45))]
    params = SamplingParams(temperature=0, max_new_tokens=16, ignore_eos=True)
    runs = [Generator(model, generator.tokenizer, cfg.model, max_batch_size=2, seed=0, forward=forward)
            for forward in ("auto", "megatron")]
    assert (runs[0].plain is not None) == plain and runs[1].plain is None
    assert [c.token_ids for c in runs[0].generate(prompts, params)] == \
        [c.token_ids for c in runs[1].generate(prompts, params)]
