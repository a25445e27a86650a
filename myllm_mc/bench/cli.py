"""`myllm benchmark CONFIG [--set k=v ...] [--nproc-per-node N] [--sweep KEY=V1,V2 ...] [--baseline]
[--megatron-lm PATH]`: tokens/s, TFLOP/s and MFU per GPU, time shares and peak memory of the real training step.

Each run is `run_training` (what `myllm train` runs) for --warmup + --steps steps with evaluation and
checkpoints off; only the steps after the warm-up are timed. --sweep runs every valid combination of the given
values in one torchrun launch (invalid ones are listed as skipped with the reason), writes sweep.csv, sweep.json
and sweep.png under --out, and names the fastest layout per GPU whose measured memory fits --memory-limit-gib. Each later run is also shown as a
multiple of the first one's tokens/s per GPU and memory, so put the reference first: e.g. a dense model against
its MoE sibling at EP 1 and 2, `configs/tiny_moe.yaml --sweep model.moe.num_experts=0,16 parallel.expert=1,2`.
On a shared machine, repeat it in rounds with a leading axis that keeps the layout (`training.seed=1,2,3`): each
run is then compared with its own round's reference, and the median of the per-round ratios is printed.
--baseline adds a plain-PyTorch model of the same architecture on one device; --megatron-lm PATH runs
Megatron-LM's pretrain_gpt.py on the same configuration with mock data. Both are reported as ratios to ours.

Exit codes: 0 at least one run measured; 1 none did; 2 bad config or arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

from myllm_mc.config import load
from myllm_mc.config.arguments import add_config_arguments
from myllm_mc.parallel.hardware import cuda_available  # hardware is decided in parallel/, once
from myllm_mc.parallel.launch import (
    launcher_local_rank,
    launcher_rank,
    launcher_world_size,
    local_device,
    relaunch_under_torchrun,
)

from .measure import bench_overrides, compile_override, layout_label
from .megatron_lm import run_megatron_lm
from .report import best_layout, format_run, mark_fits, plot_sweep, relative_rounds, relative_to_first, write_tables
from .sweep import parse_sweep, plan_sweep
from .synthetic import run_tokens, synthetic_overrides


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="myllm benchmark", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser)
    parser.add_argument("--nproc-per-node", type=int, default=None, help="processes to start with torchrun")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (default 2)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps (default 5)")
    parser.add_argument("--sweep", nargs="+", default=[], metavar="KEY=V1,V2",
                        help="e.g. parallel.tensor=1,2 parallel.pipeline=1,2 training.micro_batch_size=1,2,4")
    parser.add_argument("--synthetic-data", action="store_true",
                        help="random tokens through the same data path instead of data.blend (no corpus needed)")
    parser.add_argument("--baseline", action="store_true", help="also time the same model in plain PyTorch")
    parser.add_argument("--no-compile", action="store_true", help="plain-PyTorch baseline without torch.compile")
    parser.add_argument("--megatron-lm", metavar="PATH", default=None,
                        help="a Megatron-LM checkout: also time its pretrain_gpt.py on the same configuration")
    parser.add_argument("--memory-limit-gib", type=float, default=None,
                        help="memory per GPU a layout must fit (default: the device's memory; CPU: RAM / ranks)")
    parser.add_argument("--out", default="runs/benchmark", help="where tables, chart and logs go")
    return parser


def main(argv) -> int:
    args = _parser().parse_args(argv)
    if args.warmup < 0 or args.steps < 1:
        print("myllm benchmark: --steps must be at least 1 and --warmup at least 0", file=sys.stderr)
        return 2
    launched = launcher_world_size()
    world = launched or args.nproc_per_node or args.world_size or 1
    out = Path(args.out)
    plan = plan_sweep(args.config, args.overrides, parse_sweep(args.sweep), world)
    for skip in plan.skipped:
        print(f"skipped {' '.join(skip['overrides'])}: {skip['reason']}")
    if not plan.runs:
        print("myllm benchmark: no valid combination to run", file=sys.stderr)
        return 1
    runs = _run_specs(args, plan, out)
    started = time.perf_counter()
    if launched is None and world > 1:
        rows = _launch(args, runs, world, out)
    else:
        # torch and megatron-core load here, in a rank (or the one process): the launching parent only lays out
        # the runs, starts torchrun and reads the results (torch comes in at the end, for the device's memory)
        from myllm_mc.parallel.state import destroy

        from .worker import run_plan
        try:
            rows = run_plan(_plan_json(args, runs, world, out))
        finally:
            destroy()
        if launched and launcher_rank() != 0:
            return 0
    return _finish(args, plan, rows, world, out, time.perf_counter() - started)


def _run_specs(args, plan, out: Path) -> list:
    """Each run's full override list: the user's, the swept ones, synthetic data if asked, the benchmark's own."""
    data = {}
    if args.synthetic_data:
        needed = {}
        for _, cfg in plan.runs:
            tokens = run_tokens(cfg, args.warmup + args.steps)
            needed[cfg.model.vocab_size] = max(needed.get(cfg.model.vocab_size, 0), tokens)
        data = {vocab: synthetic_overrides(out, vocab, tokens) for vocab, tokens in needed.items()}
    return [{"swept": swept,
             "overrides": list(args.overrides) + swept + data.get(cfg.model.vocab_size, []) + compile_override(cfg)
             + bench_overrides(args.warmup, args.steps, str(out / "runs" / layout_label(cfg)))}
            for swept, cfg in plan.runs]


