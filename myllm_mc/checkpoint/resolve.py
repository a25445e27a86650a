"""Which checkpoint a run starts from: `checkpoint.resume` (full state) and `checkpoint.init_from` (weights only)."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Callable, Optional

from . import manifest, store
from .errors import CheckpointError

VERIFY_ENV = "MYLLM_VERIFY_CHECKPOINT"         # 1: always checksum a checkpoint before reading it, 0: never
VERIFY_MAX_GIB_ENV = "MYLLM_VERIFY_MAX_GIB"    # checksums on every load up to this size (sizes: always)
VERIFY_MAX_GIB = 16.0
_DONE_ENV = "MYLLM_CHECKPOINT_CHECKED"         # what this process or its parent verified or said (hashes)


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
        first, stale = store.find_latest(root), store.stale_latest(root)
        if stale:
            report(stale)
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


def resolve_weights(path: str, verify: bool = True, report: Optional[Callable[[str], None]] = None) -> Path:
    """For everything that reads weights (`checkpoint.init_from`, generate, chat, eval, serve, export): a checkpoint
    root (its latest), a training checkpoint, or a bare model save.

    A root whose `latest` names a missing or partial step falls back to the newest complete one and says so (as a
    resume does); the checkpoint is verified against its manifest (`verify_for_reading`) unless `verify=False`.
    Messages go to `report` (default stderr), each once per process and its children."""
    path = Path(path)
    if (path / "metadata.json").is_file():           # any megatron distributed checkpoint directory
        target = path
    else:
        target = store.find_latest(path)
        if target is None:
            raise FileNotFoundError(f"checkpoint.init_from: {path} is not a distributed checkpoint and holds none"
                                    " — fix: point it at a step_NNNNNNN directory, a checkpoint root, or a model save")
        stale = store.stale_latest(path)
        if stale:
            _once(stale, report)
    if verify:
        verify_for_reading(target, report)
    return target


def _limit_bytes() -> float:
    try:
        return float(os.environ.get(VERIFY_MAX_GIB_ENV, VERIFY_MAX_GIB)) * 2 ** 30
    except ValueError:
        return VERIFY_MAX_GIB * 2 ** 30


def verify_for_reading(directory: Path, report: Optional[Callable[[str], None]] = None) -> None:
    """Refuse a checkpoint whose files do not match its manifest (CheckpointError, one line naming the file).

    Sizes are always checked; checksums when the checkpoint is at most MYLLM_VERIFY_MAX_GIB (default 16 GiB: the
    1B model's training checkpoint, ~14 GB, verifies in seconds), else one line says they were skipped and how to
    force them (MYLLM_VERIFY_CHECKPOINT=1; =0 skips them always). A checkpoint without a manifest (a bare model
    save, one from before manifests) is read unverified. Each checkpoint is verified once per process and its
    children (torchrun ranks inherit the record, so N ranks do not read it N more times)."""
    directory = Path(directory)
    key = f"verified {_fingerprint(directory)}"
    if _done(key):
        return
    total = manifest.total_bytes(directory)
    force = os.environ.get(VERIFY_ENV, "").strip()
    checksums = force == "1" or (force != "0" and (total or 0) <= _limit_bytes())
    problems = manifest.verify(directory, checksums=checksums)
    if manifest.is_damaged(problems):
        raise CheckpointError(f"checkpoint {directory} is damaged: {problems[0]} — fix: use another checkpoint"
                              f" (`myllm checkpoint inspect {directory.parent}` lists them) or restore it from a copy")
    if not checksums and force != "0" and total is not None:
        size = f"{total / 2 ** 30:.1f} GiB" if total >= 2 ** 30 else f"{total / 2 ** 20:.1f} MiB"
        _once(f"checkpoint {directory}: {size}, over {VERIFY_MAX_GIB_ENV}={_limit_bytes() / 2 ** 30:g}: sizes"
              f" verified, checksums skipped ({VERIFY_ENV}=1 verifies them too)", report)
    _remember(key)


def _fingerprint(directory: Path) -> str:
    """The directory and every file's name, size and mtime: a file rewritten since it was verified is verified again."""
    h = hashlib.sha1(str(directory.resolve()).encode())
    for p in sorted(directory.rglob("*")):
        try:
            st = p.stat()
        except OSError:
            continue
        h.update(f"{p.relative_to(directory)}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()[:20]


def _record() -> list:
    try:
        return json.loads(os.environ.get(_DONE_ENV, "[]"))
    except ValueError:
        return []


def _done(key: str) -> bool:
    return hashlib.sha1(key.encode()).hexdigest()[:20] in _record()


def _remember(key: str) -> None:
    os.environ[_DONE_ENV] = json.dumps((_record() + [hashlib.sha1(key.encode()).hexdigest()[:20]])[-64:])


def _once(message: str, report: Optional[Callable[[str], None]]) -> None:
    if _done(f"said {message}"):
        return
    (report or (lambda m: print(m, file=sys.stderr, flush=True)))(message)
    _remember(f"said {message}")
