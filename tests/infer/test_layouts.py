"""TP=2 and PP=2 generation over gloo (one torchrun launch) give the tokens TP=1 gives from the same checkpoint."""

import json

from myllm_mc.infer import SamplingParams
from tests.helpers.torchrun import run_torchrun


def test_tensor_and_pipeline_parallel_generation_match_one_process(trained, generator, corpus_prompts):
    greedy = SamplingParams(temperature=0, max_new_tokens=32, ignore_eos=True)
    sampled = SamplingParams(temperature=1.0, top_p=0.9, seed=11, max_new_tokens=16, ignore_eos=True)
    generator.reset_stats()
    expected = [c.token_ids for c in generator.generate(corpus_prompts + [corpus_prompts[1]],
                                                        [greedy] * 3 + [sampled])]
    ranks = run_torchrun("tests/infer/workers/layouts.py", nproc=2, timeout=600,
                         args=[trained["checkpoint"], json.dumps(trained["overrides"]), json.dumps(corpus_prompts)])
    one_rank_bytes = generator.kv_peak_bytes()
    for rank in ranks:
        for layout in ("tp2", "pp2"):
            assert rank[layout]["tokens"] == expected, layout
            # each rank holds half the cache: half the KV heads (TP) or half the layers (PP)
            assert rank[layout]["kv_bytes"] == rank[layout]["kv_planned"] == one_rank_bytes // 2
