"""`myllm train --nproc-per-node N`: run torchrun as a supervised child so signals reach every rank.

Why not let signals reach torchrun: torchrun dies on SIGUSR1 (the ranks train on, unsupervised), answers
SIGTERM by terminating the ranks on its own schedule, and turns Ctrl-C into pages of tracebacks. So torchrun
and its ranks run in a session of their own (a signal sent to our process group, e.g. Ctrl-C or `kill -- -PGID`,
reaches only this process); each rank reports its PID once its handlers are installed, and this process forwards
TERM / USR1 / INT to exactly those PIDs, then waits for them to save and exit. The ranks leave their exit code in
a file (and exit 0 towards torchrun, so torchrun neither kills the slower ranks nor prints an error report).

After torchrun exits, whatever is left of its session (a checkpoint writer, a data loader worker) is terminated,
so no process of the run outlives this one. If this process is killed outright (SIGKILL), torchrun gets SIGTERM
from the kernel (PR_SET_PDEATHSIG) and stops the ranks itself.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, Optional, Sequence, Set

from .signals import INTERRUPTED_EXIT

FORWARDED = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)
PID_DIR_ENV = "MYLLM_RANK_PID_DIR"        # ranks write <dir>/rank<R>.pid once they handle signals


def announce_rank(rank: int) -> None:
    """Called in a rank after `install_early()`: from now on a forwarded signal is safe to deliver."""
    directory = os.environ.get(PID_DIR_ENV)
    if directory:
        tmp = Path(directory) / f".rank{rank}.pid.tmp"
        tmp.write_text(str(os.getpid()))
        tmp.replace(Path(directory) / f"rank{rank}.pid")


def _die_with_parent() -> None:   # runs in the child between fork and exec
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)   # PR_SET_PDEATHSIG
    except Exception:
        pass


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def end_group(pgid: int, grace: float = 3.0) -> None:
    """TERM what is left of the run's session, then KILL after `grace` seconds."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 2.0)):
        if not _group_alive(pgid):
            return
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.time() + wait
        while time.time() < deadline and _group_alive(pgid):
            time.sleep(0.05)


class Supervisor:
    def __init__(self, command: Sequence[str], env: Dict[str, str], pid_dir: str, prog: str = "myllm train"):
        self.command, self.env, self.pid_dir, self.prog = list(command), env, Path(pid_dir), prog
        self.pending: Optional[int] = None       # the strongest signal received, forwarded to every rank
        self.delivered: Dict[int, Set[int]] = {}  # signal → rank PIDs it reached
        self.interrupts = 0

    def _ranks(self) -> Set[int]:
        pids = set()
        for path in self.pid_dir.glob("rank*.pid"):
            try:
                pids.add(int(path.read_text()))
            except (OSError, ValueError):
                pass
        return pids

    def _forward(self) -> None:
        if self.pending is None:
            return
        done = self.delivered.setdefault(self.pending, set())
        for pid in self._ranks() - done:
            try:
                os.kill(pid, self.pending)
            except ProcessLookupError:
                pass
            done.add(pid)

    def _handle(self, signum, frame) -> None:
        if signum == signal.SIGINT:
            self.interrupts += 1
            if self.interrupts == 1:
                print(f"{self.prog}: interrupted — saving the current step (Ctrl-C again to stop without saving)",
                      file=sys.stderr, flush=True)
            else:
                raise KeyboardInterrupt
        self.pending = max(signum, self.pending or 0)   # TERM > USR1 > INT, as the ranks rank them
        self._forward()

    def run(self) -> int:
        """torchrun's exit status (the caller maps it to the ranks' documented code)."""
        previous = {sig: signal.signal(sig, self._handle) for sig in FORWARDED}
        proc = subprocess.Popen(self.command, env=self.env, start_new_session=True, preexec_fn=_die_with_parent)
        try:
            while True:
                try:
                    code = proc.wait(timeout=0.2)
                    break
                except subprocess.TimeoutExpired:
                    self._forward()              # ranks that announced themselves after the signal
        except KeyboardInterrupt:
            print(f"{self.prog}: stopped without saving (second Ctrl-C); the last saved checkpoint is intact",
                  file=sys.stderr, flush=True)
            end_group(proc.pid, grace=0.0)
            proc.wait()
            code = INTERRUPTED_EXIT
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            end_group(proc.pid)
        return code
