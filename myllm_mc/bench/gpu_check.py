"""The prepared GPU check (`bash tools/gpu_check.sh [--out DIR]`): one H100/H200, ≤ 8 minutes, a markdown + JSON report.

Steps, each recorded in the report whether it ran, was skipped (with why) or failed:
  1. environment      GPU, driver, torch, CUDA, megatron-core, Transformer Engine, SDPA kernels
  2. plan             the 1B preset's planner figures (memory per GPU, decode bounds) — no GPU needed
  3. configs          every benchmark command's config validated on this machine — no GPU needed
  4. bf16             `myllm benchmark` of the 1B preset in BF16 (--synthetic-data), micro-batch 1/2/4:
                      tokens/s and MFU at the best one, planner memory vs torch.cuda.max_memory_allocated
  5. local_sdpa       with TE installed: the local spec (SDPA core attention) at that micro-batch, for comparison
  6. fp8              with TE installed: the TE spec in FP8 at that micro-batch: tokens/s ratio and loss vs BF16
  7. decode           `myllm_mc.bench.decode`: decode tokens/s at batch 1 and 8 vs the HBM bound (random weights)
  8. moe              the MoE preset (configs/myllm_moe.yaml) at the most layers whose planner memory fits 90 % of
                      one GPU at EP 1 (step 2 picks them): `myllm benchmark --sweep model.moe.num_experts=0,16`,
                      the dense model of the same active parameters and the MoE in one launch, tokens/s ratio and
                      planner memory vs allocator peak for both
Steps 1–3 run anywhere, so a CPU dry run (the CI test) proves the script up to the point where a GPU is needed;
it then stops with exit code 3 and one line saying so.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

from myllm_mc.config import load
from myllm_mc.parallel.hardware import cuda_available
from myllm_mc.plan.hardware import gpu_spec
from myllm_mc.plan.inference import decode_bounds
from myllm_mc.plan.memory import memory_per_gpu
from myllm_mc.plan.params import parameter_breakdown

NO_GPU_EXIT = 3
CONFIG = "configs/myllm_1b.yaml"
MOE_CONFIG = "configs/myllm_moe.yaml"
BUDGET_S = 8 * 60
# one GPU: global batch 8 sequences of 8,192 tokens; 2 warm-up + 3 timed steps per run
BASE = ["parallel.world_size=auto", "training.global_batch_size=8"]
MOE_BASE = BASE + ["parallel.expert=1", "training.micro_batch_size=1"]     # one GPU: all 16 experts on it


def environment() -> dict:
    env = {"python": platform.python_version(), "torch": torch.__version__, "cuda_available": cuda_available(),
           "cuda": torch.version.cuda, "hostname": platform.node()}
    for name in ("megatron.core", "transformer_engine"):
        try:
            module = __import__(name, fromlist=["__version__"])
            env[name] = getattr(module, "__version__", "installed")
        except Exception as err:   # absent or broken: say which
            env[name] = f"absent ({type(err).__name__})"
    if cuda_available():
        props = torch.cuda.get_device_properties(0)
        env.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                   flash_sdp=torch.backends.cuda.flash_sdp_enabled(),
                   mem_efficient_sdp=torch.backends.cuda.mem_efficient_sdp_enabled())
        try:
            env["nvidia_smi"] = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                                                "--format=csv,noheader"], capture_output=True, text=True,
                                               timeout=20).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            env["nvidia_smi"] = "unavailable"
    return env


def gpu_key(name: str) -> str:
    lowered = name.lower()
    return "h200" if "h200" in lowered else "b200" if "b200" in lowered else "a100" if "a100" in lowered else "h100"


def plan_figures(gpu: str) -> dict:
    cfg = load(CONFIG, BASE + [f"plan.gpu={gpu}"], world_size=1)
    params = parameter_breakdown(cfg.model).total
    hbm = gpu_spec(gpu).hbm_tb_per_s * 1e12
    bounds = {b.weight_format: round(b.tokens_per_s, 1) for b in decode_bounds(cfg.model, params, hbm)}
    return {"gpu": gpu, "parameters": params, "memory_per_gpu_bytes": {
        mbs: memory_per_gpu(load(CONFIG, BASE + [f"training.micro_batch_size={mbs}"], world_size=1)).total
        for mbs in (1, 2, 4)}, "decode_bound_batch1_tokens_per_s": bounds, "moe": moe_plan(gpu)}


def moe_plan(gpu: str) -> dict:
    """The MoE preset cut to the most layers (of its 28; hidden size, experts and routing unchanged) whose planner
    memory at EP 1, micro-batch 1 is within 90 % of one `gpu`'s memory: the largest MoE one device trains."""
    usable = gpu_spec(gpu).memory_bytes * 0.9
    fits = None
    for layers in range(2, 29):
        cfg = load(MOE_CONFIG, MOE_BASE + [f"plan.gpu={gpu}", f"model.num_layers={layers}"], world_size=1)
        memory = memory_per_gpu(cfg).total
        if memory > usable:
            break
        params = parameter_breakdown(cfg.model)
        fits = {"layers": layers, "parameters": params.total, "active_parameters": params.active,
                "memory_per_gpu_bytes": memory, "usable_bytes": int(usable)}
    return fits or {"layers": 0, "reason": f"not even 2 layers of {MOE_CONFIG} fit one {gpu}"}


