"""One run per `checkpoint.dir`: the lock file `<dir>/.lock` names its holder (host, PID).

Held by rank 0 for the whole run (released at exit). A second run on the same directory is refused before it
writes anything, in one line naming the holder; a lock whose holder on this host is no longer running is taken
over with a message; one held from another host is refused with the command to remove it. While the lock is held,
every `.tmp-step_*` directory not belonging to this run is provably a dead run's, so a save may remove it.
"""

from __future__ import annotations

import atexit
from pathlib import Path
from typing import Optional

from myllm_mc.locking import LockHeld, RunLock, holder_of, is_stale

from .errors import CheckpointError

LOCK_FILE = ".lock"


def lock_path(root) -> Path:
    return Path(root) / LOCK_FILE


_held: dict = {}


def acquire(root, warn=None) -> bool:
    """Take the lock on `root` for this process (again: a no-op); released by `release` or at exit."""
    key = str(Path(root).resolve())
    if key in _held:
        return True
    lock = RunLock(lock_path(root), f"checkpoint.dir {root}", warn)
    try:
        lock.acquire()
    except LockHeld as err:
        raise CheckpointError(str(err)) from None
    _held[key] = lock
    atexit.register(lock.release)
    return True


def release_all() -> None:
    while _held:
        _held.popitem()[1].release()


def refuse_if_held(root) -> None:
    """Before launching: one line (CheckpointError) if a live run holds `root`; takes nothing."""
    path = lock_path(root)
    if not path.exists():
        return
    holder: Optional[dict] = holder_of(path)
    if not is_stale(holder):
        raise CheckpointError(RunLock(path, f"checkpoint.dir {root}")._held_message(holder))
