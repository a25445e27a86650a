"""The MoE benchmark's pieces (issue #26, item 6) without running it: configs/tiny_moe.yaml is the tiny model with
the preset's expert shape (same active parameters as configs/tiny.yaml), a sweep over model.moe.num_experts and
parallel.expert keeps its runs apart and reports each against the first (the dense model), and the GPU check's MoE
step is sized by the planner to one device. The measured figures are in docs/benchmarks.md."""

from pathlib import Path

import pytest

from myllm_mc.bench.gpu_check import MOE_CONFIG, bench_command, check_configs, moe_overrides, moe_plan
from myllm_mc.bench.measure import layout_label
from myllm_mc.bench.report import relative_rounds, relative_to_first
from myllm_mc.bench.sweep import parse_sweep, plan_sweep
from myllm_mc.config import load
from myllm_mc.plan.memory import memory_per_gpu
from myllm_mc.plan.params import parameter_breakdown


def test_tiny_moe_has_the_dense_tiny_models_active_parameters_plus_its_routers():
    moe, dense = (parameter_breakdown(load(c, world_size=1).model) for c in ("configs/tiny_moe.yaml", "configs/tiny.yaml"))
    assert moe.active == dense.total + 3 * 16 * 256 == 5_257_472         # layers 1–3: a router of 16 × hidden 256
    assert moe.total == 17_643_776 and moe.total - moe.active == 3 * 14 * 3 * 256 * 384
    # the sweep's dense run (model.moe.num_experts=0) is configs/tiny.yaml, parameter for parameter
    swept = load("configs/tiny_moe.yaml", ["model.moe.num_experts=0"], world_size=1)
    assert parameter_breakdown(swept.model).total == dense.total


def test_the_moe_sweep_runs_dense_ep1_ep2_and_skips_dense_ep2_with_the_reason():
    plan = plan_sweep("configs/tiny_moe.yaml", [], parse_sweep(["model.moe.num_experts=0,16", "parallel.expert=1,2"]), 2)
    assert [layout_label(cfg) for _, cfg in plan.runs] == [
        "tp1-pp1-dp2-mbs4-none", "tp1-pp1-dp2-mbs4-none-moe16", "tp1-pp1-dp2-ep2-mbs4-none-moe16"]
    (skipped,) = plan.skipped
    assert skipped["overrides"] == ["model.moe.num_experts=0", "parallel.expert=2"]
    assert "expert parallelism needs experts" in skipped["reason"]


def test_runs_are_reported_against_the_first_one():
    rows = [{"status": "ok", "layout": "dense", "tokens_per_s_per_gpu": 1000.0, "step_time_min": 1.0,
             "memory_max": 200, "planner_memory": 250},
            {"status": "skipped", "layout": "x"},
            {"status": "ok", "layout": "moe", "tokens_per_s_per_gpu": 400.0, "step_time_min": 2.0,
             "memory_max": 300, "planner_memory": 350}]
    (moe,) = relative_to_first(rows)
    assert moe == {"layout": "moe", "reference": "dense", "tokens_per_s_per_gpu": 0.4, "tokens_per_s_best_step": 0.5,
                   "memory": 1.5, "planner_memory": pytest.approx(1.4)}
    assert relative_to_first(rows[:2]) == []                              # one measured run: nothing to compare
    assert relative_rounds(relative_to_first(rows)) == []                 # one round


def test_a_sweep_in_rounds_compares_each_run_with_its_own_rounds_reference():
    def row(layout, tokens, step_min):
        return {"status": "ok", "layout": layout, "tokens_per_s_per_gpu": tokens, "step_time_min": step_min,
                "memory_max": 100, "planner_memory": 100}
    # --sweep training.seed=1,2,3 model.moe.num_experts=0,16: the machine is twice as busy in round 2
    rows = [row("dense", 1000.0, 1.0), row("moe", 700.0, 1.5), row("dense", 500.0, 2.0), row("moe", 300.0, 4.0),
            row("dense", 1000.0, 1.0), row("moe", 800.0, 1.2)]
    relative = relative_to_first(rows)
    assert [r["tokens_per_s_per_gpu"] for r in relative] == pytest.approx([0.7, 0.6, 0.8])
    (summary,) = relative_rounds(relative)
    assert summary["rounds"] == 3 and summary["reference"] == "dense"
    assert summary["tokens_per_s_per_gpu"] == pytest.approx(0.7)
    assert (summary["low"], summary["high"]) == pytest.approx((0.6, 0.8))
    assert summary["tokens_per_s_best_step"] == pytest.approx(1 / 1.5)


def test_gpu_check_moe_step_is_the_largest_preset_cut_that_fits_one_gpu():
    h100 = moe_plan("h100")
    assert h100["layers"] == 18 and h100["memory_per_gpu_bytes"] <= h100["usable_bytes"] == int(0.9 * 79.6 * 2**30)
    bigger = load(MOE_CONFIG, ["parallel.world_size=auto", "parallel.expert=1", "training.micro_batch_size=1",
                               "training.global_batch_size=8", "model.num_layers=19"], world_size=1)
    assert memory_per_gpu(bigger).total > h100["usable_bytes"]               # one more layer would not fit
    assert moe_plan("h200")["layers"] == 28                                   # the whole preset fits an H200
    overrides = moe_overrides("h100", 18, have_te=False)
    assert check_configs({"moe": overrides}) == {"moe": "ok"}
    command = bench_command(Path("out"), overrides, ["model.moe.num_experts=0,16"], MOE_CONFIG)
    assert MOE_CONFIG in command and command[-2:] == ["--sweep", "model.moe.num_experts=0,16"]
    assert "model.moe.grouped_gemm=false" in command


def test_cpu_planner_shards_expert_adam_state_over_expert_data_parallel_ranks():
    """At EP 2 on 2 ranks each expert has one owner (expert DP 1): its Adam moments are not halved, as the dense
    parameters' are; at EP 1 both are halved. What the MoE benchmark measured: 336–348 MiB at EP 2."""
    from myllm_mc.plan.cpu_memory import cpu_memory_per_process

    def optimizer(ep):
        cfg = load("configs/tiny_moe.yaml", [f"parallel.expert={ep}"], world_size=2)
        return next(t.bytes for t in cpu_memory_per_process(cfg).terms if t.key == "optimizer_states"), cfg

    experts, dense = 3 * 16 * 294_912, 17_643_776 - 3 * 16 * 294_912
    ep1, cfg = optimizer(1)
    assert ep1 == 8 * (dense + experts) // 2                                 # fp32: 2 moments × 4 B
    ep2, cfg = optimizer(2)
    assert ep2 == 8 * dense // 2 + 8 * experts // 2                          # half the experts, unsharded
    assert round(cpu_memory_per_process(cfg).total / 2**20) == 334
