"""Run a command in its own process group and kill the whole group afterwards.

Why: dist_checkpointing's writer manager process can outlive a parent killed with SIGKILL, and an mpirun or
torchrun that timed out must not leave ranks behind; any of them would hold the output pipe open forever.
Output goes to a temporary file (stderr merged into stdout), never a pipe, for the same reason.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile


def run_in_group(command: list, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, text=True, start_new_session=True,
                                **kwargs)
        try:
            proc.wait(timeout=timeout)
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        out.seek(0)
        return subprocess.CompletedProcess(command, proc.returncode, out.read(), "")
