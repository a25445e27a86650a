"""The checkpoint directory as a crash-safe store.

Layout under `checkpoint.dir`:
    step_0000100/        a complete checkpoint (megatron dist_checkpointing files + myllm_meta.json)
    .tmp-step_0000200/   a save in progress; never read, removed by the next save
    latest               text file naming the newest complete checkpoint

A save writes into a temporary directory, fsyncs every file, renames it into place (atomic on POSIX), and only
then replaces `latest` (write-to-temp + os.replace). A crash or `kill -9` at any moment therefore leaves either
the old `latest` pointing at the old complete checkpoint, or the new one: never a half-written one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import List, Optional

from .manifest import write as write_manifest

META_FILE = "myllm_meta.json"
LATEST_FILE = "latest"
_STEP_DIR = re.compile(r"^step_(\d{7,})$")


def step_dir_name(step: int) -> str:
    return f"step_{step:07d}"


def tmp_dir_for(root: Path, step: int) -> Path:
    return Path(root) / f".tmp-{step_dir_name(step)}"


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(path: Path) -> None:
    """fsync every file and directory under `path`, so the rename that follows publishes durable data."""
    for dirpath, _, filenames in os.walk(path):
        for name in filenames:
            _fsync_path(Path(dirpath) / name)
        _fsync_path(Path(dirpath))


def write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def prepare_tmp(root: Path, step: int) -> Path:
    """A clean temporary directory for this step's save (left-overs of an interrupted save are discarded)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(".tmp-step_*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = tmp_dir_for(root, step)
    tmp.mkdir()
    return tmp


def commit(root: Path, step: int, meta: dict) -> Path:
    """Publish the finished temporary directory of `step` as a complete checkpoint and point `latest` at it.

    Call on one rank, after every rank has finished writing (a barrier).
    """
    root = Path(root)
    tmp = tmp_dir_for(root, step)
    write_manifest(tmp)                      # sizes + checksums of every file, before the meta publishes it
    write_json_atomic(tmp / META_FILE, meta)
    fsync_tree(tmp)
    final = root / step_dir_name(step)
    if final.exists():                       # a re-save of the same step (e.g. save on exit right after interval)
        shutil.rmtree(final)
    os.rename(tmp, final)
    _fsync_path(root)
    latest_tmp = root / (LATEST_FILE + ".tmp")
    with open(latest_tmp, "w") as f:
        f.write(final.name + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(latest_tmp, root / LATEST_FILE)
    _fsync_path(root)
    return final


def is_complete(path: Path) -> bool:
    return (Path(path) / META_FILE).is_file() and _STEP_DIR.match(Path(path).name) is not None


def list_complete(root: Path) -> List[Path]:
    root = Path(root)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and is_complete(p)]
    return sorted(found, key=lambda p: int(_STEP_DIR.match(p.name).group(1)))


def find_latest(root: Path) -> Optional[Path]:
    """The checkpoint `latest` names; falls back to the newest complete one if the pointer is missing or stale."""
    root = Path(root)
    pointer = root / LATEST_FILE
    if pointer.is_file():
        candidate = root / pointer.read_text().strip()
        if is_complete(candidate):
            return candidate
    complete = list_complete(root)
    return complete[-1] if complete else None


def stale_latest(root: Path) -> Optional[str]:
    """One line when `latest` names something that is not a complete checkpoint (a deleted or partial step,
    garbage) while `find_latest` falls back to an older one; None when `latest` is sound or absent."""
    root = Path(root)
    pointer = root / LATEST_FILE
    if not pointer.is_file():
        return None
    named = pointer.read_text(errors="replace").strip()
    fallback = find_latest(root)
    if fallback is None or fallback.name == named:
        return None
    return (f"checkpoint: {pointer} names {named[:60]!r}, not a complete checkpoint; using the newest complete one,"
            f" {fallback.name}")


def read_meta(path: Path) -> dict:
    path = Path(path)
    if not is_complete(path):
        raise FileNotFoundError(f"{path} is not a complete myllm checkpoint (no {META_FILE})"
                                " — fix: pass a step_NNNNNNN directory or the checkpoint root")
    return json.loads((path / META_FILE).read_text())


def prune(root: Path, keep_last: int) -> List[Path]:
    """Delete all but the newest `keep_last` complete checkpoints; never the one `latest` names."""
    latest = find_latest(root)
    complete = list_complete(root)
    doomed = [p for p in complete[:-keep_last] if p != latest] if keep_last > 0 else []
    for path in doomed:
        shutil.rmtree(path, ignore_errors=True)
    return doomed
