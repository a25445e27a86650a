"""Which checkpoint a run starts from: `checkpoint.resume` (full state) and `checkpoint.init_from` (weights only)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

from . import manifest, store
from .errors import CheckpointError


def resolve_resume(resume: Optional[str], root: Optional[str], report: Callable[[str], None] = None,
                   verify: bool = True) -> Optional[Path]:
    """`auto` → the newest *valid* complete checkpoint under `root` (or None: fresh start); a path → that one.

    Valid: its manifest's sizes and checksums match (`verify=False` skips the check). Under `auto` a damaged
    checkpoint is skipped with a message saying which and why; if every one is damaged, or an explicit path is,
    CheckpointError (one line) — never a silent fresh start over a directory of damaged checkpoints.
    """
    report = report or (lambda message: None)
    if not resume:
        return None
    if resume == "auto":
        if not root:
            return None
        pointer, first = Path(root) / store.LATEST_FILE, store.find_latest(root)
        if pointer.is_file() and first is not None and pointer.read_text().strip() != first.name:
            report(f"checkpoint: {pointer} names {pointer.read_text().strip()[:60]!r}, not a complete checkpoint;"
                   f" using the newest complete one")
        candidates = ([first] if first else []) + [p for p in reversed(store.list_complete(root)) if p != first]
        skipped = []
        for candidate in candidates:
            problems = manifest.verify(candidate) if verify else []
            if not manifest.is_damaged(problems):
                if skipped:
                    report(f"checkpoint: resuming from {candidate.name}, the newest valid checkpoint "
                           f"(skipped {'; '.join(skipped)})")
                return candidate
            skipped.append(f"{candidate.name}: {problems[0]}")
        if skipped:
            raise CheckpointError(f"checkpoint.dir {root}: no valid checkpoint ({'; '.join(skipped)}) — fix: restore "
                                  f"them from a copy, or move them away to start from scratch")
        return None
    path = Path(resume)
    latest = store.find_latest(path) if not store.is_complete(path) else path
    if latest is None:
        raise FileNotFoundError(f"checkpoint.resume: {resume} holds no complete checkpoint"
                                " — fix: point it at a step_NNNNNNN directory, or use auto")
    problems = manifest.verify(latest) if verify else []
    if manifest.is_damaged(problems):
        raise CheckpointError(f"checkpoint.resume: {latest} is damaged: {problems[0]} — fix: resume from another "
                              f"checkpoint (checkpoint.resume=auto picks the newest valid one)")
    return latest


def resolve_weights(path: str) -> Path:
    """For `checkpoint.init_from`: a checkpoint root (its latest), a training checkpoint, or a bare model save."""
    path = Path(path)
    if (path / "metadata.json").is_file():           # any megatron distributed checkpoint directory
        return path
    latest = store.find_latest(path)
    if latest is None:
        raise FileNotFoundError(f"checkpoint.init_from: {path} is not a distributed checkpoint and holds none"
                                " — fix: point it at a step_NNNNNNN directory, a checkpoint root, or a model save")
    return latest
