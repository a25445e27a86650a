"""What prefix caching and speculative decoding buy on a real checkpoint, each against itself switched off, alternated:

    python -m myllm_mc.bench.generate_features CONFIG --checkpoint DIR [--rounds 3] [--json F]

Prefix caching: a first request with a `--prefix-tokens` prompt (text from the shipped corpus) then a second one
with the same prefix and a different question; the second request's time to first token and the prompt tokens
it prefilled, with the cache on and off. Speculative decoding (prompt lookup, k drafts): batch-1 greedy decode of
three chat prompts (one that asks to repeat a passage, one that edits a list, one open story) with and without it:
decode tokens/s, acceptance rate, and whether the tokens are identical (they must be).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
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
    args = parser.parse_args(argv)
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
