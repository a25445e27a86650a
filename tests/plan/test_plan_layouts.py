"""`--layouts`: only layouts the config validator accepts, with memory and a recommendation."""

import dataclasses

from myllm_mc.config.validate import resolve_and_validate
from myllm_mc.plan.hardware import gpu_spec
from myllm_mc.plan.layouts import USABLE_FRACTION, layout_options, recommendation
from myllm_mc.plan.report import layout_name


def test_layouts_are_valid_and_complete(one_b):
    options, rejected = layout_options(one_b, 8, "h100")
    names = [layout_name(o.parallel) for o in options]
    assert len(names) == len(set(names))
    for option in options:
        resolve_and_validate(dataclasses.replace(one_b, parallel=option.parallel))   # raises if invalid
        p = option.parallel
        assert p.tensor * p.pipeline * p.context * p.data == 8
    assert "TP4×PP1×CP1×DP2" not in names                     # 4 does not divide 2 KV groups (or 14 heads)
    assert "TP1×PP8×CP1×DP1" not in names                     # 28 layers do not split into 8 stages
    assert "TP1×PP1×CP1×DP8 +SP" not in names                 # SP needs TP
    assert {"TP1×PP1×CP1×DP8", "TP2×PP1×CP1×DP4 +SP", "TP1×PP2×VPP2×CP1×DP4", "TP1×PP4×VPP7×CP1×DP2"} <= set(names)
    assert any("does not divide" in r for r in rejected)


def test_fit_margin_and_recommendation(one_b):
    options, _ = layout_options(one_b, 8, "h100")
    usable = gpu_spec("h100").memory_bytes * USABLE_FRACTION
    assert all(o.fits == (o.memory.total <= usable) for o in options)
    assert layout_name(options[0].parallel) == "TP1×PP1×CP1×DP8"
    assert recommendation(options, "h100").startswith("recommended: TP1×PP1×CP1×DP8")


def test_unfused_no_recompute_does_not_fit_pure_dp_on_a100(one_b):
    model = dataclasses.replace(one_b.model, spec="local", attention_backend="unfused", recompute="none")
    options, _ = layout_options(dataclasses.replace(one_b, model=model), 8, "a100")
    by_name = {layout_name(o.parallel): o for o in options}
    assert not by_name["TP1×PP1×CP1×DP8"].fits                 # ~68.5 GiB of stored s×s softmax and state
    assert options[0].fits and options[0].model_parallel > 1   # the recommendation falls back to splitting
