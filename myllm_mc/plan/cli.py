"""`myllm plan`: explain a config's numbers, list the layouts that fit, or derive a config from budgets.

    myllm plan CONFIG [--set K=V ...] [--json]                  every derived figure, each with its why
    myllm plan CONFIG --compare RUN_DIR [--json]                predicted / measured / ratio for what a run measured
    myllm plan --layouts CONFIG [--gpus 8] [--gpu h100]         valid layouts, predicted memory, a recommendation
    myllm plan --derive --params 1.05e9 --tokens 27.54e9        a model shape, batch, steps and layout as YAML
    myllm plan --derive --hours 12 --gpus 8 --gpu h100 --mfu 0.5

Pure Python: nothing here imports torch or megatron-core, so it runs anywhere in well under a second.
"""

from __future__ import annotations

import argparse
import json
from typing import Optional

import yaml

from myllm_mc.config import ConfigError, load
from myllm_mc.config.arguments import add_config_arguments

from .compare import as_json, compare, render, run_world_size
from .derive import derive
from .hardware import gpu_spec
from .layouts import USABLE_FRACTION, layout_options, recommendation
from .report import as_json_dict, figures, layout_name, render_text

GiB = 2**30


def _derive_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="myllm plan --derive", description="Propose a config from budgets.")
    parser.add_argument("--derive", action="store_true", required=True)
    parser.add_argument("--params", type=float, help="parameter budget, e.g. 1.05e9")
    parser.add_argument("--hours", type=float, help="compute budget in wall-clock hours on --gpus × --gpu at --mfu")
    parser.add_argument("--tokens", type=float, help="training tokens, e.g. 27.54e9")
    parser.add_argument("--tokens-per-param", type=float, help="tokens per parameter instead of --tokens")
    parser.add_argument("--gpu", default="h100", help="GPU model (a100, h100, h200, b200)")
    parser.add_argument("--gpus", type=int, default=8, help="number of GPUs")
    parser.add_argument("--mfu", type=float, default=0.5, help="model FLOPs utilisation to plan with")
    parser.add_argument("--vocab", type=int, default=65536, help="vocabulary size")
    parser.add_argument("--context", type=int, default=8192, help="sequence length")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def _config_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="myllm plan", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser)
    parser.add_argument("--layouts", action="store_true", help="list every valid layout with predicted memory")
    parser.add_argument("--gpus", type=int, default=None, help="GPU count for --layouts (default: the config's)")
    parser.add_argument("--gpu", default=None, help="GPU model (a100, h100, h200, b200); default plan.gpu")
    parser.add_argument("--compare", metavar="RUN_DIR", default=None,
                        help="a run's logging.dir or benchmark --out: predicted vs measured for every figure it holds")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def _print_json(data) -> None:
    print(json.dumps(data, indent=1, ensure_ascii=False))


def run_derive(args) -> int:
    plan = derive(params=args.params, tokens=args.tokens, tokens_per_param=args.tokens_per_param,
                  hours=args.hours, gpus=args.gpus, gpu=args.gpu, mfu=args.mfu, vocab=args.vocab,
                  context=args.context)
    if args.json:
        _print_json({"figures": {name: {"value": value, "why": why} for name, value, why in plan.reasons},
                     "config": plan.config})
        return 0
    print("myllm plan --derive: rules — head dim 128, hidden a multiple of 256, layers ≈ hidden/64"
          " (band /80–/48) tuned to the parameter target, GQA ≤ 8 heads per KV head, FFN 8/3·h → ×256")
    for name, value, why in plan.reasons:
        print(f"  {name:<20} {value:>16}  {why}")
    print("\n# config (save as a .yaml file; `myllm plan FILE` explains it)")
    print(yaml.safe_dump(plan.config, sort_keys=False), end="")
    return 0


