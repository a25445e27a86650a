"""The eval report: one JSON file with every figure, a comparison table (rows = metrics, columns = checkpoints)
and a one-line summary."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import List, Optional, Tuple


def metric_rows(result: dict) -> List[Tuple[str, Optional[float], str]]:
    """(metric, value, format) of one checkpoint's result, in table order."""
    rows = []
    ppl = result.get("perplexity")
    if ppl:
        rows += [("perplexity", ppl["perplexity"], ".3f"), ("bits per byte", ppl["bits_per_byte"], ".4f"),
                 ("mean NLL (nats/token)", ppl["mean_nll"], ".4f"), ("tokens scored", ppl["tokens"], ",d")]
    tasks = result.get("tasks")
    if tasks:
        rows.append(("task accuracy (all)", tasks["all"]["accuracy"], ".3f"))
        rows += [(f"  {name}", row["accuracy"], ".3f") for name, row in sorted(tasks.items()) if name != "all"]
        rows.append(("task format (all)", tasks["all"]["format"], ".3f"))
    mc = result.get("multiple_choice")
    if mc:
        rows += [("MC accuracy", mc["accuracy"], ".3f"), ("MC accuracy (byte-normalised)", mc["accuracy_norm"], ".3f"),
                 ("MC questions", mc["questions"], ",d")]
    lm_eval = result.get("lm_eval")
    if lm_eval:
        for task, metrics in sorted(lm_eval.get("tasks", {}).items()):
            rows += [(f"lm-eval {task} {metric}", value, ".4f" if "perplexity" in metric or "bits" in metric
                      else ".3f") for metric, value in metrics.items() if "stderr" not in metric]
    return rows


def _cell(value, fmt: str) -> str:
    if value is None:
        return "—"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return format(value, fmt)


def labels_for(paths: List[str]) -> List[str]:
    """Short column names: the last two path parts, or the whole path where those collide."""
    short = ["/".join(Path(p).parts[-2:]) for p in paths]
    return short if len(set(short)) == len(short) else list(paths)


def comparison_table(results: List[dict]) -> str:
    """A plain-text table, rows = metrics, columns = checkpoints (a metric one checkpoint lacks shows —)."""
    labels = labels_for([r["checkpoint"] for r in results])
    order, values = [], {}
    for col, result in enumerate(results):
        for name, value, fmt in metric_rows(result):
            if name not in values:
                order.append(name)
                values[name] = (fmt, {})
            values[name][1][col] = value
    cells = [["metric", *labels]]
    cells += [[name, *(_cell(values[name][1].get(col), values[name][0]) for col in range(len(results)))]
              for name in order]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
             for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def summary_line(results: List[dict], seconds: float) -> str:
    parts = []
    for result, label in zip(results, labels_for([r["checkpoint"] for r in results])):
        figures = [f"{name.strip()} {_cell(value, fmt)}" for name, value, fmt in metric_rows(result)
                   if name in ("perplexity", "bits per byte", "task accuracy (all)", "MC accuracy")
                   or (name.startswith("lm-eval ") and (name.endswith(" acc") or " exact_match" in name))]
        parts.append(f"{label}: " + ", ".join(figures))
    return f"eval: {len(results)} checkpoint(s) in {seconds:.1f} s — " + "; ".join(parts)


def write_report(path: str, report: dict) -> None:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    tmp.replace(out)
