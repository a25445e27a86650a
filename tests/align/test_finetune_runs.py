"""SFT and DPO end to end on megatron-core: learning, layout parity, bit-exact resume, DPO's known values.

Two torchrun launches (CI has 2 cores; the `runs` fixture in conftest.py, shared with test_grpo_runs.py): a 1-process reference (pretrains a tiny model on the shipped corpus,
measures greedy accuracy on held-out format problems before/after SFT, and runs SFT at DP=1 with accumulation),
then one 2-process launch with every 2-rank layout and the DPO runs. The model is a 2-layer, 128-wide variant
of the tiny preset, so the whole module stays within the CI budget.
"""

import math

import pytest



@pytest.mark.slow
def test_sft_raises_held_out_format_accuracy(runs):
    reference, _ = runs
    before, after = reference["before"], reference["after"]
    print(f"held-out format compliance {before['format']:.2f} → {after['format']:.2f}; exact answers "
          f"{before['correct']:.2f} → {after['correct']:.2f}; replies after: {after['replies']}")
    assert before["format"] <= 0.05
    assert after["format"] >= 0.5
    sft = reference["sft"]
    assert sft["valid"][-1]["loss"] < sft["valid"][0]["loss"]
    pre_tps = _median_tokens_per_s(reference["pretrain"])            # same model, layout (DP=1) and batch shape
    sft_tps = _median_tokens_per_s(reference["dp1_accum2"])
    print(f"tokens/s (sequence positions, DP=1, 2-layer model, seq 128, global batch 8): pretraining {pre_tps:.0f},"
          f" SFT packed {sft_tps:.0f} ({sft_tps / pre_tps:.2f}x)")


def _median_tokens_per_s(run):
    values = sorted(m["tokens_per_s"] for m in run["metrics"][1:])   # the first step pays for warm-up
    return values[len(values) // 2]


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["dp2", "tp2", "pp2"])
def test_sft_first_five_losses_match_dp1_with_accumulation(runs, layout):
    reference, layouts = runs
    expected = reference["dp1_accum2"]["losses"]
    got = layouts[0][layout]["losses"][:5]
    assert len(expected) == 5 and len(got) == 5
    assert expected[-1] < expected[0]                                  # training, not standing still
    diffs = [abs(a - b) for a, b in zip(expected, got)]
    print(f"sft {layout}: max |loss diff| over 5 steps = {max(diffs):.2e}")
    assert max(diffs) < 1e-4, (layout, diffs)


@pytest.mark.slow
def test_sft_resume_is_bit_exact(runs):
    _, layouts = runs
    straight, resumed = layouts[0]["dp2"], layouts[0]["dp2_resumed"]
    assert resumed["losses"] == straight["losses"][3:]
    for rank in layouts:
        assert rank["dp2_resumed"]["digest"] == rank["dp2"]["digest"]


@pytest.mark.slow
def test_dpo_starts_at_ln2_and_learns_the_preferences(runs):
    _, layouts = runs
    dpo = layouts[0]["dpo_dp2"]
    first = dpo["metrics"][0]
    assert abs(first["loss"] - math.log(2)) < 1e-6                   # policy = reference: logits are 0
    assert first["kl_proxy"] == 0.0 and first["reward_margin"] == 0.0
    accuracy = [m["reward_accuracy"] for m in dpo["metrics"]]
    print("dpo train reward accuracy per step:", " ".join(f"{a:.2f}" for a in accuracy))
    print("dpo held-out:", [(v["step"], round(v["reward_accuracy"], 3), round(v["loss"], 4)) for v in dpo["valid"]])
    assert sum(accuracy[-5:]) / 5 > 0.9
    valid = [v["reward_accuracy"] for v in dpo["valid"]]
    assert valid[0] == 0.0 and valid[-1] > 0.5                        # ties at step 0; rises with training


@pytest.mark.slow
def test_dpo_tp2_matches_dp2(runs):
    _, layouts = runs
    dp2, tp2 = layouts[0]["dpo_dp2"]["losses"][:5], layouts[0]["dpo_tp2"]["losses"]
    diffs = [abs(a - b) for a, b in zip(dp2, tp2)]
    print(f"dpo tp2 vs dp2: max |loss diff| over 5 steps = {max(diffs):.2e}")
    assert len(tp2) == 5 and max(diffs) < 1e-4

