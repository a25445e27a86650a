"""One writer per output: a lock file naming its holder (host, PID), and "provably stale" for leftovers.

Why a file and not flock(): it must work on the network file systems clusters put checkpoints on, and a user who
finds a run refused must be able to see who holds the lock. Why host + PID: a holder on this host whose PID is
gone is provably dead, so its lock is taken over (with a message); a holder on another host cannot be checked
from here, so the lock is refused with the command that removes it once the user knows that run is gone.

Taking over is race-free: the stale file is renamed away first (only one contender's rename succeeds) and
the lock is then created with O_EXCL.
"""

from __future__ import annotations

import json
import os
import re
import socket
import sys
import time
from pathlib import Path
from typing import Callable, Optional

from myllm_mc.errors import MyllmError


class LockHeld(MyllmError, RuntimeError):
    """Another live run holds the lock; the message is one line naming it and the fix."""


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def holder_of(path: Path) -> Optional[dict]:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def is_stale(holder: Optional[dict]) -> bool:
    """True only when the holder is provably gone: same host and PID not running, or the same Slurm job (a requeued
    job keeps its id and may land on another node; its previous run is over), or an unreadable lock file."""
    if holder is None:
        return True
    job = os.environ.get("SLURM_JOB_ID")
    if job and holder.get("slurm_job") == job and holder.get("pid") != os.getpid():
        return True
    return holder.get("host") == socket.gethostname() and not pid_alive(int(holder.get("pid", -1)))


class RunLock:
    """`with RunLock(path, "checkpoint directory runs/x"):` — refuse (LockHeld) or take over a stale lock."""

    def __init__(self, path, what: str, warn: Callable[[str], None] = None):
        self.path = Path(path)
        self.what = what
        self.warn = warn or (lambda message: print(message, file=sys.stderr, flush=True))
        self.held = False

    def acquire(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        record = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "since": time.time(),
                             "slurm_job": os.environ.get("SLURM_JOB_ID"), "command": " ".join(sys.argv)[:500]})
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = holder_of(self.path)
                if holder is None and time.time() - _mtime(self.path) < 5:
                    time.sleep(0.2)            # being written by its creator right now
                    holder = holder_of(self.path)
                if not is_stale(holder):
                    raise LockHeld(self._held_message(holder)) from None
                stale = self.path.with_name(f"{self.path.name}.stale-{os.getpid()}")
                try:
                    os.rename(self.path, stale)     # only one contender wins this
                except FileNotFoundError:
                    continue
                os.remove(stale)
                who = f"PID {holder['pid']} on {holder['host']}" if holder else "an unreadable lock"
                self.warn(f"taking over the lock on {self.what}: its holder ({who}) is no longer running")
                continue
            with os.fdopen(fd, "w") as f:
                f.write(record)
            self.held = True
            return self
        raise LockHeld(f"{self.what}: could not take the lock {self.path} — fix: retry")

    def _held_message(self, holder: dict) -> str:
        since = time.strftime("%Y-%m-%d %H:%M", time.localtime(holder.get("since", 0)))
        here = holder.get("host") == socket.gethostname()
        fix = ("stop that run first, or use another directory" if here else
               f"if that run is gone, remove {self.path}")
        return (f"{self.what} is in use by another run (PID {holder.get('pid')} on {holder.get('host')}, since"
                f" {since}) — fix: {fix}")

    def release(self) -> None:
        if self.held:
            holder = holder_of(self.path)
            if holder and holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
                try:
                    os.remove(self.path)
                except FileNotFoundError:
                    pass
            self.held = False

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


_TMP_PID = re.compile(r"\.tmp-(?:(?P<host>[^.]+?)-)?(?P<pid>\d+)$")


def temporary_is_stale(name: str) -> bool:
    """A `*.tmp-PID` (or `*.tmp-HOST-PID`) temporary whose writer is provably gone: ours never count as stale."""
    match = _TMP_PID.search(name)
    if not match:
        return False
    pid, host = int(match.group("pid")), match.group("host")
    if pid == os.getpid():
        return False
    if host is not None and host != socket.gethostname():
        return False
    return not pid_alive(pid)
