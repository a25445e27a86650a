"""`myllm plan CONFIG --compare RUN_DIR`: every figure the planner predicts that a run measured, side by side.

Reads whatever RUN_DIR holds (pure Python, no torch):
  metrics.jsonl             training rows: tokens/s, step time, TFLOP/s, MFU (`myllm train`)
  peak_memory.rank<R>.json  each rank's peak memory (train/metrics.py: CUDA allocator peak or CPU peak resident set, VmHWM)
  sweep.json                `myllm benchmark --out RUN_DIR`: the run whose layout matches CONFIG
  checkpoint.dir (or RUN_DIR/checkpoints): the latest checkpoint's myllm_meta.json (parameters) and its size
  generate*.json            decode figures if a generate run wrote them: kv_cache_bytes + kv_tokens,
                            decode_tokens_per_s + batch_size
A figure the run did not record is listed as "not measured". Ratio = measured / predicted.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from myllm_mc.config import ConfigError
from myllm_mc.jsonl import read_jsonl

from .cpu_memory import cpu_memory_per_process
from .flops import flops_per_iteration
from .hardware import gpu_spec
from .inference import kv_cache_bytes_per_token
from .memory import memory_per_gpu
from .params import padded_vocab_size, parameter_breakdown

MiB = 2**20
# total resident set of a training process after its imports (python, torch, megatron-core, tensorboard,
# matplotlib), measured on the reference CPU: what the peak resident set contains besides the run's own memory
RUNTIME_RESIDENT = 392 * MiB


@dataclass(frozen=True)
class Row:
    figure: str
    predicted: Optional[float]
    measured: Optional[float]
    unit: str
    note: str

    @property
    def ratio(self) -> Optional[float]:
        if self.predicted and self.measured is not None:
            return self.measured / self.predicted
        return None


def run_world_size(run_dir: str) -> Optional[int]:
    """Processes the run had: one peak-memory file per rank, or the benchmark's world size."""
    ranks = len(list(Path(run_dir).glob("peak_memory.rank*.json")))
    if ranks:
        return ranks
    sweep = Path(run_dir) / "sweep.json"
    if sweep.is_file():
        return json.loads(sweep.read_text()).get("world_size")
    return None


def _read_jsonl(path: Path) -> list:
    if not path.is_file():
        return []
    return [record for _, record in read_jsonl(path)]


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _latest_checkpoint(cfg, run_dir: Path) -> Optional[Path]:
    for root in [Path(cfg.checkpoint.dir)] if cfg.checkpoint.dir else []:
        for base in (root, run_dir / root.name):
            latest = base / "latest"
            if latest.is_file() and (base / latest.read_text().strip()).is_dir():
                return base / latest.read_text().strip()
    steps = sorted(run_dir.glob("**/step_*/myllm_meta.json"))
    return steps[-1].parent if steps else None


def _benchmark_run(cfg, run_dir: Path) -> Optional[dict]:
    path = run_dir / "sweep.json"
    if not path.is_file():
        return None
    p, t = cfg.parallel, cfg.training
    for run in json.loads(path.read_text()).get("runs", []):
        if (run.get("tensor"), run.get("pipeline"), run.get("context"), run.get("micro_batch_size"),
                run.get("recompute"), run.get("world_size")) == (p.tensor, p.pipeline, p.context,
                                                                 t.micro_batch_size, cfg.model.recompute,
                                                                 p.world_size):
            return run
    return None


