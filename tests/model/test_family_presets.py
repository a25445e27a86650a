"""The real-shape family presets (configs/llama-3.2-1b.yaml, qwen2.5-0.5b, qwen3-0.6b, mistral-7b-v0.3): the
planner's count equals the published parameter count and the megatron-core GPTModel built from the preset on the
meta device (no memory, no initialisation), component by component."""

import pytest

from myllm_mc.config import load

PUBLISHED = {                      # from each release's config.json, derivations in docs/interop.md
    "llama-3.2-1b": 1_235_814_400,
    "qwen2.5-0.5b": 494_032_768,
    "qwen3-0.6b": 596_049_920,
    "mistral-7b-v0.3": 7_248_023_552,
}


@pytest.mark.parametrize("preset", PUBLISHED)
def test_preset_count_is_published_and_built(preset, single_rank):
    from myllm_mc.model import build_model, parameter_counts
    from myllm_mc.parallel.state import init_distributed
    from myllm_mc.plan.params import parameter_breakdown

    cfg = load(f"configs/{preset}.yaml", ["parallel.world_size=auto", "parallel.tensor=1",
                                           "training.global_batch_size=1"], world_size=1)
    planned = parameter_breakdown(cfg.model)
    assert planned.total == PUBLISHED[preset]
    init_distributed(cfg)
    chunks = build_model(cfg, on_meta_device=True)
    counts = parameter_counts(chunks)
    assert {key: getattr(planned, key) for key in counts} == counts
    layer = chunks[0].decoder.layers[0].self_attention
    assert (layer.linear_qkv.bias is not None) == cfg.model.qkv_bias
    assert (type(layer.q_layernorm).__name__ == "RMSNorm") == cfg.model.qk_norm
    assert chunks[0].rotary_pos_emb.inv_freq.numel() == cfg.model.kv_channels // 2
