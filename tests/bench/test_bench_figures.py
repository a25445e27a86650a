"""The benchmark's arithmetic: FLOPs from the planner's formula (checked by hand for the 1B preset), TFLOP/s and
shares from measured seconds, the pipeline-bubble formula, layout names."""


import pytest

from myllm_mc.bench.measure import bubble_fraction, layout_label, step_flops, summarise
from myllm_mc.config import load


def test_step_flops_is_megatrons_formula_for_the_1b_preset_by_hand():
    cfg = load("configs/myllm_1b.yaml", world_size=8)
    h, q, kv, f, s, L, V, B = 1792, 14 * 128, 2 * 128, 4864, 8192, 28, 65536, 128
    qkv = h * (q + 2 * kv)              # 1792 × 2304           =  4,128,768
    attention = q * s // 2 * 2          # causal half of QKᵀ, then ·V = 14,680,064
    out = q * h                         # 1792 × 1792           =  3,211,264
    mlp = 3 * h * f                     # gate, up, down        = 26,148,864
    per_layer = qkv + attention + out + mlp
    assert per_layer == 48_168_960
    logits = h * V                      # 117,440,512
    per_token = 6 * (L * per_layer + logits)          # 3 GEMMs per weight × 2 FLOPs per multiply-add
    assert per_token == 8_797_028_352
    assert step_flops(cfg) == pytest.approx(per_token * B * s, rel=1e-12)   # 9.2244e15 per optimizer step
    # tensor 2 pads the vocabulary to a multiple of 256: 65,536 already is, so the figure does not move
    assert step_flops(load("configs/myllm_1b.yaml", ["parallel.tensor=2"], world_size=8)) == step_flops(cfg)
    # a vocabulary that needs padding is counted padded, as Megatron-LM counts it
    odd = load("configs/myllm_1b.yaml", ["model.vocab_size=65000"], world_size=8)
    assert step_flops(odd) == pytest.approx(6 * (L * per_layer + h * 65024) * B * s, rel=1e-12)


def _ranks(step_times, data, optimizer, memory):
    return [{"timings": [{"step_time": t, "data_time": d, "optimizer_time": o} for t, d, o in zip(ts, ds, os_)],
             "memory": m, "losses": [9.0, 8.9]} for ts, ds, os_, m in zip(step_times, data, optimizer, memory)]


def test_summary_divides_formula_flops_by_the_slowest_rank_median():
    cfg = load("configs/tiny.yaml", ["parallel.tensor=2"], world_size=4)          # tp2 × dp2
    ranks = _ranks([[1.0, 2.0, 3.0]] * 3 + [[1.5, 1.0, 4.0]], [[0.1, 0.2, 0.3]] * 4, [[0.2, 0.2, 0.2]] * 4,
                   [100, 300, 200, 100])
    row = summarise(cfg, ranks, flops=1.2e13, peak=10.0, peak_label="x", memory_label="y", predicted_memory=150)
    assert row["step_times"] == [1.5, 2.0, 4.0]                     # each step as long as its slowest rank
    assert row["step_time_median"] == 2.0
    assert row["tflops_per_gpu"] == pytest.approx(1.2e13 / 2.0 / 4 / 1e12)
    assert row["mfu"] == pytest.approx(row["tflops_per_gpu"] / 10.0)
    assert row["tokens_per_s"] == pytest.approx(16 * 256 / 2.0)
    assert row["tokens_per_s_per_gpu"] == pytest.approx(row["tokens_per_s"] / 4)
    assert row["share_data"] == pytest.approx(0.2 / 2.0) and row["share_optimizer"] == pytest.approx(0.1)
    assert row["share_forward_backward"] == pytest.approx(0.8)
    assert row["memory_max"] == 300 and row["memory_ratio"] == pytest.approx(2.0)
    assert row["step_time_spread"] == pytest.approx((4.0 - 1.5) / 2.0)


def test_bubble_formula_and_layout_names():
    one_f_one_b = load("configs/tiny.yaml", ["parallel.pipeline=2", "training.micro_batch_size=4"], world_size=2)
    # m = 16 / (4 × 1) = 4 micro-batches: bubble = (p − 1)/m = 1/4 of the ideal step = 1/5 of the real one
    assert bubble_fraction(one_f_one_b) == pytest.approx(0.25 / 1.25)
    interleaved = load("configs/tiny.yaml", ["parallel.pipeline=2", "parallel.virtual_pipeline=2",
                                             "training.micro_batch_size=4"], world_size=2)
    assert bubble_fraction(interleaved) == pytest.approx(0.125 / 1.125)
    assert bubble_fraction(load("configs/tiny.yaml", world_size=2)) == 0.0
    assert layout_label(interleaved) == "tp1-pp2-dp1-vp2-mbs4-none"


def test_summary_refuses_a_run_without_timed_steps():
    cfg = load("configs/tiny.yaml", world_size=1)
    with pytest.raises(ValueError, match="no timed steps"):
        summarise(cfg, [{"timings": [], "memory": 0, "losses": []}], 1.0, 1.0, "", "", 1)
