#!/usr/bin/env python
"""Ours against the compiled plain-PyTorch baseline, alternated in one process, for a ratio a shared machine can
trust: `myllm benchmark --baseline` times each once, so a load burst during one of them decides the ratio.

    python tools/benchmark_alternate.py configs/tiny.yaml --rounds 4 --warmup 3 --steps 8 \
        --variant eager=model.compile=false --variant compiled=model.compile=true

Each round runs `run_training` once per variant (the step `myllm train` runs, through
`bench.measure.run_benchmark`; a variant is a name and comma-separated overrides) and then
`bench.baseline_torch.run_torch_baseline`, and prints each median tokens/s, its ratio to the baseline of the same
round and the 1-minute load average before it; the summary gives, per variant, the best and the median of the
per-round ratios and of tokens/s.
Single process (one rank, the machine's threads), synthetic data; `model.compile: auto` is decided for the
configured run, as `myllm benchmark` does (bench.measure.compile_override).
"""

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from myllm_mc.bench.baseline_torch import run_torch_baseline  # noqa: E402
from myllm_mc.bench.measure import bench_overrides, compile_override, run_benchmark  # noqa: E402
from myllm_mc.bench.synthetic import run_tokens, synthetic_overrides  # noqa: E402
from myllm_mc.config import load  # noqa: E402
from myllm_mc.parallel.state import destroy  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config")
    parser.add_argument("--set", nargs="*", default=[], dest="overrides")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=K=V,K=V",
                        help="one of ours per round (default: ours=the config as given)")
    parser.add_argument("--out", default="runs/benchmark")
    args = parser.parse_args(argv)
    base = load(args.config, args.overrides, world_size=1)
    tokens = run_tokens(base, args.warmup + args.steps)
    overrides = (list(args.overrides) + synthetic_overrides(args.out, base.model.vocab_size, tokens)
                 + compile_override(base) + bench_overrides(args.warmup, args.steps, tempfile.mkdtemp()))
    variants = {}
    for spec in args.variant or ["ours="]:
        name, _, sets = spec.partition("=")
        variants[name] = [item for item in sets.split(",") if item]
    ours = {name: [] for name in variants}
    ratios = {name: [] for name in variants}
    theirs = []
    try:
        for index in range(1, args.rounds + 1):
            line = []
            for name, sets in variants.items():
                before = os.getloadavg()[0]
                cfg = load(args.config, overrides + sets, world_size=1)
                ours[name].append(run_benchmark(cfg, args.warmup)["tokens_per_s"])
                line.append(f"{name} {ours[name][-1]:,.0f} (load {before:.1f})")
            before = os.getloadavg()[0]
            baseline = run_torch_baseline(cfg, args.warmup, args.steps, compile=True)
            theirs.append(baseline["tokens_per_s"])
            for name in variants:
                ratios[name].append(ours[name][-1] / theirs[-1])
            print(f"round {index} tokens/s: {' | '.join(line)} | baseline {theirs[-1]:,.0f} (load {before:.1f}, "
                  f"{baseline['compile_note']}) | ours/baseline "
                  + ", ".join(f"{name} {ratios[name][-1]:.2f}×" for name in variants), flush=True)
    finally:
        destroy()
    print(f"baseline over {len(theirs)} rounds: best {max(theirs):,.0f}, median {statistics.median(theirs):,.0f} tokens/s")
    for name in variants:
        r, t = ratios[name], ours[name]
        print(f"{name}: ours/baseline best {max(r):.2f}×, median {statistics.median(r):.2f}×, worst {min(r):.2f}× | "
              f"tokens/s best {max(t):,.0f}, median {statistics.median(t):,.0f} | ratio of bests {max(t) / max(theirs):.2f}×")
    return 0


if __name__ == "__main__":
    sys.exit(main())
