"""Reading lm_eval's `--log_samples` files back: per task, per document, the backend's raw answers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Tuple


def read_samples(out_dir) -> Dict[str, Dict[int, list]]:
    """{task: {doc_id: resps}} from every samples_<task>_<time>.jsonl under out_dir."""
    found: Dict[str, Dict[int, list]] = {}
    for path in Path(out_dir).rglob("samples_*.jsonl"):
        task = path.name[len("samples_"):].rsplit("_", 1)[0]
        for line in path.read_text().splitlines():
            row = json.loads(line)
            found.setdefault(task, {})[row["doc_id"]] = row["resps"]
    return found


def _flat(resps) -> List:
    """[[ll, greedy]] / [[ll]] / [[text]] per request → [ll or text, ...]."""
    out = []
    for resp in resps:
        first = resp[0] if isinstance(resp, list) else resp
        first = first[0] if isinstance(first, list) else first
        out.append(first)
    return out


def compare(a: Dict[str, Dict[int, list]], b: Dict[str, Dict[int, list]]) -> Dict[str, Tuple[float, int, int]]:
    """{task: (max |Δ log-likelihood|, documents, generations that differ)} over the documents both scored."""
    report = {}
    for task in sorted(set(a) & set(b)):
        worst, differ = 0.0, 0
        for doc in a[task]:
            for x, y in zip(_flat(a[task][doc]), _flat(b[task][doc])):
                try:
                    worst = max(worst, abs(float(x) - float(y)))
                except ValueError:          # a generation: text
                    differ += x != y
        report[task] = (worst, len(a[task]), differ)
    return report