def run_layouts(cfg, gpus: int, gpu_name: str, as_json: bool) -> int:
    gpu = gpu_spec(gpu_name)
    options, rejected = layout_options(cfg, gpus, gpu_name)
    advice = recommendation(options, gpu_name)
    usable = gpu.memory_gib * USABLE_FRACTION
    if as_json:
        _print_json({
            "gpus": gpus, "gpu": gpu.name, "usable_gib": usable, "recommendation": advice,
            "recommended": layout_name(options[0].parallel) if options and options[0].fits else None,
            "layouts": [{"layout": layout_name(o.parallel), "tensor": o.parallel.tensor,
                         "pipeline": o.parallel.pipeline, "virtual_pipeline": o.parallel.virtual_pipeline,
                         "context": o.parallel.context, "data": o.parallel.data,
                         "sequence_parallel": o.parallel.sequence_parallel, "microbatches": o.microbatches,
                         "bubble": o.bubble, "fits": o.fits, "memory_bytes": o.memory.total,
                         "memory": {k: getattr(o.memory, k) for k in ("weights", "gradients", "optimizer_states",
                                                                      "activations", "logits", "total")}}
                        for o in options],
            "rejected": rejected})
        return 0
    t = cfg.training
    print(f"layouts for {cfg.model.name} on {gpus} × {gpu.label}: micro-batch {t.micro_batch_size}, global batch"
          f" {t.global_batch_size}, recompute {cfg.model.recompute}")
    print(f"fits = predicted peak ≤ {usable:.1f} GiB, i.e. {USABLE_FRACTION:.0%} of {gpu.memory_gib:g} GiB (the rest"
          " left for the CUDA context, NCCL/cuBLAS workspaces and allocator fragmentation)")
    print(f"  {'layout':<26} {'µbatches':>8} {'bubble':>7} {'state GiB':>10} {'activ GiB':>10} {'total GiB':>10}  fits")
    for i, o in enumerate(options):
        m = o.memory
        state = (m.weights + m.gradients + m.optimizer_states) / GiB
        mark = "  ← recommended" if i == 0 and o.fits else ""
        print(f"  {layout_name(o.parallel):<26} {o.microbatches:>8} {o.bubble:>7.1%} {state:>10.2f}"
              f" {(m.activations + m.logits) / GiB:>10.2f} {m.total / GiB:>10.2f}  {'yes' if o.fits else 'no'}{mark}")
    print(f"{len(options)} valid layouts; sorted: fitting first, then fewest model-parallel ways, smallest bubble,"
          " TP before CP, SP on, least memory")
    if rejected:
        print("rejected by config validation (one example per reason):")
        for message in rejected:
            print(f"  {message}")
    print(advice)
    return 0


def main(argv: Optional[list] = None) -> int:
    argv = list(argv or [])
    if "--derive" in argv:
        return run_derive(_derive_parser().parse_args(argv))
    args = _config_parser().parse_args(argv)
    overrides = list(args.overrides) + ([f"plan.gpu={args.gpu}"] if args.gpu else [])
    if args.compare:
        cfg = load(args.config, overrides, args.world_size or run_world_size(args.compare))
        rows = compare(cfg, args.compare)
        if args.json:
            _print_json({"config": args.config, "run_dir": args.compare, "rows": as_json(rows)})
        else:
            print(render(rows, cfg, args.compare))
        return 0
    cfg = load(args.config, overrides, args.world_size)
    gpu_spec(cfg.plan.gpu)  # an unknown GPU fails here, once, with the list of known names
    if args.layouts:
        gpus = args.gpus or cfg.parallel.world_size
        if gpus < 1:
            raise ConfigError(f"--gpus: must be at least 1, got {gpus} — fix: e.g. --gpus 8")
        return run_layouts(cfg, gpus, cfg.plan.gpu, args.json)
    if args.gpus:
        raise ConfigError("--gpus applies to --layouts and --derive — fix: use --world-size N (or"
                          " --set parallel.world_size=N) to plan one layout on N GPUs")
    figs = figures(cfg)
    if args.json:
        _print_json(as_json_dict(figs))
    else:
        print(render_text(cfg, figs))
    return 0