def _plan_json(args, runs, world: int, out: Path) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    return {"config": args.config, "world_size": world, "warmup": args.warmup, "runs": runs,
            "results": str(out / "results.json")}


def _launch(args, runs, world: int, out: Path) -> list:
    """One torchrun launch for every run; rows come back through the results file rank 0 keeps current."""
    plan = _plan_json(args, runs, world, out)
    Path(plan["results"]).unlink(missing_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(plan, f)
    code = relaunch_under_torchrun(["-m", "myllm_mc.bench.worker", f.name], world)
    os.unlink(f.name)
    rows = json.loads(Path(plan["results"]).read_text()) if Path(plan["results"]).is_file() else []
    for run in runs[len(rows):]:          # a launch that died takes the runs it had not reached with it
        rows.append({"status": "failed", "swept": run["swept"], "reason": f"torchrun exited {code} before this run"})
    return rows


def _gpu() -> int:
    """This rank's GPU, chosen as init_distributed chooses it (torchrun, srun or mpirun local rank)."""
    import torch  # torch where used in this module: see main
    return local_device(launcher_local_rank(), torch.cuda.device_count())


def _memory_limit(args, world: int):
    if args.memory_limit_gib is not None:
        return int(args.memory_limit_gib * 2**30), f"--memory-limit-gib {args.memory_limit_gib:g}"
    import torch
    if cuda_available():
        return int(torch.cuda.get_device_properties(_gpu()).total_memory), "the GPU's memory"
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return ram // world, f"RAM / {world} rank(s)"


def _finish(args, plan, rows, world: int, out: Path, seconds: float) -> int:
    limit, limit_label = _memory_limit(args, world)
    mark_fits(rows, limit)
    best = best_layout(rows, limit)
    baselines = _baselines(args, best, world, out) if best else []
    extra = {"config": args.config, "overrides": args.overrides, "world_size": world, "warmup": args.warmup,
             "steps": args.steps, "memory_limit": limit, "memory_limit_label": limit_label,
             "best": best["layout"] if best else None, "baselines": baselines, "seconds": seconds,
             "relative": relative_to_first(rows), "environment": environment()}
    extra["relative_rounds"] = relative_rounds(extra["relative"])
    csv_path, json_path = write_tables(rows, plan.skipped, out, extra)
    chart = plot_sweep(rows, out / "sweep.png", f"{args.config} on {world} rank(s): {extra['environment']['device']}",
                       limit)
    print(f"\n{'layout':<34} {'tokens/s/GPU':>13} {'TFLOP/s/GPU':>12} {'MFU':>7} {'memory/GPU':>11}"
          f" {'planner':>9} {'ratio':>6}")
    for row in rows:
        if row.get("status") != "ok":
            print(f"{' '.join(row['swept']) or 'run':<34} {row['status']}: {row['reason']}")
            continue
        mfu = f"{row['mfu'] * 100:.1f}%" if row["mfu"] is not None else "-"
        print(f"{row['layout']:<34} {row['tokens_per_s_per_gpu']:>13,.0f} {row['tflops_per_gpu']:>12.4g} {mfu:>7}"
              f" {row['memory_max'] / 2**20:>8,.0f}MiB {row['planner_memory'] / 2**20:>6,.0f}MiB"
              f" {row['memory_ratio']:>5.2f}×{'' if row['fits'] else '  (does not fit)'}")
    for skip in plan.skipped:
        print(f"{' '.join(skip['overrides']):<34} skipped: {skip['reason']}")
    for rel in extra["relative"]:
        planner = f" (planner {rel['planner_memory']:.2f}×)" if rel["planner_memory"] else ""
        print(f"{rel['layout']:<34} vs {rel['reference']}: tokens/s/GPU {rel['tokens_per_s_per_gpu']:.2f}× (fastest"
              f" steps {rel['tokens_per_s_best_step']:.2f}×), memory {rel['memory']:.2f}×{planner}")
    for rel in extra["relative_rounds"]:
        print(f"{rel['layout']:<34} vs {rel['reference']} over {rel['rounds']} rounds: tokens/s/GPU median"
              f" {rel['tokens_per_s_per_gpu']:.2f}× ({rel['low']:.2f}–{rel['high']:.2f}×), fastest steps median"
              f" {rel['tokens_per_s_best_step']:.2f}×")
    ok = [r for r in rows if r.get("status") == "ok"]
    if best:
        print(f"best layout that fits ({limit_label}): {best['layout']} — "
              + "\n  ".join(format_run(best)[1:3]))
    ratios = []
    for b in baselines:
        if b.get("status") == "ok":
            print(f"baseline {b['name']}: {b['tokens_per_s']:,.0f} tokens/s{' per device' if b.get('per_device') else ''}"
                  f" — ours/baseline {b['ratio']:.2f}× ({b.get('note', '')})")
            ratios.append(f"{b['short']} {b['ratio']:.2f}×")
        else:
            print(f"baseline {b['name']}: not measured — {b['reason']}")
            ratios.append(f"{b['short']} n/a")
    print(f"wrote {csv_path}, {json_path}, {chart}")
    summary = (f"benchmark: {len(ok)} run(s) measured, {len(plan.skipped) + len(rows) - len(ok)} skipped/failed"
               f" in {seconds:.0f} s; best {best['layout']} {best['tokens_per_s_per_gpu']:,.0f} tokens/s/GPU"
               if best else f"benchmark: no run measured ({len(plan.skipped)} skipped)")
    if best and best["mfu"] is not None:
        summary += f", MFU {best['mfu'] * 100:.1f}%"
    print(summary + (f"; ours/baseline: {', '.join(ratios)}" if ratios else ""))
    return 0 if ok else 1


def _baselines(args, best: dict, world: int, out: Path) -> list:
    """Peer baselines on the best layout's configuration, each with ours/theirs."""
    results = []
    cfg = load(args.config, list(args.overrides) + best["swept"], world_size=world)
    if args.baseline:
        from .baseline_torch import run_torch_baseline  # imports torch
        threads = max(1, int(os.environ.get("OMP_NUM_THREADS", 0)) or (os.cpu_count() or 1) // world)
        print(f"baseline: plain PyTorch on one device ({threads} thread(s) on CPU), "
              f"{'eager' if args.no_compile else 'torch.compile, eager if it fails'} ...", flush=True)
        torch_row = run_torch_baseline(cfg, args.warmup, args.steps, compile=not args.no_compile, threads=threads)
        torch_row.update(status="ok", short="plain PyTorch", per_device=True, note=torch_row["compile_note"],
                         ratio=best["tokens_per_s_per_gpu"] / torch_row["tokens_per_s"])
        results.append(torch_row)
    if args.megatron_lm:
        print(f"baseline: Megatron-LM pretrain_gpt.py from {args.megatron_lm} on {world} rank(s) ...", flush=True)
        row = run_megatron_lm(args.megatron_lm, cfg, world, args.warmup, args.steps, out / "megatron_lm.log")
        row["short"] = "Megatron-LM"
        if row["status"] == "ok":
            row.update(ratio=best["tokens_per_s"] / row["tokens_per_s"], note="same layout, mock data")
        results.append(row)
    return results


def environment() -> dict:
    """What the figures were measured on: recorded with them, so a number never loses its context."""
    import torch
    try:
        megatron_version = version("megatron-core")
    except Exception:
        megatron_version = "unknown"
    device = torch.cuda.get_device_name(_gpu()) if cuda_available() else (_cpu_name() or platform.processor())
    return {"date": time.strftime("%Y-%m-%d"), "device": device, "cpu_count": os.cpu_count(),
            "torch": torch.__version__, "megatron_core": megatron_version, "python": platform.python_version(),
            "cuda": torch.version.cuda}


def _cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""
