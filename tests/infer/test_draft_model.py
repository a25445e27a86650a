"""Speculative decoding with a draft model (infer/draft_model.py): greedy output equals plain decoding token for
token, sampled tokens are distributed as the target's (exact probabilities, frequencies), the draft's prefix cache
keeps each call to the tail of the context, and a draft of another tokenizer is refused in one line.

The pair: the target is the inference tests' 2-layer model (tests/infer/tiny_model.py, random weights at init std
0.2: greedy output that depends on the whole context) with its second layer's output projections scaled by 0.3;
the draft is a 1-layer model holding the target's embedding, first layer and final norm (an early exit, as in
self-speculative / LayerSkip drafting). So the draft is smaller, shares the tokenizer, and agrees with the target
on about a quarter of its k = 4 guesses: both acceptance and rejection run often. (Two models trained briefly
in-test were tried first: 60 Adam steps each took 30 s on the loaded 2 cores and their greedy output collapsed into
",,,," and "the the the", where a parity test proves little; the trained pair is measured in docs/benchmarks.md.)
"""

from __future__ import annotations

import itertools
import json
import re
import shutil
import subprocess
import sys

import pytest
import torch

from myllm_mc.infer import Generator, SamplingParams
from myllm_mc.infer.draft_model import ModelDrafter, check_draft
from myllm_mc.infer.sampling import GenerationError, filtered_logits
from tests.infer.test_cli import REPO, _env

GREEDY = SamplingParams(temperature=0, max_new_tokens=64, ignore_eos=True, logprobs=True)
SCALE = 0.3


@pytest.fixture(scope="module")
def pair(trained, generator):
    """(target model, draft model, target cfg, draft cfg)."""
    from myllm_mc.infer import inference_config
    from myllm_mc.model import build_model

    cfg = inference_config("configs/tiny.yaml", trained["overrides"], world_size=1)
    draft_cfg = inference_config("configs/tiny.yaml", trained["overrides"] + ["model.num_layers=1"], world_size=1)
    weights = generator.wrapper.model.state_dict()
    target = build_model(cfg)[0]
    target.load_state_dict(weights)
    with torch.no_grad():
        for name, p in target.named_parameters():
            if name.startswith("decoder.layers.1.") and ("linear_proj" in name or "linear_fc2" in name):
                p.mul_(SCALE)
    draft = build_model(draft_cfg)[0]
    draft.load_state_dict({k: v for k, v in weights.items() if k in draft.state_dict()})
    return target.eval(), draft.eval(), cfg, draft_cfg


def _generators(pair, tokenizer, k=4):
    target, draft, cfg, draft_cfg = pair
    drafter = ModelDrafter(Generator(draft, tokenizer, draft_cfg.model, max_batch_size=1, seed=0,
                                     prefix_cache_mib=16))
    spec = Generator(target, tokenizer, cfg.model, max_batch_size=4, seed=7, speculative=k, drafter=drafter,
                     prefix_cache_mib=16)
    return spec, drafter


def test_greedy_with_a_draft_model_equals_plain_decoding_over_64_tokens(pair, generator, corpus_prompts):
    tokenizer = generator.tokenizer
    plain = Generator(pair[0], tokenizer, pair[2].model, max_batch_size=4, seed=7).generate(corpus_prompts, GREEDY)
    spec, drafter = _generators(pair, tokenizer)
    for prompt, expected in zip(corpus_prompts, plain):
        done = spec.generate([prompt], GREEDY)[0]
        assert done.token_ids == expected.token_ids and done.completion_tokens == 64
        assert max(abs(a - b) for a, b in zip(done.logprobs, expected.logprobs)) < 1e-3
    rate, drafted = spec.stats.acceptance_rate, spec.stats.drafted_tokens
    assert drafted >= 100 and 0.1 < rate < 0.6, (rate, drafted)       # measured: 23 % of 252
    assert spec.stats.decode_steps < 3 * 63            # accepted drafts save steps (fewer than one per token)
    # the draft's prefix cache: each call prefills the tail since the last 16-token block, the rest is reused
    stats = drafter.stats()
    assert stats["calls"] > 20 and stats["prefilled_per_call"] < 24 and stats["reused_per_call"] > 16, stats
    assert "draft model: " in drafter.line()


