"""Every family at any layout: each imported model re-saved at TP=2 and at PP=2 by a 2-process torchrun launch
(q/k/v biases and q/k norms sharded by megatron-core), then exported to HF from each layout: every tensor must equal
the TP=1 export bit for bit; the MoE families also at EP=2 (two experts per rank). Slow tier: one torchrun per
family."""

from __future__ import annotations

import pytest
import torch
from family_models import FAMILIES, MOE_FAMILIES

from tests.helpers.torchrun import run_torchrun

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("family", FAMILIES + MOE_FAMILIES)
def test_export_from_tp2_and_pp2_equals_tp1(family, family_imports, tmp_path):
    from safetensors.torch import load_file

    from myllm_mc.interop.hf_export import export_hf

    entry = family_imports[family]
    results = run_torchrun("tests/interop/workers/reshard.py", nproc=2,
                           args=[str(entry["config_path"]), str(entry["checkpoint"]), str(tmp_path)])
    qkv = results[0]["shapes"]["tp2"]["decoder.layers.0.self_attention.linear_qkv.weight"]
    m = entry["cfg"].model
    assert qkv[0] == (m.num_attention_heads + 2 * m.num_query_groups) * m.kv_channels // 2   # TP=2 split the rows
    layouts = ("tp2", "pp2") + (("ep2",) if m.moe.num_experts else ())
    if m.moe.num_experts:   # rank 0 holds experts 0 and 1 of 4 at EP=2
        expert = "decoder.layers.0.mlp.experts.local_experts.{}.linear_fc1.weight"
        assert expert.format(1) in results[0]["shapes"]["ep2"] and expert.format(2) not in results[0]["shapes"]["ep2"]
    exports = {}
    for layout, checkpoint in [("tp1", entry["checkpoint"])] + [(name, tmp_path / name) for name in layouts]:
        export_hf(entry["cfg"], str(checkpoint), tmp_path / f"hf-{layout}")
        exports[layout] = load_file(str(tmp_path / f"hf-{layout}" / "model.safetensors"))
    for layout in layouts:
        assert exports[layout].keys() == exports["tp1"].keys()
        assert all(torch.equal(exports[layout][k], exports["tp1"][k]) for k in exports["tp1"]), (family, layout)
