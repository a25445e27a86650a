"""How benchmark results are shown and kept: console lines, a CSV and a JSON table, and a PNG chart.

The chart puts throughput and memory per GPU side by side, layout by layout, because a layout is chosen on both:
the fastest one that fits.
"""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path
from typing import List, Optional, Sequence

MIB = 2 ** 20

CSV_COLUMNS = ["layout", "status", "world_size", "tensor", "pipeline", "data", "virtual_pipeline", "context",
               "sequence_parallel", "micro_batch_size", "global_batch_size", "seq_length", "recompute", "precision",
               "timed_steps", "step_time_median", "step_time_min", "step_time_max", "step_time_spread",
               "tokens_per_s", "tokens_per_s_per_gpu", "tflops_per_gpu", "mfu", "peak_tflops", "peak_label",
               "share_data", "share_forward_backward", "share_optimizer", "bubble_formula", "memory_max",
               "planner_memory", "memory_ratio", "memory_label", "fits", "reason", "swept"]


def _bytes(n: Optional[float]) -> str:
    if n is None:
        return "-"
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / MIB:.0f} MiB"


def format_run(row: dict) -> List[str]:
    """The figures of one run as a few console lines."""
    mfu = f"MFU {row['mfu'] * 100:.1f}% of {row['peak_tflops']:.3g} TFLOP/s ({row['peak_label']})" \
        if row.get("mfu") is not None else "MFU -"
    ratio = f"{row['memory_ratio']:.2f}×" if row.get("memory_ratio") else "-"
    return [
        f"{row['layout']} ({row['world_size']} rank(s), {row['precision']}, {row['timed_steps']} timed steps)",
        f"tokens/s {row['tokens_per_s']:,.0f} global, {row['tokens_per_s_per_gpu']:,.0f} per GPU | step "
        f"{row['step_time_median'] * 1e3:,.1f} ms median (min {row['step_time_min'] * 1e3:,.1f}, max "
        f"{row['step_time_max'] * 1e3:,.1f}, spread {row['step_time_spread'] * 100:.0f}%)",
        f"{row['tflops_per_gpu']:.4g} TFLOP/s per GPU | {mfu}",
        f"time: data {row['share_data'] * 100:.1f}% | forward/backward {row['share_forward_backward'] * 100:.1f}%"
        f" | optimizer {row['share_optimizer'] * 100:.1f}% | pipeline bubble {row['bubble_formula'] * 100:.1f}%"
        f" (schedule formula, inside forward/backward)",
        f"memory per GPU: measured {_bytes(row['memory_max'])} ({row['memory_label']}) | planner "
        f"{_bytes(row['planner_memory'])} | measured/planner {ratio}",
    ]


def best_layout(rows: Sequence[dict], memory_limit: Optional[int]) -> Optional[dict]:
    """The completed run with the most tokens/s per GPU among those whose measured peak fits `memory_limit`."""
    fitting = [r for r in rows if r.get("status") == "ok" and r.get("fits", True)]
    return max(fitting, key=lambda r: r["tokens_per_s_per_gpu"], default=None)


def relative_to_first(rows: Sequence[dict]) -> List[dict]:
    """Each later completed run's tokens/s per GPU and memory as multiples of the first completed run's: the
    sweep's first combination is the reference (e.g. the dense model, `--sweep model.moe.num_experts=0,16`),
    measured in the same launch on the same machine. A sweep repeated in rounds (a leading axis that does not
    change the layout, e.g. `training.seed=1,2,3`) compares each run with its own round's reference, the latest
    run of the reference's layout before it, so a load burst in one round does not decide every ratio."""
    done = [r for r in rows if r.get("status") == "ok"]
    if len(done) < 2:
        return []
    ref, out = done[0], []
    for r in done[1:]:
        if r["layout"] == done[0]["layout"]:
            ref = r
            continue
        out.append({"layout": r["layout"], "reference": ref["layout"],
                    "tokens_per_s_per_gpu": r["tokens_per_s_per_gpu"] / ref["tokens_per_s_per_gpu"],
                    # the fastest step of each: the least disturbed by other load on a shared machine
                    "tokens_per_s_best_step": ref["step_time_min"] / r["step_time_min"],
                    "memory": r["memory_max"] / ref["memory_max"],
                    "planner_memory": r["planner_memory"] / ref["planner_memory"] if ref["planner_memory"] else None})
    return out


