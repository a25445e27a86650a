"""What prefix caching and speculative decoding buy on a real checkpoint, each against itself switched off, alternated:

    python -m myllm_mc.bench.generate_features CONFIG --checkpoint DIR [--rounds 3] [--json F]
    python -m myllm_mc.bench.generate_features CONFIG --checkpoint DIR --draft-config CFG --draft-checkpoint DIR2 \
        [--draft-set KEY=VALUE ...] [--draft-tokens K]       # draft-model speculation vs plain, only that

Prefix caching: a first request with a `--prefix-tokens` prompt (text from the shipped corpus) then a second one
with the same prefix and a different question; the second request's time to first token and the prompt tokens
it prefilled, with the cache on and off. Speculative decoding (prompt lookup, k drafts): batch-1 greedy decode of
three chat prompts (one that asks to repeat a passage, one that edits a list, one open story) with and without it:
decode tokens/s, acceptance rate, and whether the tokens are identical (they must be). With a draft model: the
same prompts plus a continuation of corpus text, plain vs drafts of the draft model (infer/draft_model.py), the same
numbers plus the process CPU time per token (steadier than wall time on a shared machine: time waiting for a core
is not counted), the share of the decode time spent in the draft model and the prompt tokens it prefilled per call.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import time
from pathlib import Path

CORPUS = Path(__file__).resolve().parents[2] / "data" / "corpus.jsonl.zst"


def corpus_text(chars: int) -> str:
    import zstandard

    out = []
    with open(CORPUS, "rb") as raw:
        for line in io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(raw), encoding="utf-8"):
            out.append(json.loads(line)["text"])
            if sum(map(len, out)) > chars:
                break
    return " ".join(out)[:chars]


def prefix_rounds(gen, tokenizer, prefix_tokens: int, rounds: int) -> dict:
    from myllm_mc.infer import SamplingParams

    text = corpus_text(prefix_tokens * 8)
    prefix = tokenizer.encode(text)[:prefix_tokens]
    first, second = prefix + tokenizer.encode(" Question: who is it about?"), prefix + tokenizer.encode(" Summary:")
    params = SamplingParams(temperature=0, max_new_tokens=8, ignore_eos=True)
    samples = {"on": [], "off": []}
    for r in range(rounds):
        for mode in (("on", "off") if r % 2 == 0 else ("off", "on")):
            gen.clear_prefix_cache()
            budget = gen.prefix.max_blocks
            if mode == "off":
                gen.prefix.max_blocks = 0
            gen.generate([first], params)
            gen.reset_stats()
            done = gen.generate([second], params)[0]
            gen.prefix.max_blocks = budget
            samples[mode].append({"ttft_s": done.time_to_first_token_s, "prefilled": gen.stats.prefill_tokens,
                                  "reused": done.cached_tokens, "tokens": done.token_ids})
    on, off = samples["on"], samples["off"]
    return {"prefix_tokens": len(prefix), "second_prompt_tokens": len(second),
            "ttft_ms_on": round(1e3 * statistics.median(x["ttft_s"] for x in on), 1),
            "ttft_ms_off": round(1e3 * statistics.median(x["ttft_s"] for x in off), 1),
            "prefilled_on": on[-1]["prefilled"], "prefilled_off": off[-1]["prefilled"], "reused": on[-1]["reused"],
            "same_tokens": all(x["tokens"] == off[0]["tokens"] for x in on + off)}


SPEC_PROMPTS = [
    "Repeat the following passage word for word.\n\n{passage}",
    "Here is a shopping list: apples, bread, milk, eggs, cheese, rice, tomatoes, onions, butter, coffee. "
    "Write the list again with one item per line, numbered.",
    "Write a short story about a lighthouse keeper who finds a message in a bottle.",
]


def speculative_rounds(model, tokenizer, cfg, k: int, new_tokens: int, rounds: int) -> list:
    from myllm_mc.infer import SamplingParams
    from myllm_mc.infer.generator import Generator

    plain = Generator(model, tokenizer, cfg.model, max_batch_size=1, seed=0)
    spec = Generator(model, tokenizer, cfg.model, max_batch_size=1, seed=0, speculative=k)
    passage = corpus_text(500)
    params = SamplingParams(temperature=0, max_new_tokens=new_tokens, ignore_eos=True)
    rows = []
    for template in SPEC_PROMPTS:
        ids = tokenizer.encode_chat([{"role": "user", "content": template.format(passage=passage)}],
                                    add_generation_prompt=True)[0]
        rates = {"plain": [], "spec": []}
        for r in range(rounds):
            for name in (("plain", "spec") if r % 2 == 0 else ("spec", "plain")):
                gen = plain if name == "plain" else spec
                gen.reset_stats()
                out = gen.generate([ids], params)[0]
                rates[name].append((gen.stats.decode_tokens_per_s, out.token_ids, gen.stats.acceptance_rate))
        ours, base = statistics.median(x[0] for x in rates["spec"]), statistics.median(x[0] for x in rates["plain"])
        rows.append({"prompt": template[:40], "prompt_tokens": len(ids), "plain_tok_s": round(base, 2),
                     "speculative_tok_s": round(ours, 2), "speed_up": round(ours / base, 2),
                     "acceptance": round(rates["spec"][-1][2], 3),
                     "identical": rates["spec"][-1][1] == rates["plain"][-1][1]})
    return rows


def draft_rounds(cfg, checkpoint, draft_cfg, draft_checkpoint, k: int, new_tokens: int, rounds: int) -> list:
    """Plain batch-1 greedy decode vs speculation with the draft model's k greedy drafts, alternated, medians."""
    from myllm_mc.infer import SamplingParams, load_generator
    from myllm_mc.infer.draft_model import load_drafter

    plain = load_generator(cfg, checkpoint, max_batch_size=1, seed=0)
    drafter = load_drafter(cfg, draft_cfg, draft_checkpoint, k)
    spec = load_generator(cfg, checkpoint, max_batch_size=1, seed=0, speculative=k, drafter=drafter)
    tokenizer = plain.tokenizer
    passage = corpus_text(500)
    prompts = [("corpus text continued", tokenizer.encode(corpus_text(2000)[1000:1400]))]
    prompts += [(t[:40], tokenizer.encode_chat([{"role": "user", "content": t.format(passage=passage)}],
                                               add_generation_prompt=True)[0]) for t in SPEC_PROMPTS]
    params = SamplingParams(temperature=0, max_new_tokens=new_tokens, ignore_eos=True)
    rows = []
    for name, ids in prompts:
        ids = ids[:cfg.model.seq_length - new_tokens - k - 1]
        runs = {"plain": [], "spec": []}
        for r in range(rounds):
            for mode in (("plain", "spec") if r % 2 == 0 else ("spec", "plain")):
                gen = plain if mode == "plain" else spec
                gen.clear_prefix_cache()
                drafter.generator.clear_prefix_cache()
                gen.reset_stats()
                drafter.reset_stats()
                cpu = time.process_time()
                out = gen.generate([ids], params)[0]
                cpu = time.process_time() - cpu
                s = gen.stats
                runs[mode].append({"tok_s": s.decode_tokens_per_s, "tokens": out.token_ids,
                                   "cpu_ms_per_token": 1e3 * cpu / max(len(out.token_ids), 1),
                                   "acceptance": s.acceptance_rate, "drafted": s.drafted_tokens,
                                   "draft_share": drafter.seconds / s.decode_s if mode == "spec" else 0.0,
                                   "draft_prefilled": drafter.stats()["prefilled_per_call"],
                                   "draft_calls": drafter.calls, "steps": s.decode_steps})
        ours = statistics.median(x["tok_s"] for x in runs["spec"])
        base = statistics.median(x["tok_s"] for x in runs["plain"])
        last = runs["spec"][-1]
        cpu = {m: statistics.median(x["cpu_ms_per_token"] for x in runs[m]) for m in runs}
        best = {m: max(x["tok_s"] for x in runs[m]) for m in runs}     # the least disturbed round of each
        rows.append({"prompt": name, "prompt_tokens": len(ids), "plain_tok_s": round(base, 2),
                     "speculative_tok_s": round(ours, 2), "speed_up": round(ours / base, 2),
                     "plain_cpu_ms_per_token": round(cpu["plain"], 2), "spec_cpu_ms_per_token": round(cpu["spec"], 2),
                     "cpu_speed_up": round(cpu["plain"] / cpu["spec"], 2),
                     "best_plain_tok_s": round(best["plain"], 2), "best_spec_tok_s": round(best["spec"], 2),
                     "best_speed_up": round(best["spec"] / best["plain"], 2),
                     "acceptance": round(last["acceptance"], 3), "drafted": last["drafted"],
                     "decode_steps": last["steps"], "draft_calls": last["draft_calls"],
                     "draft_share": round(statistics.median(x["draft_share"] for x in runs["spec"]), 3),
                     "draft_prefilled_per_call": round(last["draft_prefilled"], 1),
                     "identical": all(x["tokens"] == runs["plain"][0]["tokens"] for x in runs["spec"] + runs["plain"])})
    return rows


