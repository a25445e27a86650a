"""Preemption: SIGTERM / SIGUSR1 become "save at the next step boundary, then exit with PREEMPTED_EXIT";
SIGINT (Ctrl-C) does the same and exits INTERRUPTED_EXIT (130); a second Ctrl-C stops at once.

Slurm sends USR1 ahead of the time limit (`--signal=B:USR1@N`, forwarded by the batch script) and TERM on
preemption or `scontrol requeue`. Handlers only set a flag: saving inside a signal handler would interleave with
collective communication. The loop asks `should_stop()` once per step; ranks agree with an all-reduce, so a
signal that reached only some ranks still stops all of them at the same step.
"""

from __future__ import annotations

import signal
from typing import Callable, Optional

PREEMPTED_EXIT = 75   # EX_TEMPFAIL: "try again later" — the Slurm script requeues on this code
INTERRUPTED_EXIT = 130   # 128 + SIGINT, what a shell reports for Ctrl-C

HANDLED = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)

_early: dict = {"received": None, "installed": False}


def _early_handler(signum, frame) -> None:
    if signum == signal.SIGINT and _early["received"] == signal.SIGINT:
        raise KeyboardInterrupt          # second Ctrl-C: stop now
    _early["received"] = signum


def install_early(signals=HANDLED) -> None:
    """Remember TERM/USR1/INT from now on (main thread only); `PreemptionHandler.install` takes the flag over."""
    for sig in signals:
        signal.signal(sig, _early_handler)
    _early["installed"] = True


def exit_code_for(signum: Optional[int]) -> int:
    return INTERRUPTED_EXIT if signum == signal.SIGINT else PREEMPTED_EXIT


class PreemptionHandler:
    def __init__(self, signals=HANDLED):
        self.signals = tuple(signals)
        self.received: Optional[int] = None
        self._previous = {}

    def _handle(self, signum, frame) -> None:
        if signum == signal.SIGINT and self.received == signal.SIGINT:
            raise KeyboardInterrupt          # second Ctrl-C: stop now, without saving
        # TERM outranks USR1 outranks INT: the exit code follows the most demanding request
        self.received = max(signum, self.received or 0)

    def install(self) -> "PreemptionHandler":
        if _early["received"] is not None:
            self.received, _early["received"] = _early["received"], None
        for sig in self.signals:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def uninstall(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()

    def should_stop(self, all_reduce_max: Optional[Callable[[int], int]] = None) -> bool:
        """True on every rank if any rank received a signal (`all_reduce_max` makes it collective)."""
        flag = int(self.received or 0)
        if all_reduce_max is not None:
            flag = int(all_reduce_max(flag))        # the signal number: every rank agrees on the exit code
            if flag and self.received is None:
                self.received = flag
        return bool(flag)

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.received).name if self.received is not None else "signal on another rank"

    @property
    def exit_code(self) -> int:
        return exit_code_for(self.received)