def relative_rounds(relative: Sequence[dict]) -> List[dict]:
    """Per layout compared more than once (rounds): the median of its per-round ratios and their range."""
    by_layout: dict = {}
    for rel in relative:
        by_layout.setdefault(rel["layout"], []).append(rel)
    summary = []
    for layout, rels in by_layout.items():
        if len(rels) > 1:
            ratios = sorted(r["tokens_per_s_per_gpu"] for r in rels)
            best = sorted(r["tokens_per_s_best_step"] for r in rels)
            summary.append({"layout": layout, "reference": rels[0]["reference"], "rounds": len(rels),
                            "tokens_per_s_per_gpu": statistics.median(ratios), "low": ratios[0], "high": ratios[-1],
                            "tokens_per_s_best_step": statistics.median(best)})
    return summary


def mark_fits(rows: Sequence[dict], memory_limit: Optional[int]) -> None:
    for row in rows:
        if row.get("status") == "ok":
            row["fits"] = memory_limit is None or row["memory_max"] <= memory_limit


def write_tables(rows: Sequence[dict], skipped: Sequence[dict], out_dir: Path, extra: dict) -> tuple:
    """sweep.csv (one line per combination, skipped ones included) and sweep.json (everything, with `extra`)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = out_dir / "sweep.csv", out_dir / "sweep.json"
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in list(rows) + [{"status": "skipped", **s} for s in skipped]:
            line = dict(row)
            line["swept"] = " ".join(row.get("swept") or row.get("overrides") or [])
            if "layout" not in line:
                line["layout"] = line["swept"]
            writer.writerow(line)
    json_path.write_text(json.dumps({"runs": list(rows), "skipped": list(skipped), **extra}, indent=1))
    return csv_path, json_path


def plot_sweep(rows: Sequence[dict], path: Path, title: str, memory_limit: Optional[int] = None) -> Path:
    """Two bar panels over the completed layouts: tokens/s per GPU (the best that fits in green), and memory per
    GPU, measured beside the planner's prediction."""
    import matplotlib  # only for the figure, and the backend is chosen before pyplot is imported
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [r for r in rows if r.get("status") == "ok"]
    labels = [r["layout"] for r in done]
    x = range(len(done))
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(max(6.0, 0.7 * len(done) + 3), 7), dpi=110, sharex=True)
    best = best_layout(done, memory_limit)
    top.bar(x, [r["tokens_per_s_per_gpu"] for r in done],
            color=["tab:green" if r is best else "tab:blue" for r in done])
    top.set_ylabel("tokens/s per GPU")
    top.set_title(title)
    width = 0.4
    bottom.bar([i - width / 2 for i in x], [r["memory_max"] / MIB for r in done], width, label="measured peak",
               color="tab:orange")
    bottom.bar([i + width / 2 for i in x], [r["planner_memory"] / MIB for r in done], width, label="planner",
               color="tab:gray")
    tallest = max([r["memory_max"] for r in done] + [r["planner_memory"] for r in done], default=0)
    if memory_limit and memory_limit <= 1.5 * tallest:     # a far-off limit would flatten every bar
        bottom.axhline(memory_limit / MIB, color="tab:red", linestyle="--", label="memory limit")
    elif memory_limit:
        bottom.set_title(f"memory limit {memory_limit / 2**30:.1f} GiB per GPU (off scale)", fontsize=9)
    bottom.set_ylabel("memory per GPU (MiB)")
    bottom.set_xticks(list(x))
    bottom.set_xticklabels(labels, rotation=45, ha="right", fontsize=8)
    bottom.legend(fontsize=8)
    for ax in (top, bottom):
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
