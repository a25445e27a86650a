#!/usr/bin/env python
"""Generation throughput against the memory-bandwidth bound: batch 1 and batch 8, prefill and decode tokens/s.

    python tools/benchmark_generate.py configs/tiny.yaml                       # the tiny preset
    python tools/benchmark_generate.py configs/tiny.yaml --preset 100m         # a ~100M-parameter shape
    python tools/benchmark_generate.py CONFIG --checkpoint DIR --set ...       # real weights (else random init)

Each batch size: `--prompt-tokens` random prompt tokens per row, `--new-tokens` decoded with end tokens ignored
(so every row runs the full length), one warm-up generation first. The bound is the decode-step bound of
myllm_mc.infer.numbers: rows × bandwidth / (weight bytes + KV bytes read per step), with the bandwidth measured in
this process (STREAM-like copy) on a CPU, or the planner's HBM figure on a GPU. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PRESETS = {
    "tiny": [],
    # 12 layers, hidden 768, 12 heads / 4 KV groups, SwiGLU 2048, vocab 32,768 tied: ~100M parameters
    "100m": ["model.num_layers=12", "model.hidden_size=768", "model.num_attention_heads=12",
             "model.num_query_groups=4", "model.kv_channels=64", "model.ffn_hidden_size=2048",
             "model.vocab_size=32768", "model.seq_length=512", "model.name=100m"],
}


class _IdsOnly:
    """Stands in for a tokenizer when only token counts matter (random weights)."""

    def __init__(self, vocab_size: int):
        self.vocab_size, self.eod, self.pad, self.im_end = vocab_size, 0, 1, 3

    def decode(self, ids):
        return ""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config")
    parser.add_argument("--set", dest="overrides", nargs="+", default=[])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--batch-sizes", default="1,8")
    parser.add_argument("--prompt-tokens", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=64)
    args = parser.parse_args(argv)

    import torch

    from myllm_mc.infer import SamplingParams, inference_config
    from myllm_mc.infer.generator import Generator
    from myllm_mc.infer.numbers import device_bandwidth, run_numbers
    from myllm_mc.model import build_model
    from myllm_mc.parallel.state import init_distributed

    cfg = inference_config(args.config, [*PRESETS[args.preset], *args.overrides], world_size=1)
    init_distributed(cfg)
    if args.checkpoint:
        from myllm_mc.infer import load_model_for_inference
        model = load_model_for_inference(cfg, args.checkpoint)
    else:
        [model] = build_model(cfg)
    params = sum(p.numel() for p in model.parameters())
    bandwidth, source = device_bandwidth(cfg.plan.gpu)
    print(f"{cfg.model.name}: {params / 1e6:.1f}M parameters, {cfg.model.precision}, "
          f"{torch.get_num_threads()} threads; bandwidth {bandwidth / 1e9:.1f} GB/s ({source})", flush=True)
    print("| model | batch | prompt | new | prefill tok/s | decode tok/s | bound tok/s | share of bound | TTFT ms |")
    print("|---|---|---|---|---|---|---|---|---|")
    gen_seed = torch.Generator().manual_seed(0)
    for batch in [int(b) for b in args.batch_sizes.split(",")]:
        gen = Generator(model, _IdsOnly(cfg.model.vocab_size), cfg.model, max_batch_size=batch,
                        max_seq_length=args.prompt_tokens + args.new_tokens, seed=0)
        prompts = torch.randint(4, cfg.model.vocab_size, (batch, args.prompt_tokens), generator=gen_seed).tolist()
        sampling = SamplingParams(temperature=0, max_new_tokens=args.new_tokens, ignore_eos=True)
        gen.generate(prompts, SamplingParams(temperature=0, max_new_tokens=4, ignore_eos=True))   # warm-up
        gen.reset_stats()
        gen.generate(prompts, sampling)
        n = run_numbers(gen, bandwidth, source)
        print(f"| {cfg.model.name} ({params / 1e6:.0f}M) | {batch} | {args.prompt_tokens} | {args.new_tokens} |"
              f" {n.prefill_tokens_per_s:,.0f} | {n.decode_tokens_per_s:,.1f} | {n.decode_bound_tokens_per_s:,.1f} |"
              f" {n.bound_ratio:.2f} | {n.time_to_first_token_s * 1e3:,.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
