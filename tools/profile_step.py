#!/usr/bin/env python
"""Operator profile of one training step (`torch.profiler`, self CPU time by operator), single process, synthetic
data through the real loop (`run_training`, as `myllm benchmark` runs it), plus minor page faults and process CPU
seconds per step (both barely move with the machine's load, unlike wall time).

    python tools/profile_step.py configs/tiny.yaml --set model.compile=true [--step 5] [--top 25]

The step profiled is --step (earlier ones warm up, compile included); docs/benchmarks.md's tables come from it.
"""

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from myllm_mc.bench.measure import bench_overrides  # noqa: E402
from myllm_mc.bench.synthetic import run_tokens, synthetic_overrides  # noqa: E402
from myllm_mc.config import load  # noqa: E402
from myllm_mc.parallel.state import destroy  # noqa: E402
from myllm_mc.train.callbacks import Callback  # noqa: E402
from myllm_mc.train.run import run_training  # noqa: E402


class StepProfile(Callback):
    def __init__(self, step: int):
        self.step, self.profiler, self.last = step, None, (0, 0.0)

    def on_step_end(self, trainer, record, control):
        usage = resource.getrusage(resource.RUSAGE_SELF)
        cpu = usage.ru_utime + usage.ru_stime
        print(f"step {record.step}: {record.step_time:.3f} s wall, optimizer {record.optimizer_time:.3f} s, "
              f"{cpu - self.last[1]:.3f} CPU s, {usage.ru_minflt - self.last[0]:,} minor page faults", flush=True)
        self.last = (usage.ru_minflt, cpu)
        if record.step == self.step - 1:
            self.profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
            self.profiler.__enter__()
        elif record.step == self.step:
            self.profiler.__exit__(None, None, None)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config")
    parser.add_argument("--set", nargs="*", default=[], dest="overrides")
    parser.add_argument("--step", type=int, default=5)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--out", default="runs/benchmark")
    args = parser.parse_args(argv)
    base = load(args.config, args.overrides, world_size=1)
    steps = args.step + 1
    tokens = run_tokens(base, steps)
    cfg = load(args.config, list(args.overrides) + synthetic_overrides(args.out, base.model.vocab_size, tokens)
               + bench_overrides(0, steps, tempfile.mkdtemp()), world_size=1)
    probe = StepProfile(args.step)
    started = time.perf_counter()
    try:
        run_training(cfg, extra_callbacks=[probe])
    finally:
        destroy()
    events = probe.profiler.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    print(f"{time.perf_counter() - started:.1f} s in all; step {args.step}: {total / 1e3:.1f} ms self CPU time "
          f"(compile {cfg.model.compile})")
    for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[:args.top]:
        print(f"{e.key[:64]:64s} {e.self_cpu_time_total / 1e3:9.1f} ms {100 * e.self_cpu_time_total / total:5.1f} %"
              f"  calls {e.count}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
