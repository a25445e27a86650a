"""Generation on the in-test pretrained tiny model: the KV cache against full recompute, batching and joins,
sampling, stop rules, log-probs, streaming, errors and the KV cache's bytes against the planner."""

from __future__ import annotations

import pytest
import torch

from myllm_mc.infer import GenerationError, SamplingParams

GREEDY = SamplingParams(temperature=0, max_new_tokens=32, ignore_eos=True)


def full_recompute(gen, prompt, new_tokens):
    """No cache: the whole sequence through the model for every new token; argmax; log-probs of the choice."""
    model = gen.wrapper.model
    ids, logprobs = list(prompt), []
    with torch.inference_mode():
        for _ in range(new_tokens):
            tokens = torch.tensor([ids])
            logits = model(tokens, torch.arange(len(ids)).unsqueeze(0), None)[0, -1, :gen.vocab_size].float()
            ids.append(int(torch.argmax(logits)))
            logprobs.append(float(torch.log_softmax(logits, -1)[ids[-1]]))
    return ids[len(prompt):], logprobs


def test_kv_cache_greedy_equals_full_recompute_for_ragged_prompts_in_one_batch(generator, corpus_prompts):
    batch = generator.generate(corpus_prompts, SamplingParams(temperature=0, max_new_tokens=32, ignore_eos=True,
                                                              logprobs=True))
    for prompt, done in zip(corpus_prompts, batch):
        expected, logprobs = full_recompute(generator, prompt, 32)
        assert done.token_ids == expected
        assert done.finish_reason == "length" and done.completion_tokens == 32
        assert done.prompt_tokens == len(prompt)
        assert max(abs(a - b) for a, b in zip(done.logprobs, logprobs)) < 1e-3
        assert len(set(expected)) >= 8, f"degenerate continuation {expected}: the weights prove nothing"


def test_requests_joining_between_decode_steps_equal_their_output_alone(generator, corpus_prompts):
    short, middle, long = corpus_prompts
    first = generator.submit(short, GREEDY)
    done = {}
    for step in range(200):
        if step == 3:
            second = generator.submit(long, GREEDY)     # longer than the running rows: the cache shifts right
        if step == 6:
            third = generator.submit(middle, SamplingParams(temperature=0, max_new_tokens=7, ignore_eos=True))
        for event in generator.step():
            if event.finished:
                done[event.request_id] = event.completion.token_ids
        if step > 6 and not generator.has_work():
            break
    assert done[first] == full_recompute(generator, short, 32)[0]
    assert done[second] == full_recompute(generator, long, 32)[0]
    assert done[third] == full_recompute(generator, middle, 7)[0]
    assert generator.cache.rows == 0


def test_seeded_sampling_is_reproducible_whatever_the_batch_and_top_k_1_is_greedy(generator, corpus_prompts):
    sampled = SamplingParams(temperature=1.0, top_p=0.9, seed=11, max_new_tokens=16, ignore_eos=True)
    alone = generator.generate([corpus_prompts[1]], sampled)[0].token_ids
    mixed = generator.generate(corpus_prompts, [GREEDY, sampled, SamplingParams(seed=3, max_new_tokens=5)])
    assert mixed[1].token_ids == alone
    other_seed = generator.generate([corpus_prompts[1]], SamplingParams(temperature=1.0, top_p=0.9, seed=12,
                                                                        max_new_tokens=16, ignore_eos=True))
    assert other_seed[0].token_ids != alone
    top1 = generator.generate([corpus_prompts[2]], SamplingParams(temperature=1.5, top_k=1, seed=5,
                                                                  max_new_tokens=32, ignore_eos=True))
    assert top1[0].token_ids == generator.generate([corpus_prompts[2]], GREEDY)[0].token_ids


def test_temperature_and_top_p_shape_the_distribution_as_computed():
    """8,000 draws per setting; each token's frequency must lie within 4.5 binomial standard deviations of the
    probability computed from the logits (a false failure has odds below 1e-4 per test run)."""
    from myllm_mc.infer.sampling import sample_rows

    logits = torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0, -3.0])
    draws = 8_000
    for params, expected in [
        (SamplingParams(temperature=1.0), torch.softmax(logits, 0)),
        (SamplingParams(temperature=0.5), torch.softmax(logits / 0.5, 0)),
        (SamplingParams(temperature=2.0), torch.softmax(logits / 2.0, 0)),
        # top-p 0.8: the sorted cumulative mass before tokens 0,1,2 is 0, .56, .77 < .8, so exactly {0, 1, 2} stay
        (SamplingParams(temperature=1.0, top_p=0.8), torch.softmax(logits[:3], 0).tolist() + [0.0] * 3),
        (SamplingParams(temperature=1.0, top_k=2), torch.softmax(logits[:2], 0).tolist() + [0.0] * 4),
    ]:
        expected = torch.as_tensor(expected, dtype=torch.float64)
        gen = torch.Generator().manual_seed(0)
        rows = logits.expand(draws, -1)
        tokens, _ = sample_rows(rows, [params] * draws, [gen] * draws)
        freq = torch.bincount(tokens, minlength=6).double() / draws
        sigma = (expected * (1 - expected) / draws).sqrt()
        assert torch.all((freq - expected).abs() <= 4.5 * sigma + 1e-12), (params, freq, expected)
        assert torch.all(freq[expected == 0] == 0)


