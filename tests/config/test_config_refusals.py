"""Every value the schema accepts works or is refused when the config loads (issue 13)."""

import pytest

from myllm_mc.config import ConfigError, load


@pytest.mark.parametrize("override", ["model.activation=gelu", "model.position_embedding=learned_absolute"])
def test_architecture_variants_no_stage_builds_are_refused_at_load(override):
    with pytest.raises(ConfigError, match="swiglu and rope only — fix"):
        load("configs/tiny.yaml", [override], world_size=1)


def test_finetuning_refuses_context_parallel_and_te_packing_before_any_process(monkeypatch):
    from myllm_mc.align.sft import check_align_layout
    cp = load("configs/sft_tiny.yaml", ["parallel.context=2"], world_size=2)
    with pytest.raises(ConfigError, match="parallel.context > 1"):
        check_align_layout(cp)
    import myllm_mc.parallel.hardware as hardware
    monkeypatch.setattr(hardware, "resolve_spec", lambda model: "te")     # as on a GPU with Transformer Engine
    te = load("configs/sft_tiny.yaml", [], world_size=1)
    with pytest.raises(ConfigError, match="align.packing=false"):
        check_align_layout(te)
