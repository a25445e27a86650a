"""The LR schedule megatron-core's OptimizerParamScheduler produces from our config: warmup, then cosine or WSD."""

import math

import pytest

from myllm_mc.config import load
from myllm_mc.train.optimizer import build_scheduler


class FakeOptimizer:
    """Just the param_groups the scheduler writes `lr` into."""

    def __init__(self):
        self.param_groups = [{"max_lr": None, "min_lr": None, "lr_mult": 1.0, "wd_mult": 1.0}]


def lrs(overrides, steps):
    cfg = load("configs/tiny.yaml", overrides + [f"training.steps={steps}"])
    opt = FakeOptimizer()
    opt.param_groups[0].update(max_lr=cfg.optimizer.lr, min_lr=cfg.optimizer.min_lr)
    scheduler = build_scheduler(cfg, opt)
    out = []
    for _ in range(steps):
        scheduler.step(increment=1)
        out.append(opt.param_groups[0]["lr"])
    return out


def test_warmup_then_cosine_to_min_lr():
    values = lrs(["schedule.warmup_steps=10", "optimizer.lr=1e-3", "optimizer.min_lr=1e-4"], 110)
    assert values[4] == pytest.approx(1e-3 * 5 / 10)             # linear warmup
    assert values[9] == pytest.approx(1e-3)                        # peak at the end of warmup
    assert values[59] == pytest.approx(1e-4 + 0.9e-3 * 0.5 * (1 + math.cos(math.pi * 50 / 100)))
    assert values[-1] == pytest.approx(1e-4)


def test_wsd_holds_then_decays_in_the_last_fraction():
    values = lrs(["schedule.warmup_steps=10", "schedule.decay=wsd", "schedule.wsd_decay_fraction=0.2",
                  "optimizer.lr=1e-3", "optimizer.min_lr=1e-4"], 100)
    assert all(v == pytest.approx(1e-3) for v in values[9:80])     # stable phase
    assert values[89] < 1e-3 and values[-1] == pytest.approx(1e-4)  # decay over the last 20 steps


def test_a_run_shorter_than_its_warmup_still_builds():
    assert len(lrs(["schedule.warmup_steps=20"], 2)) == 2