def test_stop_strings_cut_the_text_exactly_and_stop_tokens_end_the_request(generator, corpus_prompts):
    prompt = corpus_prompts[2]
    full = generator.generate([prompt], GREEDY)[0]
    text = full.text
    stop = text[len(text) // 2: len(text) // 2 + 3]
    cut = generator.generate([prompt], SamplingParams(temperature=0, max_new_tokens=32, ignore_eos=True,
                                                      stop=[stop, "\x00never"]))[0]
    assert cut.finish_reason == "stop" and cut.text == text[:text.find(stop)]
    assert cut.token_ids == full.token_ids[:cut.completion_tokens]
    streamed = "".join(e.text for e in generator.stream([prompt], SamplingParams(
        temperature=0, max_new_tokens=32, ignore_eos=True, stop=[stop])))
    assert streamed == cut.text
    stop_id = full.token_ids[5]
    by_token = generator.generate([prompt], SamplingParams(temperature=0, max_new_tokens=32, ignore_eos=True,
                                                           stop_token_ids=[stop_id]))[0]
    first = full.token_ids.index(stop_id)
    assert by_token.finish_reason == "stop" and by_token.token_ids == full.token_ids[:first + 1]
    assert generator.generate([prompt], SamplingParams(temperature=0, max_new_tokens=3))[0].completion_tokens == 3


def test_bad_requests_fail_with_one_line(generator, trained):
    from myllm_mc.infer import resolve_checkpoint

    cases = [lambda: generator.submit([], GREEDY),
             lambda: generator.submit([5] * generator.max_seq, GREEDY),
             lambda: resolve_checkpoint(trained["checkpoint"] + "-missing"),
             lambda: generator.submit([5], SamplingParams(top_p=0))]
    for case, words in zip(cases, ["empty prompt", "does not fit the 128-token context", "does not exist", "top_p"]):
        with pytest.raises(GenerationError) as err:
            case()
        assert words in str(err.value) and "fix:" in str(err.value) and "\n" not in str(err.value)
    assert not generator.queue


def test_measured_kv_cache_bytes_equal_the_planner_figure(generator, corpus_prompts):
    from myllm_mc.infer.numbers import run_numbers
    from myllm_mc.plan.inference import kv_cache_bytes_per_token

    generator.reset_stats()
    generator.generate(corpus_prompts[:1], SamplingParams(temperature=0, max_new_tokens=4))
    m = generator.model_cfg
    per_token = kv_cache_bytes_per_token(m, bytes_per_element=4)        # fp32 cache
    assert per_token == 2 * 2 * 2 * 32 * 4
    # 5 prompt slots + 3 decode slots, rounded up to one 64-slot block, one row; freed when the batch is done
    assert generator.stats.kv_peak_tokens == 64 and generator.kv_peak_bytes() == per_token * 64 == 65_536
    assert generator.kv_cache_bytes() == 0
    numbers = run_numbers(generator, bandwidth=10e9, source="test")
    assert numbers.kv_bytes_measured == numbers.kv_bytes_planned == 65_536
    assert numbers.decode_tokens_per_s > 0 and numbers.decode_bound_tokens_per_s > 0
    assert "KV cache 0.06 MiB float32 allocated (planner 0.06 MiB)" in numbers.line()


def test_kv_cache_is_sized_to_the_request_not_to_the_model_context(generator, corpus_prompts):
    """A 64-token request (+ 64 new) on an 8,192-token context with room for 8 rows: one row of 128 slots."""
    from dataclasses import replace

    from myllm_mc.infer import Generator

    long_context = Generator(generator.wrapper.model, generator.tokenizer,
                             replace(generator.model_cfg, seq_length=8192), max_batch_size=8, seed=1)
    prompt = (corpus_prompts[2] * 2)[:64]
    done = long_context.generate([prompt], SamplingParams(temperature=0, max_new_tokens=64, ignore_eos=True))[0]
    full_context = long_context.shape.bytes_per_slot() * 8192 * 8
    assert long_context.kv_peak_bytes() == long_context.shape.bytes_per_slot() * 128 < full_context / 16
    assert done.token_ids == generator.generate([prompt], SamplingParams(temperature=0, max_new_tokens=64,
                                                                         ignore_eos=True))[0].token_ids
