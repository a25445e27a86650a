"""What a complete checkpoint must contain: every file's size and CRC-32, written at save time, checked later.

Why: `myllm_meta.json` only says a save was published, not that its files are still whole — a truncated or
deleted shard (a full disk, a bad copy, a cleaner script) would otherwise be found 200 lines into a resume.
CRC-32 (zlib, GB/s) detects truncation and corruption, not tampering. The manifest is written by rank 0 after
every rank has finished writing and before the directory is published, so a published checkpoint always has one;
checkpoints from before manifests existed verify as "unverified" and are accepted.
"""

from __future__ import annotations

import json
import os
import zlib
from pathlib import Path
from typing import List, Optional

MANIFEST_FILE = "manifest.json"
_SKIP = {MANIFEST_FILE, "myllm_meta.json"}      # meta is written after the manifest (it publishes the save)


def _crc32(path: Path) -> int:
    crc = 0
    with open(path, "rb") as f:
        while chunk := f.read(8 << 20):
            crc = zlib.crc32(chunk, crc)
    return crc


def _files(directory: Path) -> List[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file() and p.name not in _SKIP)


def write(directory: Path) -> dict:
    """Record every file under `directory`; returns the manifest (also saved as manifest.json, fsynced)."""
    directory = Path(directory)
    files = {str(p.relative_to(directory)): {"bytes": p.stat().st_size, "crc32": _crc32(p)} for p in _files(directory)}
    manifest = {"version": 1, "files": files, "bytes": sum(f["bytes"] for f in files.values())}
    tmp = directory / (MANIFEST_FILE + ".tmp")
    with open(tmp, "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, directory / MANIFEST_FILE)
    return manifest


def verify(directory: Path, checksums: bool = True) -> List[str]:
    """Problems found (empty: intact). A checkpoint without a manifest gives ["unverified: no manifest.json"]."""
    directory = Path(directory)
    path = directory / MANIFEST_FILE
    if not path.is_file():
        return ["unverified: no manifest.json (saved before manifests existed)"]
    try:
        files = json.loads(path.read_text())["files"]
    except (OSError, ValueError, KeyError) as err:
        return [f"manifest.json is unreadable ({err})"]
    problems = []
    for name, want in files.items():
        p = directory / name
        if not p.is_file():
            problems.append(f"{name} is missing")
            continue
        size = p.stat().st_size
        if size != want["bytes"]:
            problems.append(f"{name} has {size:,} bytes, the manifest says {want['bytes']:,}")
        elif checksums and _crc32(p) != want["crc32"]:
            problems.append(f"{name} has a wrong checksum")
    return problems


def total_bytes(directory: Path) -> Optional[int]:
    """The checkpoint's size as its manifest records it (None: no readable manifest)."""
    try:
        return int(json.loads((Path(directory) / MANIFEST_FILE).read_text())["bytes"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def is_damaged(problems: List[str]) -> bool:
    return any(not p.startswith("unverified") for p in problems)
