"""`myllm plan --compare` after a real tiny run: the table exists, the parameter count is exact, memory and the
checkpoint size are predicted within ±25 % (CPU: peak resident set per rank against the planner's CPU terms)."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.train.test_train_cli import run

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_plan_compare_after_a_tiny_run(tiny_data, tmp_path):
    overrides = tiny_data + ["training.steps=6", f"logging.dir={tmp_path}", f"checkpoint.dir={tmp_path / 'ckpt'}",
                             "checkpoint.save_interval=6", "logging.log_interval=3"]
    done = run(overrides)
    assert done.returncode == 0, done.stdout[-3000:]
    assert (tmp_path / "peak_memory.rank0.json").is_file()
    ended = done.stdout[done.stdout.index("plan vs measured: tiny against"):]           # `myllm train` ends with it
    assert re.search(r"parameters\s+5,245,184\s+5,245,184\s+1\.000", ended), ended
    command = [sys.executable, "-m", "myllm_mc.cli", "plan", "configs/tiny.yaml", "--set", *overrides,
               "--compare", str(tmp_path)]
    text = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert text.returncode == 0, text.stderr
    print("\n" + text.stdout)
    assert "plan vs measured" in text.stdout and "peak memory per device" in text.stdout
    out = subprocess.run(command + ["--json"], cwd=REPO, capture_output=True, text=True, timeout=120)
    rows = {row["figure"]: row for row in json.loads(out.stdout)["rows"]}
    assert rows["parameters"]["predicted"] == rows["parameters"]["measured"] == 5_245_184
    assert rows["tokens per step"]["measured"] == rows["tokens per step"]["predicted"] == 8 * 128
    assert 0.75 <= rows["peak memory per device"]["ratio"] <= 1.25
    assert 0.75 <= rows["checkpoint size on disk"]["ratio"] <= 1.25
    assert rows["decode tokens/s"]["note"] == "not measured"


def test_peak_memory_is_the_process_own_not_its_parents():
    """ru_maxrss survives fork+exec: a child of a 1.5 GiB parent would report 1.5 GiB. VmHWM does not."""
    code = ("import sys; sys.path.insert(0, %r); from myllm_mc.train.metrics import peak_memory_bytes; "
            "print(peak_memory_bytes())" % str(REPO))
    parent = ("import subprocess, sys; ballast = bytearray(1536 << 20); "
              "print(subprocess.run([sys.executable, '-c', %r], capture_output=True, text=True, check=True).stdout)"
              % code)
    out = subprocess.run([sys.executable, "-c", parent], capture_output=True, text=True, timeout=300, check=True)
    child_peak = int(out.stdout.split()[-1])
    assert 10 << 20 < child_peak < 1024 << 20, child_peak
