"""LoRA at TP2 (with and without sequence parallelism) and PP2 equals TP1: the same SFT and DPO losses and grad
norms over 3 steps, and the same adapters after them (two torchrun launches; slow tier)."""

import json

import pytest
from lora_helpers import REPO

from myllm_mc.config import load
from myllm_mc.interop.weights import build_single, single_process
from myllm_mc.lora.apply import adapters_of
from myllm_mc.lora.checkpoints import load_weights
from tests.helpers.torchrun import run_torchrun

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def layouts(lora_base, tmp_path_factory):
    work = tmp_path_factory.mktemp("lora-layouts")
    args = ["--work", str(work), "--base", str(lora_base["base"]), "--model", json.dumps(lora_base["model"])]
    reference = run_torchrun("tests/lora/workers/lora_layouts.py", 1, ["--mode", "reference", *args], timeout=900)
    others = run_torchrun("tests/lora/workers/lora_layouts.py", 2, ["--mode", "layouts", *args], timeout=1200)
    return {**reference[0], **others[0]}


def _adapters(lora_base, checkpoint):
    cfg = load(REPO / "configs" / "sft_tiny.yaml", lora_base["model"], world_size=1)
    model = build_single(single_process(cfg))
    load_weights([model], checkpoint)
    return [t.clone() for a in adapters_of([model]) for t in (a.A, a.B)]


@pytest.mark.parametrize("run, reference", [("sft_tp2", "sft_tp1"), ("sft_tp2sp", "sft_tp1"), ("sft_pp2", "sft_tp1"),
                                            ("dpo_tp2", "dpo_tp1")])
def test_layout_equals_tp1(layouts, lora_base, run, reference):
    got, want = layouts[run], layouts[reference]
    loss = max(abs(a["loss"] - b["loss"]) for a, b in zip(got["steps"], want["steps"]))
    norm = max(abs(a["grad_norm"] - b["grad_norm"]) / b["grad_norm"] for a, b in zip(got["steps"], want["steps"])
               if b["grad_norm"])
    mine, theirs = _adapters(lora_base, got["checkpoint"]), _adapters(lora_base, want["checkpoint"])
    weights = max((a - b).abs().max().item() for a, b in zip(mine, theirs))
    moved = max(b.abs().max().item() for b in theirs[1::2])
    print(f"{run} vs {reference}: max |loss diff| {loss:.2e}, grad norm rel {norm:.2e}, adapters {weights:.2e}"
          f" (B moved to {moved:.3f})")
    assert len(got["steps"]) == len(want["steps"]) == 3 and moved > 0
    assert loss < 1e-4 and norm < 1e-4 and weights < 1e-5