def main_draft(args) -> int:
    from myllm_mc.infer import inference_config

    cfg = inference_config(args.config, [], world_size=1)
    draft_cfg = inference_config(args.draft_config, args.draft_overrides, world_size=1)
    before = os.getloadavg()
    rows = draft_rounds(cfg, args.checkpoint, draft_cfg, args.draft_checkpoint, args.draft_tokens, args.new_tokens,
                        args.rounds)
    after = os.getloadavg()
    print(f"speculative decoding with a draft model, k={args.draft_tokens}, greedy, {args.new_tokens} new tokens,"
          f" {args.rounds} alternated rounds, medians (load {before[0]:.1f} before, {after[0]:.1f} after):")
    print("| prompt | tokens | plain tok/s | draft-model tok/s | speed-up | best round plain → draft-model |"
          " CPU ms/token plain → draft-model |"
          " acceptance | decode steps | draft share of decode time | draft prefill/call | identical |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['prompt']}… | {r['prompt_tokens']} | {r['plain_tok_s']:.1f} | {r['speculative_tok_s']:.1f} |"
              f" {r['speed_up']:.2f}× | {r['best_plain_tok_s']:.1f} → {r['best_spec_tok_s']:.1f}"
              f" ({r['best_speed_up']:.2f}×) | {r['plain_cpu_ms_per_token']:.1f} → {r['spec_cpu_ms_per_token']:.1f}"
              f" ({r['cpu_speed_up']:.2f}×) | {100 * r['acceptance']:.0f}% of {r['drafted']} |"
              f" {r['decode_steps']} | {100 * r['draft_share']:.0f}% | {r['draft_prefilled_per_call']:.1f} |"
              f" {r['identical']} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"draft_model": rows, "load": [before, after]}, indent=1))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m myllm_mc.bench.generate_features", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config")
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--prefix-tokens", type=int, default=500)
    parser.add_argument("--draft-tokens", type=int, default=4)
    parser.add_argument("--new-tokens", type=int, default=96)
    parser.add_argument("--json")
    parser.add_argument("--draft-config", help="a draft model's config: measure draft-model speculation only")
    parser.add_argument("--draft-checkpoint")
    parser.add_argument("--draft-set", dest="draft_overrides", action="extend", nargs="+", default=[])
    args = parser.parse_args(argv)
    if args.draft_config:
        return main_draft(args)
    from myllm_mc.infer import inference_config, load_generator

    cfg = inference_config(args.config, [], world_size=1)
    gen = load_generator(cfg, args.checkpoint, max_batch_size=1, seed=0)
    load = os.getloadavg()[0]
    prefix = prefix_rounds(gen, gen.tokenizer, args.prefix_tokens, args.rounds)
    print(f"prefix cache ({args.rounds} alternated rounds, medians; load {load:.1f}): second request of"
          f" {prefix['second_prompt_tokens']} tokens sharing {prefix['prefix_tokens']}: TTFT"
          f" {prefix['ttft_ms_on']:,.0f} ms with the cache vs {prefix['ttft_ms_off']:,.0f} ms without; prefilled"
          f" {prefix['prefilled_on']} vs {prefix['prefilled_off']} tokens ({prefix['reused']} reused); same tokens:"
          f" {prefix['same_tokens']}", flush=True)
    spec = speculative_rounds(gen.wrapper.model, gen.tokenizer, cfg, args.draft_tokens, args.new_tokens, args.rounds)
    print(f"speculative decoding, prompt lookup k={args.draft_tokens}, greedy, {args.new_tokens} new tokens"
          f" (load {os.getloadavg()[0]:.1f}):")
    print("| prompt | tokens | plain tok/s | speculative tok/s | speed-up | acceptance | identical |")
    print("|---|---|---|---|---|---|---|")
    for r in spec:
        print(f"| {r['prompt']}… | {r['prompt_tokens']} | {r['plain_tok_s']:.1f} | {r['speculative_tok_s']:.1f} |"
              f" {r['speed_up']:.2f}× | {100 * r['acceptance']:.0f}% | {r['identical']} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"prefix": prefix, "speculative": spec, "load": load}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
