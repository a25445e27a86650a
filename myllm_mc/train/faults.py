"""Fault injection for tests of the failure paths (hidden CLI flags; never set in a real run).

`poison_steps`: these steps' loss is multiplied by NaN (the NaN guard must skip them).
`kill_in_save_step`: SIGKILL this process after the checkpoint files of that step are written but before they
are published — the worst moment for a crash (the store must still expose the previous checkpoint).
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from typing import Optional, Tuple


@dataclass(frozen=True)
class Faults:
    poison_steps: Tuple[int, ...] = ()
    kill_in_save_step: Optional[int] = None

    def maybe_kill_in_save(self, step: int) -> None:
        if self.kill_in_save_step == step:
            os.kill(os.getpid(), signal.SIGKILL)


NONE = Faults()
