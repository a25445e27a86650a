"""GRPO end to end on megatron-core, from the tiny model the fine-tuning fixture SFT'd on the tagged counting
task (tests/align/workers/grpo.py has the settings): the first step's identities, held-out reward rising over two
seeds, and two steps on one rollout identical at DP=1 with accumulation, DP=2 and TP=2."""

import pytest

SAMPLED_GAIN = 0.05          # held-out exact answers among sampled replies, end minus start, every seed


@pytest.mark.slow
def test_first_step_policy_is_the_reference_and_the_sampler_agrees_with_the_trainer(runs):
    reference, layouts = runs
    for name in ("grpo_seed1", "grpo_seed2", "grpo_dp1_accum"):
        first = reference[name]["metrics"][0]
        print(f"{name} step 1: kl {first['kl']}, ratio {first['ratio']}, |Δ log p| sampler vs trainer: mean "
              f"{first['logprob_diff']:.2e} max {first['logprob_diff_max']:.2e}")
        assert first["kl"] == 0.0 and first["ratio"] == 1.0 and first["clip_fraction"] == 0.0
        assert first["logprob_diff_max"] < 1e-4
    for name in ("grpo_dp2", "grpo_tp2"):
        assert layouts[0][name]["metrics"][0]["logprob_diff_max"] < 1e-4


@pytest.mark.slow
def test_held_out_reward_rises_over_two_seeds(runs):
    reference, _ = runs
    for seed in (1, 2):
        run = reference[f"grpo_seed{seed}"]
        start, end = run["valid"][0], run["valid"][-1]
        rewards = [m["reward"] for m in run["metrics"]]
        print(f"seed {seed}: held-out sampled exact answers {start['sampled_accuracy']:.3f} → "
              f"{end['sampled_accuracy']:.3f}, sampled reward {start['sampled_reward']:.3f} → "
              f"{end['sampled_reward']:.3f}, greedy {start['accuracy']:.3f} → {end['accuracy']:.3f}; train reward "
              f"first 5 steps {sum(rewards[:5]) / 5:.3f}, last 5 {sum(rewards[-5:]) / 5:.3f}; "
              f"kl at the end {run['metrics'][-1]['kl']:.4f}")
        assert start["step"] == 0 and end["step"] == len(run["losses"])
        assert end["sampled_accuracy"] - start["sampled_accuracy"] >= SAMPLED_GAIN
        assert end["sampled_reward"] > start["sampled_reward"]
        assert run["exit_code"] == 0
        assert run["plot_bytes"] > 10_000                                # grpo.png was written
        assert 0 < run["metrics"][-1]["kl"] < 1.0                       # moved, but stayed near the reference


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["grpo_dp2", "grpo_tp2"])
def test_two_steps_on_one_rollout_match_dp1_with_accumulation(runs, layout):
    """Step 2 reuses step 1's rollout (iterations=2): its ratio is no longer 1, so its loss checks the update."""
    reference, layouts = runs
    expected, got = reference["grpo_dp1_accum"], layouts[0][layout]
    print(f"{layout}: losses {got['losses']} vs DP=1 with accumulation {expected['losses']}; grad norms "
          f"{[m['grad_norm'] for m in got['metrics']]} vs {[m['grad_norm'] for m in expected['metrics']]}")
    assert len(expected["losses"]) == len(got["losses"]) == 2
    assert expected["metrics"][1]["ratio"] != 1.0 and abs(expected["losses"][1]) > 1e-4
    for a, b in zip(expected["losses"], got["losses"]):
        assert abs(a - b) < 1e-5
    for a, b in zip(expected["metrics"], got["metrics"]):
        assert abs(a["grad_norm"] - b["grad_norm"]) < 1e-4 * a["grad_norm"]
