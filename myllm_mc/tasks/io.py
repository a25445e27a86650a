"""Finding and reading the shipped task files (data/tasks/KIND/TASK.SPLIT.jsonl)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Sequence

from myllm_mc.jsonl import read_jsonl

TASKS_DIR = Path(__file__).resolve().parents[2] / "data" / "tasks"
KINDS = ("sft", "dpo", "prompts")


def task_files(kind: str, split: str, tasks: Sequence[str] | None = None, root: str | Path = TASKS_DIR
               ) -> List[Path]:
    """Paths of KIND ("sft", "dpo", "prompts") for SPLIT ("train", "test"), all tasks or the ones named."""
    if kind not in KINDS or split not in ("train", "test"):
        raise ValueError(f"kind={kind!r} split={split!r} — fix: kind in {KINDS}, split 'train' or 'test'")
    root = Path(root)
    if tasks is None:
        paths = sorted((root / kind).glob(f"*.{split}.jsonl"))
    else:
        paths = [root / kind / f"{task}.{split}.jsonl" for task in tasks]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing or not paths:
        raise FileNotFoundError(f"task files missing: {', '.join(missing) or root / kind} — fix: run "
                                f"`python tools/build_tasks.py` (or check the task names)")
    return paths


def load_records(paths: Sequence[str | Path]) -> List[dict]:
    """Every record of the given JSONL files, in file order."""
    return [record for path in paths for _, record in read_jsonl(path)]
