"""Sweeps: every combination validated like `myllm train` validates it; a two-layout sweep on 2 processes."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from myllm_mc.bench.sweep import combinations, parse_sweep, plan_sweep
from myllm_mc.config import ConfigError

REPO = Path(__file__).resolve().parents[2]


def test_sweep_expansion_skips_invalid_layouts_with_the_loader_message():
    axes = parse_sweep(["parallel.tensor=1,2", "parallel.pipeline=1,2", "model.precision=fp32,fp8"])
    assert len(combinations(axes)) == 8
    plan = plan_sweep("configs/tiny.yaml", [], axes, world_size=2)
    assert [combo for combo, _ in plan.runs] == [
        ["parallel.tensor=1", "parallel.pipeline=1", "model.precision=fp32"],
        ["parallel.tensor=1", "parallel.pipeline=2", "model.precision=fp32"],
        ["parallel.tensor=2", "parallel.pipeline=1", "model.precision=fp32"]]
    reasons = {" ".join(s["overrides"]): s["reason"] for s in plan.skipped}
    assert "not divisible by tensor 2 × pipeline 2" in reasons[
        "parallel.tensor=2 parallel.pipeline=2 model.precision=fp32"]
    assert "fp8 needs Transformer Engine" in reasons["parallel.tensor=1 parallel.pipeline=1 model.precision=fp8"]


@pytest.mark.parametrize("bad", ["parallel.tensor", "parallel.tensor=", "=1,2"])
def test_malformed_sweep_is_a_config_error(bad):
    with pytest.raises(ConfigError, match="KEY=V1,V2"):
        parse_sweep([bad])


def test_two_layout_sweep_writes_csv_and_png_and_lists_the_invalid_one(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    done = subprocess.run(
        [sys.executable, "-m", "myllm_mc.cli", "benchmark", "configs/tiny.yaml", "--synthetic-data",
         "--nproc-per-node", "2", "--warmup", "1", "--steps", "1", "--out", str(tmp_path),
         "--sweep", "parallel.tensor=1,2,4",
         "--set", "model.seq_length=64", "training.global_batch_size=4", "training.micro_batch_size=2"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = list(csv.DictReader(open(tmp_path / "sweep.csv")))
    assert [(r["layout"], r["status"]) for r in rows] == [
        ("tp1-pp1-dp2-mbs2-none", "ok"), ("tp2-pp1-dp1-mbs2-none", "ok"), ("parallel.tensor=4", "skipped")]
    assert "world size 2 is not divisible by tensor 4" in rows[2]["reason"]
    assert all(float(r["tokens_per_s_per_gpu"]) > 0 for r in rows[:2])
    assert (tmp_path / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = json.loads((tmp_path / "sweep.json").read_text())
    fastest = max(table["runs"], key=lambda r: r["tokens_per_s_per_gpu"])
    assert table["best"] == fastest["layout"]
    assert "skipped parallel.tensor=4" in done.stdout
    assert "best layout that fits" in done.stdout and done.stdout.strip().splitlines()[-1].startswith(
        "benchmark: 2 run(s) measured, 1 skipped")
