"""Free space before a save: a checkpoint's size is known in advance, so a full disk is refused, not discovered.

Size: the previous checkpoint's manifest when there is one (exact: the same tensors), else the formula the planner
uses for training state — parameters × (weight bytes + 12: fp32 main copy + Adam's two moments) — plus 5 %.

Debug knob (tests only): MYLLM_DEBUG_SPACE_CHECK_BYTES=N makes the pre-check require N bytes instead of the
estimate, so a save can start on a disk too small for it — the way to test the ENOSPC-during-a-save path.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Optional

from .errors import CheckpointError
from .manifest import MANIFEST_FILE

MARGIN = 1.05
OVERHEAD_BYTES = 1 << 20      # metadata, RNG states, scheduler
CHECK_BYTES_ENV = "MYLLM_DEBUG_SPACE_CHECK_BYTES"


def estimate_bytes(parameters: int, precision: str, previous: Optional[Path] = None) -> int:
    if previous is not None and (Path(previous) / MANIFEST_FILE).is_file():
        try:
            return int(json.loads((Path(previous) / MANIFEST_FILE).read_text())["bytes"] * MARGIN)
        except (OSError, ValueError, KeyError):
            pass
    weight_bytes = 4 if precision == "fp32" else 2
    return int(parameters * (weight_bytes + 12) * MARGIN) + OVERHEAD_BYTES


def free_bytes(root) -> int:
    root = Path(root)
    probe = root if root.exists() else next((p for p in root.parents if p.exists()), Path("/"))
    return shutil.disk_usage(probe).free


def check(root, needed: int) -> None:
    """CheckpointError (one line) if `root`'s file system has less than `needed` bytes free."""
    root = Path(root)
    free = free_bytes(root)
    if os.environ.get(CHECK_BYTES_ENV):
        needed = int(os.environ[CHECK_BYTES_ENV])
    if free < needed:
        raise CheckpointError(f"no space for a checkpoint in {root}: needs ~{needed / 2**20:,.1f} MiB, "
                              f"{free / 2**20:,.1f} MiB free — nothing was written, the last checkpoint is intact "
                              f"— fix: free space, lower checkpoint.keep_last, or set checkpoint.dir elsewhere")
