"""`--derive`: budgets in, the MyLLM shape out."""

import pytest

from myllm_mc.config import ConfigError, from_dict
from myllm_mc.plan.derive import Shape, closest_shape, derive, ffn_for, kv_groups_for
from myllm_mc.plan.params import parameter_breakdown

MYLLM = Shape(hidden=1792, layers=28, heads=14, kv_groups=2, ffn=4864)


@pytest.mark.parametrize("params", [1.055231744e9, 1.05e9])
def test_one_b_budget_gives_the_myllm_shape(params):
    plan = derive(params=params, tokens=27.54e9, vocab=65536, context=8192)
    assert plan.shape == MYLLM
    assert plan.parameters == 1_055_231_744
    assert (plan.global_batch, plan.steps) == (128, 26_264)
    cfg = from_dict(plan.config)                               # the YAML snippet is a loadable config
    assert parameter_breakdown(cfg.model).total == 1_055_231_744
    assert (cfg.parallel.tensor, cfg.parallel.pipeline, cfg.parallel.data) == (1, 1, 8)


def test_compute_budget_gives_the_same_shape():
    # 12.24 h on 8 × H100 at 50 % MFU = 1.743e20 FLOPs; / (6 × 27.54e9) = 1.055e9 parameters
    plan = derive(hours=12.24, gpus=8, gpu="h100", mfu=0.5, tokens=27.54e9)
    assert plan.shape == MYLLM


def test_rules():
    assert ffn_for(1792) == 4864                               # 4,778.7 → next multiple of 256
    assert kv_groups_for(14) == 2 and kv_groups_for(16) == 2 and kv_groups_for(32) == 4
    small = closest_shape(1.3e8, 65536, 2048)
    assert small.hidden % 256 == 0 and 48 <= small.hidden / small.layers <= 80


def test_chinchilla_default_tokens():
    plan = derive(params=1.05e9)
    assert plan.tokens == pytest.approx(20 * plan.parameters)


def test_missing_budget_is_a_one_line_error():
    with pytest.raises(ConfigError, match="--params") as err:
        derive(tokens=1e9)
    assert "\n" not in str(err.value)