def test_sampled_tokens_with_a_draft_model_follow_the_target_distribution(pair, generator, corpus_prompts):
    """3 tokens at temperature 1, top-k 2: the first from the prefill, the second checked against the draft's guess
    in one forward, the third with it (draft accepted) or in the next step. Each of the 8 sequences' frequency over
    300 seeded runs lies within 4.5 binomial standard deviations of its exact probability under the target (the
    product of the three filtered conditionals). The prompt is the first cut of a corpus text after which the draft's
guess is one of the target's two candidates, so the rule's accept branch runs too."""
    target, draft, tokenizer = pair[0], pair[1], generator.tokenizer
    params = SamplingParams(temperature=1.0, top_k=2, max_new_tokens=3, ignore_eos=True)

    def last_logits(model, ids):
        with torch.inference_mode():
            return model(torch.tensor([ids]), torch.arange(len(ids))[None], None)[0, -1, :tokenizer.vocab_size].float()

    def filtered(ids):
        return torch.softmax(filtered_logits(last_logits(target, ids), params), 0).double()

    def guessable(ids):       # after either first token, the draft's guess is one of the target's two candidates
        return all(filtered(ids + [a])[int(torch.argmax(last_logits(draft, ids + [a])))] > 0
                   for a in torch.nonzero(filtered(ids)).flatten().tolist())

    prompt = next(corpus_prompts[2][:n] for n in range(8, 41) if guessable(corpus_prompts[2][:n]))
    exact = {}
    first = filtered(prompt)
    for a in torch.nonzero(first).flatten().tolist():
        second = filtered(prompt + [a])
        for b in torch.nonzero(second).flatten().tolist():
            third = filtered(prompt + [a, b])
            for c in torch.nonzero(third).flatten().tolist():
                exact[(a, b, c)] = float(first[a] * second[b] * third[c])
    assert len(exact) == 8 and abs(sum(exact.values()) - 1) < 1e-6
    spec, _ = _generators(pair, tokenizer, k=2)
    runs = 300
    counts = {}
    for seed in range(runs):
        out = tuple(spec.generate([prompt], SamplingParams(**{**params.__dict__, "seed": seed}))[0].token_ids)
        counts[out] = counts.get(out, 0) + 1
    assert set(counts) <= set(exact), set(counts) - set(exact)
    for seq, p in exact.items():
        sigma = (p * (1 - p) / runs) ** 0.5
        assert abs(counts.get(seq, 0) / runs - p) <= 4.5 * sigma, (seq, counts.get(seq, 0) / runs, p)
    # the draft was checked at every run's second token, and both accepted and rejected
    assert spec.stats.drafted_tokens >= runs and 0 < spec.stats.accepted_tokens < spec.stats.drafted_tokens


def _other_tokenizer(trained, tmp_path):
    """The test tokenizer with two vocabulary ids swapped: same size, another mapping (another SHA-256)."""
    source = REPO / trained["tokenizer"] if not trained["tokenizer"].startswith("/") else None
    folder = tmp_path / "other-tokenizer"
    shutil.copytree((source or __import__("pathlib").Path(trained["tokenizer"])).parent, folder)
    data = json.loads((folder / "tokenizer.json").read_text())
    vocab = data["model"]["vocab"]
    a, b = itertools.islice((k for k, v in vocab.items() if v >= 300), 2)
    vocab[a], vocab[b] = vocab[b], vocab[a]
    (folder / "tokenizer.json").write_text(json.dumps(data))
    return folder / "tokenizer.json"


def test_a_draft_of_another_tokenizer_is_refused_in_one_line(trained, tmp_path):
    other = _other_tokenizer(trained, tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "myllm_mc.cli", "generate", "configs/tiny.yaml", "--set", *trained["overrides"],
         "--checkpoint", trained["checkpoint"], "--prompt", "Once", "--speculative", "4",
         "--draft-config", "configs/tiny.yaml", "--draft-checkpoint", trained["checkpoint"],
         "--draft-set", *trained["overrides"], f"data.tokenizer={other}"],
        cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "another tokenizer than the target's" in lines[0] and "fix:" in lines[0], lines


def test_generate_with_a_draft_model_prints_its_calls_and_the_acceptance(trained, generator, corpus_prompts):
    """`myllm generate --speculative 4 --draft-config --draft-checkpoint` end to end, the draft being the target's own
    checkpoint (every draft accepted): the plain greedy text, the draft line, the acceptance in the numbers line."""
    prompt = generator.tokenizer.decode(corpus_prompts[2])
    done = subprocess.run(
        [sys.executable, "-m", "myllm_mc.cli", "generate", "configs/tiny.yaml", "--set", *trained["overrides"],
         "--checkpoint", trained["checkpoint"], "--prompt", prompt, "--speculative", "4", "--temperature", "0",
         "--max-new-tokens", "16", "--draft-config", "configs/tiny.yaml", "--draft-set", *trained["overrides"],
         "--draft-checkpoint", trained["checkpoint"]],
        cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    expected = generator.generate([generator.tokenizer.encode(prompt)],
                                  SamplingParams(temperature=0, max_new_tokens=16))[0]
    assert done.stdout.rstrip("\n") == expected.text
    lines = done.stderr.strip().splitlines()
    assert re.match(r"draft model: [1-9]\d* calls, [\d.]+ s, [\d.]+ prompt tokens prefilled", lines[-2]), lines[-2]
    assert re.search(r"speculative 100% of [1-9]\d* drafts accepted$", lines[-1]), lines[-1]


def test_draft_checks_name_the_problem(trained):
    """Without --speculative, over several processes, at TP 2, with a smaller vocabulary: one line each."""
    from myllm_mc.infer import inference_config

    cfg = inference_config("configs/tiny.yaml", trained["overrides"], world_size=1)
    draft = inference_config("configs/tiny.yaml", trained["overrides"] + ["model.num_layers=1"], world_size=1)
    check_draft(cfg, draft, trained["checkpoint"], 4)                    # the good case passes
    cases = [((cfg, draft, trained["checkpoint"], 0), "add --speculative K"),
             ((cfg, draft, trained["checkpoint"], 4, 2), "one process"),
             ((cfg, inference_config("configs/tiny.yaml", trained["overrides"] + ["model.vocab_size=512"],
                                     world_size=1), trained["checkpoint"], 4), "vocabulary rows")]
    for call, words in cases:
        with pytest.raises(GenerationError, match=words) as err:
            check_draft(*call)
        assert "\n" not in str(err.value) and "fix:" in str(err.value)
