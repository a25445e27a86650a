"""Our generation engine against transformers' `generate` on the same weights, alternated in one process:

    python -m myllm_mc.bench.generate_ab CONFIG --checkpoint DIR --hf HF_DIR [--batch 1 8] [--rounds 3]
    (HF_DIR: `myllm export hf CONFIG --checkpoint DIR --out HF_DIR`, the same weights in fp32)

Why alternated: on a shared machine the load moves by minutes; each round times ours then theirs (or the
reverse, alternately) for every batch size, and the table reports medians over rounds with the load average
seen. On a shared machine `--threads 1` avoids
the stalls of a 2-thread parallel region whose second thread waits for a core. Decode tokens/s is counted the same way on both sides: tokens after the first of each row ÷ time after
the first token (ours: the engine's decode steps; transformers: generate(N new) − generate(1 new)). Greedy,
end tokens ignored, random prompt ids of one length (no padding on either side).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Dict, List, Sequence

import torch


def hf_decode_rate(model, prompts: torch.Tensor, new_tokens: int) -> Dict[str, float]:
    """{decode_tokens_per_s, first_token_s} of transformers' greedy generate on `prompts` [rows, length]."""
    kwargs = dict(do_sample=False, attention_mask=torch.ones_like(prompts), pad_token_id=0)
    with torch.inference_mode():
        start = time.perf_counter()
        model.generate(prompts, max_new_tokens=1, min_new_tokens=1, **kwargs)
        first = time.perf_counter() - start
        start = time.perf_counter()
        out = model.generate(prompts, max_new_tokens=new_tokens, min_new_tokens=new_tokens, **kwargs)
        total = time.perf_counter() - start
    rows = prompts.size(0)
    return {"decode_tokens_per_s": rows * (new_tokens - 1) / max(total - first, 1e-9), "first_token_s": first,
            "tokens": out[:, prompts.size(1):].tolist()}


def ours_decode_rate(gen, prompts: torch.Tensor, new_tokens: int) -> Dict[str, float]:
    from myllm_mc.infer import SamplingParams

    gen.reset_stats()
    done = gen.generate(prompts.tolist(), SamplingParams(temperature=0, max_new_tokens=new_tokens, ignore_eos=True))
    s = gen.stats
    return {"decode_tokens_per_s": s.decode_tokens_per_s, "first_token_s": sum(s.first_token_s) / len(s.first_token_s),
            "tokens": [c.token_ids for c in done], "kv_bytes": gen.kv_peak_bytes()}


def run(cfg, checkpoint, hf_dir, batches: Sequence[int], rounds: int, prompt_tokens: int, new_tokens: int,
        forward: str = "auto") -> List[dict]:
    from transformers import AutoModelForCausalLM

    from myllm_mc.infer import load_model_for_inference, load_tokenizer
    from myllm_mc.infer.generator import Generator
    from myllm_mc.parallel.state import init_distributed

    init_distributed(cfg)
    model = load_model_for_inference(cfg, checkpoint)
    gen = Generator(model, load_tokenizer(cfg), cfg.model, max_batch_size=max(batches), seed=0, forward=forward)
    hf = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32).eval()
    rng = torch.Generator().manual_seed(0)
    prompts = torch.randint(8, cfg.model.vocab_size, (max(batches), prompt_tokens), generator=rng)
    ours_decode_rate(gen, prompts[:1], 4)                      # warm-up both
    hf_decode_rate(hf, prompts[:1], 4)
    rows = []
    for batch in batches:
        samples = {"ours": [], "hf": [], "load": []}
        for r in range(rounds):
            order = ("ours", "hf") if r % 2 == 0 else ("hf", "ours")
            for side in order:
                samples["load"].append(os.getloadavg()[0])
                if side == "ours":
                    result = ours_decode_rate(gen, prompts[:batch], new_tokens)
                    kv = result["kv_bytes"]
                else:
                    result = hf_decode_rate(hf, prompts[:batch], new_tokens)
                samples[side].append(result)
        ours = statistics.median(x["decode_tokens_per_s"] for x in samples["ours"])
        theirs = statistics.median(x["decode_tokens_per_s"] for x in samples["hf"])
        same = sum(a == b for a, b in zip(samples["ours"][-1]["tokens"], samples["hf"][-1]["tokens"]))
        rows.append({"batch": batch, "ours_tok_s": round(ours, 2), "hf_tok_s": round(theirs, 2),
                     "ratio": round(ours / theirs, 3), "ours_all": [round(x["decode_tokens_per_s"], 2)
                                                                     for x in samples["ours"]],
                     "hf_all": [round(x["decode_tokens_per_s"], 2) for x in samples["hf"]],
                     "ours_ttft_ms": round(1e3 * statistics.median(x["first_token_s"] for x in samples["ours"]), 1),
                     "hf_ttft_ms": round(1e3 * statistics.median(x["first_token_s"] for x in samples["hf"]), 1),
                     "rows_identical": f"{same}/{batch}", "kv_bytes": kv,
                     "load_min": round(min(samples["load"]), 1), "load_max": round(max(samples["load"]), 1)})
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m myllm_mc.bench.generate_ab", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config")
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--hf", required=True, help="the same weights exported with `myllm export hf`")
    parser.add_argument("--set", dest="overrides", nargs="+", default=[])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--prompt-tokens", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--forward", choices=["auto", "megatron", "plain"], default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads for both (default torch's)")
    parser.add_argument("--json", help="write the rows here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from myllm_mc.infer import inference_config

    cfg = inference_config(args.config, args.overrides, world_size=1)
    rows = run(cfg, args.checkpoint, args.hf, args.batch, args.rounds, args.prompt_tokens, args.new_tokens,
               args.forward)
    print(f"{cfg.model.name}, fp32, {torch.get_num_threads()} threads, prompt {args.prompt_tokens}, new"
          f" {args.new_tokens}, {args.rounds} alternated rounds (medians), forward={args.forward}")
    print("| batch | ours decode tok/s | transformers tok/s | ours / transformers | TTFT ms ours / hf |"
          " greedy rows identical | KV cache | load avg |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['batch']} | {r['ours_tok_s']:,.1f} | {r['hf_tok_s']:,.1f} | {r['ratio']:.2f}× |"
              f" {r['ours_ttft_ms']:,.0f} / {r['hf_ttft_ms']:,.0f} | {r['rows_identical']} |"
              f" {r['kv_bytes'] / 2**20:,.2f} MiB | {r['load_min']}–{r['load_max']} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
