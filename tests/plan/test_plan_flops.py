"""Megatron-LM's FLOPs accounting against a hand-computed value for the 1B preset at 8,192 tokens."""

import dataclasses

import pytest

from myllm_mc.plan.flops import attention_flops_per_token, flops_per_iteration, flops_per_token, six_nd


def test_megatron_formula_by_hand(one_b):
    h, q, kv, f, s, L, V = 1792, 14 * 128, 2 * 128, 4864, 8192, 28, 65536
    qkv = h * (q + 2 * kv)              # 4,128,768
    core = q * s                        # q·s/2 (causal) × 2 matmuls = 14,680,064
    out = q * h                         # 3,211,264
    mlp = 3 * h * f                     # 26,148,864
    per_layer = qkv + core + out + mlp  # 48,168,960
    assert per_layer == 48_168_960
    bracket = L * per_layer + h * V     # 1,348,730,880 + 117,440,512 = 1,466,171,392
    assert bracket == 1_466_171_392
    per_token = 6 * bracket             # 8,797,028,352
    assert flops_per_token(one_b.model) == pytest.approx(8_797_028_352, rel=1e-12)
    assert flops_per_iteration(one_b.model, 1) == pytest.approx(8_797_028_352 * 8192, rel=1e-12)
    assert flops_per_iteration(one_b.model, 128) == pytest.approx(per_token * 128 * 8192, rel=1e-12)
    assert flops_per_iteration(one_b.model, 128) == pytest.approx(9.2244e15, rel=1e-4)


def test_recompute_adds_a_forward(one_b):
    model = flops_per_iteration(one_b.model, 4)
    assert flops_per_iteration(one_b.model, 4, recompute_full=True) == pytest.approx(model * 4 / 3)


def test_gelu_and_mha_change_the_right_terms(one_b):
    gelu = dataclasses.replace(one_b.model, activation="gelu")
    diff = flops_per_token(one_b.model) - flops_per_token(gelu)
    assert diff == pytest.approx(6 * 28 * 1792 * 4864)            # one h×f matrix per layer fewer
    mha = dataclasses.replace(one_b.model, num_query_groups=14)
    assert flops_per_token(mha) - flops_per_token(one_b.model) == pytest.approx(6 * 28 * 1792 * 2 * (1792 - 256))


def test_non_attention_part_is_6n_without_norms(one_b):
    # without the s-dependent term, Megatron's count is 6 × (parameters − norm weights)
    attention = attention_flops_per_token(one_b.model, causal=True)
    assert flops_per_token(one_b.model) - attention == pytest.approx(6 * (1_055_231_744 - 28 * 2 * 1792 - 1792))


def test_attention_per_token_definitions(one_b):
    full = attention_flops_per_token(one_b.model, causal=False)
    assert full == 12 * 28 * 14 * 128 * 8192
    assert round(full / 1e8) / 10 == 4.9                          # SPEC: ≈ 4.9e9 at 8,192
    assert attention_flops_per_token(one_b.model, causal=True) == full / 2
    assert round(6 * 1_055_231_744 / 1e8) / 10 == 6.3             # SPEC: 6N ≈ 6.3e9


def test_six_nd():
    assert six_nd(1_055_231_744, 27.54e9) == pytest.approx(1.7437e20, rel=1e-4)
