"""Every derived figure SPEC.md lists, reproduced from configs/myllm_1b.yaml within its stated rounding."""

import math

import pytest

from myllm_mc.plan.budget import training_budget
from myllm_mc.plan.hardware import gpu_spec
from myllm_mc.plan.inference import decode_bounds, kv_cache_bytes_per_token
from myllm_mc.plan.report import figures


def test_budget_figures(one_b):
    b = training_budget(one_b)
    assert round(b.initial_loss, 2) == 11.09 and b.initial_loss == math.log(65536)
    assert round(b.tokens_per_parameter, 1) == 26.1
    assert b.tokens_per_step == 128 * 8192 == 1_048_576
    assert b.steps == 27_540_000_000 // 1_048_576 == 26_264
    assert f"{b.six_nd_flops:.2e}" == "1.74e+20"
    assert round(b.six_nd_hours) == 12                           # 1.7437e20 / (8 × 989e12 × 0.5) / 3600
    assert b.six_nd_hours == pytest.approx(6 * 1_055_231_744 * 27.54e9 / (8 * 989e12 * 0.5) / 3600)
    assert b.megatron_hours == pytest.approx(b.six_nd_hours * 8_797_028_352 / (6 * 1_055_231_744))


def test_budget_falls_back_to_steps(tiny):
    b = training_budget(tiny)
    assert b.tokens == 200 * 16 * 256 and b.tokens_from.startswith("training.steps")


def test_kv_cache(one_b):
    per_token = kv_cache_bytes_per_token(one_b.model)
    assert per_token == 2 * 28 * 2 * 128 * 2 == 28_672
    assert round(per_token * 8192 / 1e6) == 235
    assert kv_cache_bytes_per_token(one_b.model, kv_heads=14) == 7 * per_token


def test_decode_bound(one_b):
    bf16, int8, int4 = decode_bounds(one_b.model, 1_055_231_744, 3.35e12)
    assert round(bf16.weight_bytes / 1e7) / 100 == 2.11
    assert round(bf16.tokens_per_s, -1) == 1590
    assert int8.tokens_per_s == pytest.approx(2 * bf16.tokens_per_s)
    assert int4.tokens_per_s == pytest.approx(4 * bf16.tokens_per_s)
    kv = 28_672 * 8192                                          # the KV cache does not shrink with the weights
    assert int4.tokens_per_s_full_context == pytest.approx(3.35e12 / (bf16.weight_bytes / 4 + kv))


def test_hardware_table():
    h100 = gpu_spec("H100 SXM")
    assert (h100.bf16_tflops, h100.hbm_tb_per_s) == (989.0, 3.35)
    assert gpu_spec("a100").fp8_tflops is None
    for name in ("a100", "h100", "h200", "b200"):
        spec = gpu_spec(name)
        assert spec.bf16_tflops > 0 and spec.memory_gib > 0 and spec.hbm_tb_per_s > 0


def test_unknown_gpu_names_the_known_ones():
    from myllm_mc.config import ConfigError
    with pytest.raises(ConfigError, match="a100, h100, h200, b200"):
        gpu_spec("v100")


def test_every_figure_has_a_why(one_b):
    figs = figures(one_b)
    keys = [f.key for f in figs]
    assert len(keys) == len(set(keys))
    assert all(f.why for f in figs)
    by_key = {f.key: f for f in figs}
    assert by_key["params.total"].value == 1_055_231_744
    assert by_key["steps"].value == 26_264
    assert by_key["kv.bytes_per_token"].value == 28_672