def compare(cfg, run_dir: str) -> list[Row]:
    """The predicted / measured rows for `cfg` against the files in `run_dir`."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"--compare: {run_dir} is not a directory — fix: pass the run's logging.dir"
                          " (it holds metrics.jsonl) or a `myllm benchmark --out` directory")
    m, p = cfg.model, cfg.parallel
    cpu = os.environ.get("MYLLM_PLAN_DEVICE", "") == "cpu" or not _ran_on_gpu(run_dir)
    rows = []
    vocab = padded_vocab_size(m, p.tensor)
    params = parameter_breakdown(m, padded_vocab=vocab).total
    checkpoint = _latest_checkpoint(cfg, run_dir)
    meta = json.loads((checkpoint / "myllm_meta.json").read_text()) if checkpoint else {}
    rows.append(Row("parameters", params, meta.get("parameters"), "",
                    "exact count of the shapes megatron builds; measured: the checkpoint's count" if meta
                    else "not measured (no checkpoint in the run)"))

    train = [r for r in _read_jsonl(run_dir / "metrics.jsonl") if r.get("kind") == "train"]
    bench = _benchmark_run(cfg, run_dir)
    flops = flops_per_iteration(m, cfg.training.global_batch_size, padded_vocab=vocab)
    if bench:
        tokens, step_time, mfu, tflops = (bench["tokens_per_step"], bench["step_time_median"], bench["mfu"],
                                           bench["tflops_per_gpu"])
        peak = bench.get("peak_tflops")
    elif train:
        last = train[-1]   # the final interval: warm, past the first step's one-time costs
        step_time, mfu, tflops = last["step_time"], last.get("mfu"), last["tflops_per_gpu"]
        tokens = round(last["tokens_per_s"] * step_time)
        peak = tflops / mfu if mfu else None
    else:
        tokens = step_time = mfu = peak = None
    rows.append(Row("tokens per step", cfg.tokens_per_step, tokens, "tokens", "global batch × sequence"))
    rows.append(Row("FLOPs per step", flops, tflops * 1e12 * step_time * p.world_size if tokens else None,
                    "FLOPs", "Megatron-LM's formula; measured = reported TFLOP/s × step time (same formula)"))
    if peak and mfu:
        predicted_time = flops / (p.world_size * peak * 1e12 * cfg.plan.mfu)
        rows.append(Row(f"step time at plan.mfu {cfg.plan.mfu:.0%}", predicted_time, step_time, "s",
                        f"measured MFU {mfu:.1%} of {peak:.3g} TFLOP/s per device"))
        rows.append(Row("step time at measured MFU", flops / (p.world_size * peak * 1e12 * mfu), step_time, "s",
                        "closes the loop: FLOPs ÷ (devices × peak × measured MFU)"))
    else:
        rows.append(Row("step time", None, step_time, "s", "not measured" if step_time is None else "no peak known"))
    rows.append(_memory_row(cfg, run_dir, bench, cpu))
    rows.append(_checkpoint_row(cfg, checkpoint, params))
    rows.extend(_generate_rows(cfg, run_dir, params, cpu))
    return rows


def _ran_on_gpu(run_dir: Path) -> bool:
    for path in run_dir.glob("peak_memory.rank*.json"):
        return "CUDA" in json.loads(path.read_text()).get("measure", "")
    bench = run_dir / "sweep.json"
    if bench.is_file():
        runs = json.loads(bench.read_text()).get("runs", [])
        return bool(runs) and "CUDA" in runs[0].get("memory_label", "")
    return False


def _memory_row(cfg, run_dir: Path, bench: Optional[dict], cpu: bool) -> Row:
    if cpu:
        predicted = cpu_memory_per_process(cfg)
        terms = ", ".join(f"{t.label} {t.bytes / MiB:.0f}" for t in predicted.terms)
        if bench:
            return Row("peak memory per device", predicted.total, bench["memory_max"], "B",
                       f"CPU anonymous RSS above pre-run (benchmark); MiB: {terms}")
        peaks = [json.loads(f.read_text())["peak_bytes"] for f in run_dir.glob("peak_memory.rank*.json")]
        return Row("peak memory per device", predicted.total + RUNTIME_RESIDENT, max(peaks) if peaks else None, "B",
                   f"CPU peak RSS (VmHWM) = runtime {RUNTIME_RESIDENT / MiB:.0f} + {terms}" if peaks
                   else "not measured (no peak_memory.rank*.json)")
    predicted = memory_per_gpu(cfg)
    peaks = ([bench["memory_max"]] if bench else
             [json.loads(f.read_text())["peak_bytes"] for f in run_dir.glob("peak_memory.rank*.json")])
    return Row("peak memory per device", predicted.total, max(peaks) if peaks else None, "B",
               f"CUDA allocator peak vs memory_per_gpu ({predicted.stage} stage)" if peaks else "not measured")


def _checkpoint_row(cfg, checkpoint: Optional[Path], params: int) -> Row:
    e = 4 if cfg.model.precision == "fp32" else 2
    predicted = (e + 12) * params
    why = (f"{e} B weights + 12 B optimizer (fp32 main param + 2 moments, saved even in fp32) per parameter,"
           " every shard once")
    return Row("checkpoint size on disk", predicted, _dir_bytes(checkpoint) if checkpoint else None, "B",
               f"{why}; {checkpoint.name}" if checkpoint else "not measured (no checkpoint in the run)")


def _generate_rows(cfg, run_dir: Path, params: int, cpu: bool) -> list[Row]:
    records = [json.loads(f.read_text()) for f in sorted(run_dir.glob("generate*.json"))]
    kv = next((r for r in records if "kv_cache_bytes" in r and "kv_tokens" in r), None)
    decode = [r for r in records if "decode_tokens_per_s" in r]
    e = 4 if cfg.model.precision == "fp32" else 2
    rows = [Row("KV cache bytes", kv_cache_bytes_per_token(cfg.model, bytes_per_element=e) * kv["kv_tokens"]
                if kv else None, kv["kv_cache_bytes"] if kv else None, "B",
                f"2 × layers × groups × head dim × {e} B × tokens" if kv else "not measured")]
    if not decode:
        return rows + [Row("decode tokens/s", None, None, "tok/s", "not measured")]
    for record in decode:
        bound = None
        if not cpu:
            bound = gpu_spec(cfg.plan.gpu).hbm_tb_per_s * 1e12 / (params * e) * record.get("batch_size", 1)
        rows.append(Row(f"decode tokens/s, batch {record.get('batch_size', 1)}", bound,
                        record["decode_tokens_per_s"], "tok/s",
                        "HBM bound: bandwidth ÷ weight bytes per step × batch" if bound else "no bound on CPU"))
    return rows


def _fmt(value, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "B":
        return f"{value / MiB:,.1f} MiB"
    if unit == "FLOPs":
        return f"{value:.3e}"
    if unit == "s":
        return f"{value * 1000:,.1f} ms"
    return f"{value:,.0f}" + (f" {unit}" if unit else "") if abs(value) >= 100 else f"{value:.4g} {unit}".strip()


def render(rows: list[Row], cfg, run_dir: str) -> str:
    lines = [f"plan vs measured: {cfg.model.name} against {run_dir}",
             f"  {'figure':<28} {'predicted':>16} {'measured':>16} {'ratio':>7}  note"]
    for row in rows:
        ratio = f"{row.ratio:.3f}" if row.ratio is not None else ("-" if row.measured is not None else "")
        measured = _fmt(row.measured, row.unit) if row.measured is not None else "not measured"
        lines.append(f"  {row.figure:<28} {_fmt(row.predicted, row.unit):>16} {measured:>16} {ratio:>7}  {row.note}")
    return "\n".join(lines)


def as_json(rows: list[Row]) -> list[dict]:
    return [{"figure": r.figure, "predicted": r.predicted, "measured": r.measured, "ratio": r.ratio,
             "unit": r.unit, "note": r.note} for r in rows]


def end_of_run(cfg) -> str:
    """What `myllm train` prints when a run has finished: this table for its logging.dir, or one line saying why
    not. Never raises: a finished run is not failed by its report."""
    try:
        return render(compare(cfg, cfg.logging.dir), cfg, cfg.logging.dir)
    except Exception as err:          # noqa: BLE001 — e.g. a logging.dir another process is still writing
        return f"plan vs measured: not available ({type(err).__name__}: {err}) — run `myllm plan CONFIG --compare" \
               f" {cfg.logging.dir}`"
