"""Preemption: SIGTERM / SIGUSR1 become "save at the next step boundary, then exit with PREEMPTED_EXIT".

Slurm sends USR1 ahead of the time limit (`--signal=B:USR1@N`, forwarded by the batch script) and TERM on
preemption or `scontrol requeue`. Handlers only set a flag: saving inside a signal handler would interleave with
collective communication. The loop asks `should_stop()` once per step; ranks agree with an all-reduce, so a
signal that reached only some ranks still stops all of them at the same step.
"""

from __future__ import annotations

import signal
from typing import Callable, Optional

PREEMPTED_EXIT = 75   # EX_TEMPFAIL: "try again later" — the Slurm script requeues on this code

HANDLED = (signal.SIGTERM, signal.SIGUSR1)


class PreemptionHandler:
    def __init__(self, signals=HANDLED):
        self.signals = tuple(signals)
        self.received: Optional[int] = None
        self._previous = {}

    def _handle(self, signum, frame) -> None:
        self.received = signum

    def install(self) -> "PreemptionHandler":
        for sig in self.signals:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def uninstall(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()

    def should_stop(self, all_reduce_max: Optional[Callable[[int], int]] = None) -> bool:
        """True on every rank if any rank received a signal (`all_reduce_max` makes it collective)."""
        flag = 1 if self.received is not None else 0
        if all_reduce_max is not None:
            flag = all_reduce_max(flag)
        return bool(flag)

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.received).name if self.received is not None else "signal on another rank"