def moe_overrides(gpu: str, layers: int, have_te: bool) -> list:
    # TE's grouped GEMM where TE is installed (the preset's setting), megatron's SequentialMLP otherwise
    return MOE_BASE + [f"plan.gpu={gpu}", f"model.num_layers={layers}", "model.precision=bf16",
                       f"model.moe.grouped_gemm={'true' if have_te else 'false'}"]


def bench_command(out: Path, overrides: list, sweep: list, config: str = CONFIG) -> list:
    command = [sys.executable, "-m", "myllm_mc.cli", "benchmark", config, "--synthetic-data", "--nproc-per-node", "1",
               "--warmup", "2", "--steps", "3", "--out", str(out), "--set", *overrides]
    return command + (["--sweep", *sweep] if sweep else [])


def check_configs(commands: dict) -> dict:
    """Validate each planned run's config here, so a typo fails the CPU dry run, not the GPU slot."""
    results = {}
    for name, overrides in commands.items():
        try:
            load(MOE_CONFIG if name == "moe" else CONFIG, overrides, world_size=1)
            results[name] = "ok"
        except Exception as err:
            results[name] = f"invalid: {err}"
    return results


def run_step(command: list, log: Path, result: Path, timeout: float):
    """Run one step's command with its output in `log`: (the JSON it wrote to `result`, None) or (None, a failed
    step's report)."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=max(timeout, 30))
    except subprocess.TimeoutExpired:
        return None, {"status": "failed", "reason": f"timed out after {timeout:.0f} s", "log": str(log)}
    log.write_text(done.stdout + done.stderr)
    if done.returncode != 0 or not result.is_file():
        return None, {"status": "failed", "reason": f"exit code {done.returncode}, see {log}", "log": str(log)}
    return json.loads(result.read_text()), None


def run_bench(name: str, command: list, out: Path, timeout: float) -> dict:
    start = time.perf_counter()
    sweep, failed = run_step(command, out.parent / f"{name}.log", out / "sweep.json", timeout)
    if failed:
        return failed
    runs = sweep["runs"]
    best = max(runs, key=lambda r: r["tokens_per_s"])
    keep = ("layout", "micro_batch_size", "precision", "tokens_per_s", "tflops_per_gpu", "mfu", "memory_max",
            "planner_memory", "memory_ratio", "loss_first", "loss_last", "step_time_median")
    relative = {r["layout"]: f"tokens/s {r['tokens_per_s_per_gpu']:.2f}× {r['reference']}, memory {r['memory']:.2f}×"
                for r in sweep.get("relative") or []}
    return {"status": "ran", "seconds": round(time.perf_counter() - start, 1), "best": {k: best.get(k) for k in keep},
            "runs": [{k: r.get(k) for k in keep} for r in runs], **({"relative": relative} if relative else {})}


DECODE_BATCHES = (1, 8)


def decode_command(out: Path, overrides: list) -> list:
    return [sys.executable, "-m", "myllm_mc.bench.decode", CONFIG, "--batch", *map(str, DECODE_BATCHES),
            "--prompt-tokens", "128", "--new-tokens", "128", "--json", str(out / "decode.json"), "--set", *overrides]


def decode_step(out: Path, overrides: list, plan: dict, timeout: float) -> dict:
    """`myllm_mc.bench.decode` of the 1B preset (random weights, BF16) at batch 1 and 8 vs the HBM bound."""
    rows, failed = run_step(decode_command(out, overrides), out / "decode.log", out / "decode.json", timeout)
    if failed:
        return failed
    return {"status": "ran", "rows": rows, "planner_bound_batch1_short_context": plan[
        "decode_bound_batch1_tokens_per_s"]["bf16"],
            **{f"batch{r['batch']}": f"{r['decode_tokens_per_s']:,.1f} tok/s = {100 * r['bound_ratio']:.0f}% of"
                                      f" the {r['bound_tokens_per_s']:,.1f} tok/s bound" for r in rows}}


def render_markdown(report: dict) -> str:
    lines = [f"# GPU check — {report['finished']}", "", f"**Status: {report['status']}**"
             + (f" — {report['reason']}" if report.get("reason") else ""), "", "## Environment", ""]
    lines += [f"- {k}: {v}" for k, v in report["environment"].items()]
    for name, step in report["steps"].items():
        lines += ["", f"## {name}", ""]
        if step.get("status") in ("skipped", "failed"):
            lines.append(f"{step['status']}: {step.get('reason')}")
        best = step.get("best")
        if best:
            mfu = f"{best['mfu']:.1%}" if best.get("mfu") is not None else "-"
            lines.append(f"best {best['layout']}: {best['tokens_per_s']:,.0f} tokens/s, MFU {mfu}, memory"
                         f" {best['memory_max'] / 2**30:.2f} GiB allocator peak vs planner"
                         f" {best['planner_memory'] / 2**30:.2f} GiB, loss {best['loss_first']:.4f} → {best['loss_last']:.4f}")
        extra = {k: v for k, v in step.items() if k not in ("best", "runs", "rows", "status", "reason")}
        lines += [f"- {k}: {v}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="tools/gpu_check.sh", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/gpu_check", help="where gpu_check.md / gpu_check.json go")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    env = environment()
    gpu = gpu_key(env.get("gpu", "h100"))
    report = {"environment": env, "steps": {}, "status": "running"}
    plan = plan_figures(gpu)
    report["steps"]["plan"] = dict(plan, status="ran")
    have_te = not str(env.get("transformer_engine", "absent")).startswith("absent")
    runs = {"bf16": BASE + [f"plan.gpu={gpu}", "model.precision=bf16"]}
    if have_te:
        runs["local_sdpa"] = runs["bf16"] + ["model.spec=local"]
        runs["fp8"] = BASE + [f"plan.gpu={gpu}", "model.precision=fp8", "model.spec=te"]
    runs["decode"] = BASE + [f"plan.gpu={gpu}", "model.precision=bf16", "model.spec=local"]
    if plan["moe"]["layers"]:
        runs["moe"] = moe_overrides(gpu, plan["moe"]["layers"], have_te)
    report["steps"]["configs"] = {"status": "ran", **check_configs({k: v for k, v in runs.items() if k != "fp8"})}

    def finish(status: str, reason: str = "", code: int = 0) -> int:
        report.update(status=status, reason=reason, seconds=round(time.perf_counter() - started, 1),
                      finished=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()))
        (out / "gpu_check.json").write_text(json.dumps(report, indent=1, default=str))
        (out / "gpu_check.md").write_text(render_markdown(report))
        line = f"gpu_check: {status}" + (f" — {reason}" if reason else "") + f" (report: {out / 'gpu_check.md'})"
        print(line, file=sys.stderr if code else sys.stdout)
        return code

    if not env["cuda_available"]:
        return finish("stopped", "no CUDA GPU visible (torch reports no CUDA device) — run it on a machine"
                      " with one H100/H200", NO_GPU_EXIT)
    left = lambda: BUDGET_S - (time.perf_counter() - started)   # noqa: E731
    usable = env["gpu_memory_gib"] * 2**30 * 0.9       # the planner's fit rule: skip micro-batches that cannot fit
    sizes = [mbs for mbs, need in plan["memory_per_gpu_bytes"].items() if need <= usable] or [1]
    report["steps"]["bf16_micro_batches"] = {"status": "ran", "tried": sizes,
                                             "why": "planner memory ≤ 90 % of the GPU's memory"}
    bf16 = run_bench("bf16", bench_command(out / "bf16", runs["bf16"],
                                           [f"training.micro_batch_size={','.join(map(str, sizes))}"]),
                     out / "bf16", left() * 0.5)
    report["steps"]["bf16"] = bf16
    best_mbs = bf16["best"]["micro_batch_size"] if bf16.get("best") else 1
    report["steps"]["decode"] = decode_step(out, runs["decode"], plan, left() * 0.3)
    if "moe" not in runs:
        report["steps"]["moe"] = {"status": "skipped", "reason": plan["moe"]["reason"]}
    elif left() < 90:
        report["steps"]["moe"] = {"status": "skipped", "reason": f"{left():.0f} s of the budget left"}
    else:
        report["steps"]["moe"] = dict(run_bench("moe", bench_command(out / "moe", runs["moe"],
                                                                     ["model.moe.num_experts=0,16"], MOE_CONFIG),
                                                out / "moe", left() * 0.4), layers=plan["moe"]["layers"])
    if have_te:
        for name in ("local_sdpa", "fp8"):
            step = run_bench(name, bench_command(out / name, runs[name] + [f"training.micro_batch_size={best_mbs}"],
                                                 []), out / name, left() * 0.45)
            report["steps"][name] = step
        fp8, ref = report["steps"]["fp8"].get("best"), next(
            (r for r in bf16.get("runs", []) if r["micro_batch_size"] == best_mbs), None)
        if fp8 and ref:
            report["steps"]["fp8"]["tokens_per_s_ratio_vs_bf16"] = round(fp8["tokens_per_s"] / ref["tokens_per_s"], 3)
            report["steps"]["fp8"]["loss_last_bf16_vs_fp8"] = [ref["loss_last"], fp8["loss_last"]]
    else:
        reason = "Transformer Engine not installed: TE spec and FP8 not measured (see docs/planner.md to carry it)"
        report["steps"]["local_sdpa"] = {"status": "skipped", "reason": "the bf16 run already used the local spec"}
        report["steps"]["fp8"] = {"status": "skipped", "reason": reason}
    failed = [name for name, step in report["steps"].items() if step.get("status") == "failed"]
    if failed:
        return finish("failed", f"step(s) {', '.join(failed)} failed (logs under {out})", 1)
    return finish("ok")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
