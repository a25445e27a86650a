"""Decode throughput of a preset against the memory-bandwidth bound, with no checkpoint and no tokenizer file:

    python -m myllm_mc.bench.decode configs/myllm_1b.yaml --batch 1 8 [--set model.precision=bf16] [--json F]

The model is built from the config with its random initial weights (decode does the same work whatever the
values) and a word-level tokenizer of the config's vocabulary size (`synthetic.write_tokenizer`). Each batch size
runs `--new-tokens` greedy tokens after a `--prompt-tokens` prompt per row through `myllm_mc.infer.Generator`
(megatron-core's inference wrapper and static KV cache), after one short warm-up generation. The figures are
`infer.numbers.run_numbers`: the same ones `myllm generate` prints, with the bound from the planner's HBM figure on a
GPU and a measured copy bandwidth on a CPU. The prepared GPU check runs this for the 1B preset at batch 1 and 8.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Sequence

import torch

from myllm_mc.config import ConfigError
from myllm_mc.config.arguments import add_config_arguments
from myllm_mc.data.tokenizer import Tokenizer
from myllm_mc.infer import Generator, SamplingParams
from myllm_mc.infer.loader import inference_config, load_model_for_inference
from myllm_mc.infer.numbers import device_bandwidth, run_numbers
from myllm_mc.parallel.state import destroy, init_distributed

from .synthetic import write_tokenizer


def measure(cfg, batches: Sequence[int], prompt_tokens: int = 128, new_tokens: int = 128, seed: int = 0) -> list:
    """[{batch, decode_tokens_per_s, bound_tokens_per_s, bound_ratio, prefill_tokens_per_s, ...}] (one process)."""
    init_distributed(cfg, seed=seed)
    model = load_model_for_inference(cfg, None)
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = Tokenizer(write_tokenizer(Path(tmp) / "tokenizer.json", cfg.model.vocab_size))
    length = prompt_tokens + new_tokens
    generator = Generator(model, tokenizer, cfg.model, max_batch_size=max(batches), max_seq_length=length, seed=seed)
    bandwidth, source = device_bandwidth(cfg.plan.gpu)
    rng = torch.Generator().manual_seed(seed)
    # ids above the special tokens, so no prompt ends a request; greedy decoding may still stop early (counted)
    prompts = torch.randint(8, cfg.model.vocab_size, (max(batches), prompt_tokens), generator=rng).tolist()
    generator.generate(prompts[:1], SamplingParams(temperature=0.0, max_new_tokens=4))           # warm-up
    rows = []
    for batch in batches:
        generator.reset_stats()
        generator.generate(prompts[:batch], SamplingParams(temperature=0.0, max_new_tokens=new_tokens))
        numbers = run_numbers(generator, bandwidth, source)
        rows.append({"batch": batch, "prompt_tokens": prompt_tokens, "new_tokens": new_tokens,
                     "decode_tokens": generator.stats.decode_tokens,
                     "decode_tokens_per_s": round(numbers.decode_tokens_per_s, 2),
                     "bound_tokens_per_s": round(numbers.decode_bound_tokens_per_s, 2),
                     "bound_ratio": round(numbers.bound_ratio, 4),
                     "prefill_tokens_per_s": round(numbers.prefill_tokens_per_s, 1),
                     "time_to_first_token_s": round(numbers.time_to_first_token_s, 4),
                     "kv_bytes": numbers.kv_bytes_measured, "kv_bytes_planned": numbers.kv_bytes_planned,
                     "bandwidth_source": source, "bandwidth_gb_per_s": round(bandwidth / 1e9, 1),
                     "precision": cfg.model.precision})
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m myllm_mc.bench.decode", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8], help="batch sizes (rows decoded together)")
    parser.add_argument("--prompt-tokens", type=int, default=128)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--json", help="write the rows here")
    args = parser.parse_args(argv)
    if min(args.batch) < 1 or args.prompt_tokens < 1 or args.new_tokens < 2:
        print("decode: --batch, --prompt-tokens must be ≥ 1 and --new-tokens ≥ 2 — fix: e.g. --batch 1 8",
              file=sys.stderr)
        return 2
    try:
        cfg = inference_config(args.config, args.overrides, world_size=1)
    except ConfigError as err:
        print(f"decode: {err}", file=sys.stderr)
        return 2
    if args.prompt_tokens + args.new_tokens > cfg.model.seq_length:
        print(f"decode: {args.prompt_tokens} + {args.new_tokens} tokens exceed model.seq_length"
              f" {cfg.model.seq_length} — fix: fewer --prompt-tokens/--new-tokens", file=sys.stderr)
        return 2
    rows = measure(cfg, args.batch, args.prompt_tokens, args.new_tokens)
    for row in rows:
        print(f"decode batch {row['batch']}: {row['decode_tokens_per_s']:,.1f} tok/s, bound"
              f" {row['bound_tokens_per_s']:,.1f} tok/s ({row['bandwidth_source']}"
              f" {row['bandwidth_gb_per_s']} GB/s) = {100 * row['bound_ratio']:.0f}% of it;"
              f" prefill {row['prefill_tokens_per_s']:,.0f} tok/s")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    destroy()
    return 0


if __name__ == "__main__":
    sys.exit(main())
