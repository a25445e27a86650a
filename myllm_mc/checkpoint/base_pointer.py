"""The pointer an adapter-only checkpoint (LoRA) keeps to the frozen base it was trained on, and its check.

A LoRA run's checkpoints hold only the adapters and their optimizer state; the base weights stay where they were
(`checkpoint.init_from`). The checkpoint's meta records the base's resolved path and a fingerprint of its files
(the sha256 of its manifest, or of its sorted file names and sizes when it has none), so inspection, resume,
export and generation can say which base is needed and refuse a missing or replaced one in one line.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Optional, Tuple

from .errors import CheckpointError
from .manifest import MANIFEST_FILE


def fingerprint(base: Path) -> str:
    base = Path(base)
    manifest = base / MANIFEST_FILE
    if manifest.is_file():
        return "manifest:" + hashlib.sha256(manifest.read_bytes()).hexdigest()[:16]
    h = hashlib.sha256()
    for f in sorted(p for p in base.rglob("*") if p.is_file()):
        h.update(f"{f.relative_to(base)}:{f.stat().st_size};".encode())
    return "files:" + h.hexdigest()[:16]


def pointer(base: Path) -> dict:
    base = Path(base).resolve()
    return {"base": str(base), "base_fingerprint": fingerprint(base)}


def base_status(lora_meta: dict) -> Tuple[bool, str]:
    """(usable, one line): the base exists and is the one the adapters were trained on."""
    base = Path(lora_meta.get("base", ""))
    if not lora_meta.get("base") or not base.is_dir():
        return False, (f"{base} is missing — fix: restore the base checkpoint the adapters were trained on"
                       f" (or export them with `myllm export peft` while it exists)")
    want = lora_meta.get("base_fingerprint")
    now = fingerprint(base)
    if want and now != want:
        return False, (f"{base} has changed since the adapters were trained (fingerprint {now}, recorded {want})"
                       " — fix: restore that base; adapters on other weights compute something else")
    return True, f"{base} (present, fingerprint {now} matches)"


def check_base(lora_meta: Optional[dict], where: str) -> Path:
    """The base's path, or CheckpointError naming what is wrong."""
    ok, line = base_status(lora_meta or {})
    if not ok:
        raise CheckpointError(f"{where} holds LoRA adapters whose base {line}")
    return Path(lora_meta["base"])
