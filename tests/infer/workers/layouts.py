"""torchrun worker: load the in-test checkpoint at TP=2, then at PP=2 (same process group), generate greedy and
seeded-sampled continuations of ragged prompts; report tokens and this rank's KV cache bytes."""

import json
import sys

from myllm_mc.infer import SamplingParams, inference_config, load_generator
from myllm_mc.plan.inference import kv_cache_bytes
from tests.helpers.torchrun import write_result


def main():
    checkpoint, overrides, prompts = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
    greedy = SamplingParams(temperature=0, max_new_tokens=32, ignore_eos=True)
    sampled = SamplingParams(temperature=1.0, top_p=0.9, seed=11, max_new_tokens=16, ignore_eos=True)
    result = {}
    for name, layout in [("tp2", ["parallel.tensor=2"]), ("pp2", ["parallel.pipeline=2"])]:
        cfg = inference_config("configs/tiny.yaml", overrides + layout, world_size=2)
        gen = load_generator(cfg, checkpoint, max_batch_size=4, seed=7)
        done = gen.generate(prompts + [prompts[1]], [greedy] * len(prompts) + [sampled])
        t, p = cfg.parallel.tensor, cfg.parallel.pipeline
        result[name] = {"tokens": [c.token_ids for c in done], "kv_bytes": gen.kv_peak_bytes(),
                        "kv_planned": kv_cache_bytes(cfg.model, gen.stats.kv_peak_tokens, 4, t, p)}
    write_result(result)


if __name__ == "__main__":
    main()
