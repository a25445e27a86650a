"""Which checkpoint a run starts from: `checkpoint.resume` (full state) and `checkpoint.init_from` (weights only)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from . import store


def resolve_resume(resume: Optional[str], root: Optional[str]) -> Optional[Path]:
    """`auto` → the newest complete checkpoint under `root` (or None: fresh start); a path → that checkpoint."""
    if not resume:
        return None
    if resume == "auto":
        return store.find_latest(root) if root else None
    path = Path(resume)
    latest = store.find_latest(path) if not store.is_complete(path) else path
    if latest is None:
        raise FileNotFoundError(f"checkpoint.resume: {resume} holds no complete checkpoint"
                                " — fix: point it at a step_NNNNNNN directory, or use auto")
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
