"""The prepared GPU check, dry-run on CPU: everything that needs no GPU runs (environment, planner figures, the
benchmark configs validated), then it stops with exit code 3 and ONE line naming the missing GPU."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(sys.platform != "linux", reason="bash script")
def test_gpu_check_fails_only_for_the_missing_gpu(tmp_path):
    import torch
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: run tools/gpu_check.sh for real")
    done = subprocess.run(["bash", "tools/gpu_check.sh", "--out", str(tmp_path)], cwd=REPO, capture_output=True,
                          text=True, timeout=300, env=dict(os.environ, PYTHONWARNINGS="ignore"))
    assert done.returncode == 3, done.stdout + done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("gpu_check: stopped — no CUDA GPU visible"), last
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["status"] == "stopped" and "H100/H200" in report["reason"]
    assert report["environment"]["torch"] == torch.__version__
    assert report["steps"]["plan"]["parameters"] == 1_055_231_744        # the 1B preset, exactly
    configs = report["steps"]["configs"]
    assert all(v == "ok" for k, v in configs.items() if k != "status") and "decode" in configs and "moe" in configs
    assert report["steps"]["plan"]["moe"]["layers"] == 18                  # the MoE preset cut to fit one H100
    assert "bf16" not in report["steps"]                                  # nothing GPU-bound was attempted
    assert "**Status: stopped**" in (tmp_path / "gpu_check.md").read_text()
