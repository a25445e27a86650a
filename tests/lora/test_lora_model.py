"""LoRA on the model itself (one gloo rank, in process): fresh adapters change nothing, disabled adapters give
the base, merged weights give the adapted model's logits, and the planner counts what is built."""

import pytest
import torch
from lora_helpers import MODEL, REPO

from myllm_mc.config import load
from myllm_mc.lora.apply import adapters_disabled, adapters_of, apply_lora, merge_adapters
from myllm_mc.model import build_model
from myllm_mc.parallel.state import init_distributed
from myllm_mc.plan.lora import adapter_params


def _model(*extra, seed=3):
    cfg = load(REPO / "configs" / "sft_tiny.yaml", MODEL + ["align.lora.enabled=true", "align.lora.rank=4", *extra],
               world_size=1)
    init_distributed(cfg, seed=seed)
    (chunk,) = build_model(cfg)
    chunk.eval()
    return cfg, chunk


def _logits(model, seed=0):
    ids = torch.randint(0, 1024, (2, 48), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return model(ids, torch.arange(48)[None].expand(2, -1), None)


@pytest.mark.parametrize("targets", ["[all-linear]", "[linear_qkv]", "[linear_proj,linear_fc2]"])
def test_fresh_adapters_leave_the_logits_bit_identical(targets):
    cfg, model = _model(f"align.lora.targets={targets}")
    base = _logits(model)
    adapters = apply_lora([model], cfg.align.lora, seed=1)
    assert adapters and all(a.B.abs().max() == 0 and a.A.abs().max() > 0 for a in adapters)
    assert torch.equal(_logits(model), base)                                  # B = 0: exactly the base
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert sum(p.numel() for p in trainable) == adapter_params(cfg.model, cfg.align.lora)
    assert {id(p) for p in trainable} == {id(p) for a in adapters for p in (a.A, a.B)}


def test_merged_weights_give_the_adapted_logits_and_disabled_adapters_the_base():
    cfg, model = _model("align.lora.layers=[1]")
    base = _logits(model)
    adapters = apply_lora([model], cfg.align.lora, seed=1)
    assert len(adapters) == 4                                                # four targets of layer 1 only
    with torch.no_grad():                                                     # as after training: B far from 0
        for adapter in adapters:
            adapter.B.normal_(0, 0.05, generator=torch.Generator().manual_seed(7))
    adapted = _logits(model)
    with adapters_disabled([model]):
        assert torch.equal(_logits(model), base)
    assert (adapted - base).abs().max() > 0.5
    assert merge_adapters([model]) == 4 and not adapters_of([model])
    assert not any("lora" in k for k in model.state_dict())
    diff = (_logits(model) - adapted).abs().max().item()
    print(f"merged vs unmerged logits: max |diff| {diff:.2e}")
    assert diff < 1e-5


def test_planner_counts_the_trainable_parameters_of_the_1b_preset():
    """The 1B preset built on the meta device (no memory): adapters' requires_grad count = the planner's."""
    cfg = load(REPO / "configs" / "myllm_1b.yaml", ["align.lora.enabled=true", "model.spec=local",
                                                    "parallel.world_size=1", "parallel.data=1"], world_size=1)
    init_distributed(cfg)
    (model,) = build_model(cfg, on_meta_device=True)
    apply_lora([model], cfg.align.lora, seed=1)
    built = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(f"1B preset, rank {cfg.align.lora.rank}: {built:,} trainable of {sum(p.numel() for p in model.parameters()):,}")
    assert built == adapter_params(cfg.model, cfg.align.lora) == 11_583_488
