"""A real benchmark run of the tiny preset, in this process: the training step `myllm train` runs, timed."""

import json
import math
import statistics

import pytest

from myllm_mc.bench.cli import main
from myllm_mc.config import load
from myllm_mc.plan.cpu_memory import cpu_memory_per_process
from myllm_mc.plan.flops import flops_per_iteration
from myllm_mc.plan.memory import memory_per_gpu
from myllm_mc.plan.params import padded_vocab_size

SHAPE = ["model.seq_length=128", "training.global_batch_size=8", "training.micro_batch_size=4"]


def test_two_step_benchmark_reports_formula_flops_over_measured_time(tmp_path, capsys):
    code = main(["configs/tiny.yaml", "--synthetic-data", "--warmup", "1", "--steps", "2", "--out", str(tmp_path),
                 "--set", *SHAPE])
    assert code == 0
    table = json.loads((tmp_path / "sweep.json").read_text())
    row, = table["runs"]
    assert row["status"] == "ok" and row["timed_steps"] == 2 and len(row["step_times"]) == 2
    assert row["tokens_per_s"] > 0
    cfg = load("configs/tiny.yaml", SHAPE, world_size=1)
    flops = flops_per_iteration(cfg.model, 8, padded_vocab=padded_vocab_size(cfg.model, 1))
    assert row["flops_per_step"] == flops
    assert row["tflops_per_gpu"] == pytest.approx(flops / statistics.median(row["step_times"]) / 1e12, rel=1e-12)
    assert row["tokens_per_s"] == pytest.approx(8 * 128 / statistics.median(row["step_times"]), rel=1e-12)
    assert row["mfu"] == pytest.approx(row["tflops_per_gpu"] / row["peak_tflops"])
    assert "measured" in row["peak_label"]                                  # CPU: labelled, not a table value
    # it trained the real model: an untrained model's loss is ln(vocab)
    assert row["loss_first"] == pytest.approx(math.log(8192), abs=0.3)
    # the probe saw the optimizer (its timer wraps the optimizer instance) and data through the real loader
    assert 0 < row["share_optimizer"] < 1 and 0 <= row["share_data"] < 1
    assert row["share_forward_backward"] > 0.3
    # the planner's figure for this device: on CPU its per-process model (fp32 grad buffer, working sets)
    bench_cfg = load("configs/tiny.yaml", SHAPE + ["training.steps=3"], world_size=1)   # warmup 1 + 2 timed
    assert row["planner_memory"] == cpu_memory_per_process(bench_cfg).total
    assert row["planner_memory"] > memory_per_gpu(cfg).total
    assert row["memory_max"] > 0 and row["memory_ratio"] == pytest.approx(row["memory_max"] / row["planner_memory"])
    out = capsys.readouterr().out
    assert "measured/planner" in out and out.strip().splitlines()[-1].startswith("benchmark: 1 run(s) measured")
