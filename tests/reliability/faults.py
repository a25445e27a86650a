"""Shared assertions of the fault-injection table: few lines naming the cause, nothing of the run left alive."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
NOISE = re.compile(r"^(step \d|Building a BlendedDataset|\s*$)")   # progress lines, megatron's dataset chatter


def message_lines(output: str) -> list:
    """The lines a user reads as messages (progress and blank lines left out)."""
    return [line for line in output.splitlines() if not NOISE.match(line)]


def assert_short(output: str, *needles: str, most: int = 3) -> None:
    lines = message_lines(output)
    assert len(lines) <= most, f"{len(lines)} message lines:\n" + "\n".join(lines[:40])
    assert "Traceback" not in output, output[-3000:]
    for needle in needles:
        assert needle in output, f"{needle!r} not in:\n{output[-2000:]}"


def processes_mentioning(marker: str) -> list:
    """PIDs (other than ours) whose command line contains `marker` (a unique temporary path of the run)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker in cmdline and state != "Z":
            found.append(int(entry))
    return found


def assert_nothing_left(marker: str, within: float = 5.0) -> None:
    deadline = time.time() + within
    while time.time() < deadline and processes_mentioning(marker):
        time.sleep(0.2)
    left = processes_mentioning(marker)
    for pid in left:                         # never leave them to the next test
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert not left, f"{len(left)} processes of the run still alive {within} s after the parent exited"


def myllm(args, env_extra=None, **popen) -> subprocess.Popen:
    """`python -m myllm_mc.cli ARGS` in its own process group, output to a pipe (stderr merged)."""
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", **(env_extra or {}))
    return subprocess.Popen([sys.executable, "-m", "myllm_mc.cli", *args], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True, **popen)


def train_args(overrides, *extra):
    return ["train", "configs/tiny.yaml", *extra, "--set", *overrides]


def finish(proc: subprocess.Popen, timeout: float = 600) -> str:
    try:
        out, _ = proc.communicate(timeout=timeout)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return out
