"""Run a script under torchrun and collect what each rank reports.

    results = run_torchrun("tests/parallel/workers/parity.py", nproc=2, args=["--seq", "128"])
    results[0]["loss"]          # rank 0's dict

The script calls `write_result({...})` once per rank (JSON-serialisable dict); the helper returns the list
indexed by rank, or raises with the tail of the processes' output when the launch fails or a rank reported
nothing. PYTHONPATH is set to the repository root, so workers import myllm_mc and tests.helpers directly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional, Sequence

REPO_ROOT = Path(__file__).resolve().parents[2]
RESULTS_ENV = "MYLLM_TEST_RESULTS_DIR"


class TorchrunFailed(AssertionError):
    pass


def run_torchrun(script: str, nproc: int, args: Sequence[str] = (), timeout: float = 300,
                 env: Optional[dict] = None) -> list[dict]:
    """Launch `script` (path relative to the repo root, or absolute) on `nproc` local processes."""
    with tempfile.TemporaryDirectory(prefix="myllm-torchrun-") as results:
        environment = dict(os.environ)
        environment.update(env or {})
        environment["PYTHONPATH"] = os.pathsep.join(
            [str(REPO_ROOT)] + [p for p in environment.get("PYTHONPATH", "").split(os.pathsep) if p])
        environment[RESULTS_ENV] = results
        environment.setdefault("OMP_NUM_THREADS", "1")   # N processes share the cores; no oversubscription
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
                   str(REPO_ROOT / script), *args]
        try:
            done = subprocess.run(command, cwd=REPO_ROOT, env=environment, capture_output=True, text=True,
                                  timeout=timeout)
        except subprocess.TimeoutExpired as err:
            raise TorchrunFailed(f"torchrun {script} timed out after {timeout}s:\n{_tail(err.stdout, err.stderr)}") from None
        if done.returncode != 0:
            raise TorchrunFailed(f"torchrun {script} exited {done.returncode}:\n{_tail(done.stdout, done.stderr)}")
        out = []
        for rank in range(nproc):
            path = Path(results) / f"rank{rank}.json"
            if not path.exists():
                raise TorchrunFailed(f"rank {rank} of {script} wrote no result:\n{_tail(done.stdout, done.stderr)}")
            out.append(json.loads(path.read_text()))
        return out


def write_result(result: dict) -> None:
    """Called inside a torchrun worker: record this rank's result for `run_torchrun`."""
    directory = os.environ[RESULTS_ENV]
    rank = int(os.environ.get("RANK", "0"))
    tmp = Path(directory) / f".rank{rank}.json.tmp"
    tmp.write_text(json.dumps(result))
    tmp.rename(Path(directory) / f"rank{rank}.json")


def _tail(stdout, stderr, lines: int = 60) -> str:
    def text(x):
        return x.decode(errors="replace") if isinstance(x, bytes) else (x or "")
    combined = (text(stdout) + "\n" + text(stderr)).strip().splitlines()
    return "\n".join(line for line in combined[-lines:])
