"""Speculative decoding: greedy output equals plain decoding token for token (prompt-lookup drafts and drafts that
are partly right), and the sampled tokens are distributed as the target's (frequencies, as the sampler tests)."""

from __future__ import annotations

import torch

from myllm_mc.infer import Generator, SamplingParams
from myllm_mc.infer.sampling import filtered_logits
from myllm_mc.infer.speculative import accept, draw, prompt_lookup

GREEDY = SamplingParams(temperature=0, max_new_tokens=64, ignore_eos=True, logprobs=True)


def _speculative(generator, **kwargs):
    return Generator(generator.wrapper.model, generator.tokenizer, generator.model_cfg, max_batch_size=4, seed=7,
                     **kwargs)


def test_prompt_lookup_proposes_what_followed_the_latest_match():
    assert prompt_lookup([1, 2, 3, 9, 1, 2, 3, 7, 5, 1, 2, 3], 2) == [7, 5]      # the latest 3-gram match
    assert prompt_lookup([4, 5, 6, 5], 3) == []                                   # a 1-gram predicts little
    assert prompt_lookup([4, 5, 6, 5], 3, min_ngram=1) == [6, 5]                  # ... up to the end
    assert prompt_lookup([1, 2, 3], 4) == []


def test_greedy_speculative_equals_plain_decoding_over_64_tokens(generator, corpus_prompts):
    plain = _speculative(generator).generate(corpus_prompts, GREEDY)   # a batch: no speculation, the reference
    # 1-gram lookups: the random test model rarely repeats two tokens in a row
    lookup = _speculative(generator, speculative=4, drafter=lambda ids, k: prompt_lookup(ids, k, min_ngram=1))
    for prompt, expected in zip(corpus_prompts, plain):
        done = lookup.generate([prompt], GREEDY)[0]
        assert done.token_ids == expected.token_ids and done.completion_tokens == 64
        assert max(abs(a - b) for a, b in zip(done.logprobs, expected.logprobs)) < 1e-3
    assert lookup.stats.drafted_tokens > 0
    # drafts that are right twice then wrong: every acceptance and rejection path of the verification runs
    truth = {tuple(p): e.token_ids for p, e in zip(corpus_prompts, plain)}

    def partly_right(ids, k):
        for prompt, out in sorted(truth.items(), key=lambda item: -len(item[0])):   # the prompts share a start
            if tuple(ids[:len(prompt)]) == prompt:
                done = len(ids) - len(prompt)
                guess = out[done:done + k]
                return guess[:2] + [(t + 1) % 1000 for t in guess[2:]]
        return []

    oracle = _speculative(generator, speculative=4, drafter=partly_right)
    for prompt, expected in zip(corpus_prompts, plain):
        assert oracle.generate([prompt], GREEDY)[0].token_ids == expected.token_ids
    rate = oracle.stats.acceptance_rate
    assert 0.4 < rate < 0.6, rate                  # 2 of 4 drafts right, fewer near the end
    assert oracle.stats.decode_steps < 64 * 3 / 2


def test_sampled_speculative_tokens_follow_the_target_distribution():
    """8,000 draws of a token given a draft (likely, unlikely, filtered out) with the rule `accept` applies at each
    position: each token's frequency lies within 4.5 binomial standard deviations of the target's filtered
    probability (a false failure has odds below 1e-4 per case)."""
    logits = torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0, -3.0])
    draws = 8_000
    for params in (SamplingParams(temperature=1.0), SamplingParams(temperature=0.7, top_k=3)):
        expected = torch.softmax(filtered_logits(logits, params), 0).double()
        for guess in (0, 2, 5):
            gen = torch.Generator().manual_seed(guess)
            probs = expected.float()
            tokens = torch.tensor([draw(probs, guess, gen) for _ in range(draws)])
            freq = torch.bincount(tokens, minlength=6).double() / draws
            sigma = (expected * (1 - expected) / draws).sqrt()
            assert torch.all((freq - expected).abs() <= 4.5 * sigma + 1e-12), (params, guess, freq, expected)
            assert torch.all(freq[expected == 0] == 0)
    # and `accept` itself: greedy stops at the first wrong draft; the last token is always the model's own
    peaked = torch.tensor([[9.0, 0, 0], [0, 9.0, 0], [0, 0, 9.0]])
    assert accept(peaked, [0, 1], SamplingParams(temperature=0), gen)[0] == [0, 1, 2]
    assert accept(peaked, [0, 2], SamplingParams(temperature=0), gen)[0] == [0, 1]


def test_sampled_speculative_generation_is_seeded_and_reports_logprobs(generator, corpus_prompts):
    lookup = _speculative(generator, speculative=4, drafter=lambda ids, k: prompt_lookup(ids, k, min_ngram=1))
    params = SamplingParams(temperature=0.8, seed=3, max_new_tokens=32, ignore_eos=True, logprobs=True)
    first = lookup.generate([corpus_prompts[1]], params)[0]
    again = lookup.generate([corpus_prompts[1]], params)[0]
    assert first.token_ids == again.token_ids and len(first.logprobs) == first.completion_tokens == 32
    assert lookup.stats.drafted_tokens > 0
    assert all(lp <= 0 for lp in first.logprobs)
