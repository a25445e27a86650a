"""Peer baseline (b): Megatron-LM's own `pretrain_gpt.py`, same model, batch, layout and optimizer, on mock data.

Why: it is the reference implementation of the same megatron-core model; a ratio near 1 says our loop adds no
overhead around the step. The command line is built from the Config (flag names as Megatron-LM's argument parser
defines them, checked against its core_v0.16.1 tag), run from the user's checkout under torchrun, and its
"elapsed time per iteration (ms)" log lines after the warm-up iterations are the measurement. Nothing of
Megatron-LM is vendored: the user passes `--megatron-lm PATH`.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
from pathlib import Path
from typing import List

from myllm_mc.config import Config
from myllm_mc.parallel.hardware import cuda_available  # hardware is decided in parallel/, once
from myllm_mc.parallel.launch import torchrun_invocation

_ITERATION = re.compile(r"iteration\s+(\d+)\s*/\s*\d+.*?elapsed time per iteration \(ms\):\s*([0-9.]+)")


def megatron_lm_args(cfg: Config, iterations: int) -> List[str]:
    """pretrain_gpt.py arguments for `cfg`'s model, batch, layout, optimizer and precision, with mock data."""
    m, p, t, o = cfg.model, cfg.parallel, cfg.training, cfg.optimizer
    args = ["--num-layers", m.num_layers, "--hidden-size", m.hidden_size, "--num-attention-heads",
            m.num_attention_heads, "--kv-channels", m.kv_channels, "--ffn-hidden-size", m.ffn_hidden_size,
            "--seq-length", m.seq_length, "--max-position-embeddings", m.seq_length,
            "--normalization", m.normalization, "--norm-epsilon", m.norm_epsilon,
            "--position-embedding-type", m.position_embedding, "--rotary-base", m.rotary_base,
            "--attention-dropout", 0, "--hidden-dropout", 0, "--init-method-std", m.init_std,
            "--make-vocab-size-divisible-by", m.make_vocab_size_divisible_by,
            "--micro-batch-size", t.micro_batch_size, "--global-batch-size", t.global_batch_size,
            "--train-iters", iterations, "--seed", t.seed,
            "--lr", o.lr, "--min-lr", o.min_lr, "--lr-decay-style", "cosine", "--lr-warmup-iters", 1,
            "--weight-decay", o.weight_decay, "--adam-beta1", o.beta1, "--adam-beta2", o.beta2, "--adam-eps", o.eps,
            "--clip-grad", o.clip_grad, "--tensor-model-parallel-size", p.tensor,
            "--pipeline-model-parallel-size", p.pipeline, "--context-parallel-size", p.context,
            "--mock-data", "--tokenizer-type", "NullTokenizer", "--vocab-size", m.vocab_size,
            "--eval-iters", 0, "--log-interval", 1, "--log-throughput"]
    if m.num_query_groups != m.num_attention_heads:
        args += ["--group-query-attention", "--num-query-groups", m.num_query_groups]
    if m.activation == "swiglu":
        args.append("--swiglu")
    if not m.add_bias:
        args.append("--disable-bias-linear")
    if not m.tie_embeddings:
        args.append("--untie-embeddings-and-output-weights")
    if m.recompute == "selective":
        args += ["--recompute-granularity", "selective"]
    elif m.recompute == "full":
        args += ["--recompute-granularity", "full", "--recompute-method", "uniform", "--recompute-num-layers", 1]
    if p.virtual_pipeline and p.virtual_pipeline > 1:
        args += ["--num-layers-per-virtual-pipeline-stage", m.num_layers // (p.pipeline * p.virtual_pipeline)]
    if p.sequence_parallel:
        args.append("--sequence-parallel")
    if p.distributed_optimizer:
        args.append("--use-distributed-optimizer")
    if p.overlap_grad_reduce:
        args.append("--overlap-grad-reduce")
    if p.overlap_param_gather and p.distributed_optimizer:
        args.append("--overlap-param-gather")
    if m.precision in ("bf16", "fp8"):
        args.append("--bf16")
    if m.precision == "fp8":
        args += ["--fp8-format", "hybrid", "--fp8-recipe", "delayed" if m.fp8_recipe == "delayed" else "tensorwise"]
    if cuda_available() and m.spec != "local":
        args += ["--transformer-impl", "transformer_engine"]
    else:        # the unfused kernels our local spec uses, and what a machine without TE/Apex can run
        args += ["--transformer-impl", "local", "--no-gradient-accumulation-fusion", "--no-masked-softmax-fusion",
                 "--no-bias-swiglu-fusion", "--no-bias-dropout-fusion", "--no-rope-fusion", "--no-persist-layer-norm"]
    if not cuda_available():
        args += ["--distributed-backend", "gloo", "--use-cpu-initialization"]
    return [str(a) for a in args]


def iteration_times(log: str, warmup: int) -> List[float]:
    """Seconds per iteration from Megatron-LM's log, skipping the first `warmup` iterations."""
    return [float(ms) / 1e3 for it, ms in _ITERATION.findall(log) if int(it) > warmup]


def run_megatron_lm(checkout: str, cfg: Config, nproc: int, warmup: int, steps: int, log_path: Path,
                    timeout: float = 1800) -> dict:
    """Run pretrain_gpt.py from `checkout`; {'status': 'ok', 'tokens_per_s', ...} or {'status': 'failed', 'reason'}."""
    script = Path(checkout) / "pretrain_gpt.py"
    name = "Megatron-LM pretrain_gpt.py (mock data)"
    if not script.is_file():
        return {"name": name, "status": "failed",
                "reason": f"{script} not found — fix: --megatron-lm PATH to a Megatron-LM checkout"}
    command, env = torchrun_invocation([str(script), *megatron_lm_args(cfg, warmup + steps)], nproc, dict(
        CUDA_DEVICE_MAX_CONNECTIONS="1",
        PYTHONPATH=os.pathsep.join([str(Path(checkout).resolve())] + [p for p in os.environ.get(
            "PYTHONPATH", "").split(os.pathsep) if p])))
    try:
        done = subprocess.run(command, cwd=checkout, env=env, capture_output=True, text=True, timeout=timeout)
        log = done.stdout + "\n" + done.stderr
        code = done.returncode
    except subprocess.TimeoutExpired as err:
        log, code = f"{err.stdout or ''}\n{err.stderr or ''}", "timeout"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.write_text(" ".join(command) + "\n\n" + log)
    times = iteration_times(log, warmup)
    if code != 0 or not times:
        return {"name": name, "status": "failed", "log": str(log_path),
                "reason": f"exit {code}: {first_error(log)}"}
    median = statistics.median(times)
    return {"name": name, "status": "ok", "step_times": times, "step_time_median": median,
            "tokens_per_s": cfg.tokens_per_step / median, "log": str(log_path)}


def first_error(log: str) -> str:
    """The line that says why a Python process died (the exception line, else the last line)."""
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    errors = [line for line in lines if re.match(r"^[A-Za-z_.]*(Error|Exception)\b.*:", line)
              and "ChildFailedError" not in line]
    clean = [line for line in errors if "  " not in line]       # ranks' tracebacks interleave on one stream
    found = clean or errors
    return found[0][:300] if found else (lines[-1][:300] if lines else "no output")
