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
import shutil
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
        fix = ("wait for that run or stop it, or write elsewhere" if here else
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


class OutputError(MyllmError, ValueError):
    """An output path that cannot be written as asked (exists, under a file, is an input); one line with the fix."""


def check_output_path(path, flag: str = "--out") -> Path:
    """Refuse, in one line, an output whose nearest existing ancestor is a file (`notes.txt/x.gguf`): the write
    would fail late with NotADirectoryError. Returns the path."""
    path = Path(path)
    for parent in path.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise OutputError(f"{flag} {path}: {parent} is a file, not a directory — fix: choose an output"
                                  " path under a directory")
            break
    return path


class NewOutput:
    """One writer per output file or directory, published whole or not at all:

        with NewOutput(out, "--out", directory=True) as new:   # lock `<out>.lock`, refuse an existing output
            write into new.tmp                                  # `.<name>.tmp-PID`: unique to this writer
        # success: new.tmp renamed to `out`; any failure: new.tmp removed; the lock released either way

    A second writer of the same output is refused while the first holds the lock (LockHeld, one line naming it)
    and refused as "already exists" after it finished, so neither export is lost. `directory=True` accepts an
    existing empty directory as the output and creates the temporary as a directory. `replace=True` (a file that a
    rerun overwrites, `generate --output`): an existing output is replaced in one rename on success and kept as it
    was on any failure or interrupt. Temporaries of writers that are provably gone (`temporary_is_stale`) are
    removed while the lock is held."""

    def __init__(self, out, flag: str = "--out", directory: bool = False, replace: bool = False):
        self.out = check_output_path(out, flag)
        self.flag = flag
        self.directory = directory
        self.replace = replace
        self.tmp = self.out.with_name(f".{self.out.name}.tmp-{os.getpid()}")
        self.lock = RunLock(self.out.with_name(self.out.name + ".lock"), f"{flag} {self.out}")

    def _exists(self) -> bool:
        out = self.out
        if self.directory and out.is_dir() and not out.is_symlink():
            return any(out.iterdir())
        return out.exists() or out.is_symlink()

    def refuse_held(self) -> None:
        """LockHeld when a live run writes this output now (an early check, before a model loads)."""
        holder = holder_of(self.lock.path)
        if self.lock.path.exists() and not is_stale(holder):
            raise LockHeld(self.lock._held_message(holder))

    def refuse_existing(self) -> None:
        """OutputError when the output exists (an early check; `with` checks again under the lock)."""
        if self._exists() and not self.replace:
            raise OutputError(f"{self.flag} {self.out} already exists — fix: remove it or choose another path")

    def __enter__(self) -> "NewOutput":
        self.lock.acquire()
        try:
            self.refuse_existing()
            for stale in self.out.parent.glob(f".{self.out.name}.tmp-*"):
                if temporary_is_stale(stale.name):
                    _remove(stale)
            if self.directory:
                self.tmp.mkdir()
        except BaseException:
            self.lock.release()
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                if self.directory and self.out.is_dir():
                    self.out.rmdir()             # the empty directory accepted above
                os.replace(self.tmp, self.out)
        finally:
            if exc_type is not None or self.tmp.exists():
                _remove(self.tmp)
            self.lock.release()


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
