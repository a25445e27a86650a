"""`align.lora` mistakes refused by `myllm finetune` before any process starts: one line naming the key, exit 2.

There is no "rank must divide the tensor-parallel size" refusal: the rank dimension is never split (see
myllm_mc/lora/adapter.py), so an odd rank at TP=2 is accepted here and trained in tests/lora/test_lora_layouts.py.
"""

import pytest

from myllm_mc.align.cli import main

LORA = ["align.lora.enabled=true"]


def _refusal(capsys, *overrides, world=1):
    code = main(["sft", "configs/sft_tiny.yaml", "--world-size", str(world), "--set", *LORA, *overrides])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "fix:" in err[0], err
    return err[0]


@pytest.mark.parametrize("overrides, words", [
    (["align.lora.targets=[linear_qkvv]"], "align.lora.targets: unknown module 'linear_qkvv'"),
    (["align.lora.targets=[]"], "align.lora.targets is empty"),
    (["align.lora.rank=0"], "align.lora.rank=0: the adapters' rank must be a positive whole number"),
    (["align.lora.rank=-4"], "align.lora.rank=-4"),
    (["align.lora.rank=300"], "align.lora.rank=300 exceeds linear_qkv's smaller dimension 256"),
    (["align.lora.rank=300", "align.lora.targets=[linear_fc2]"], "exceeds linear_fc2's smaller dimension 256"),
    (["align.lora.layers=[4]"], "align.lora.layers=[4]: layer indices are 0 … 3"),
    (["align.lora.dropout=1.0"], "align.lora.dropout=1.0"),
    (["checkpoint.init_from=null"], "align.lora.enabled with no checkpoint.init_from"),
])
def test_bad_lora_settings_are_one_line_before_launch(capsys, overrides, words):
    assert words in _refusal(capsys, *overrides)


def test_an_odd_rank_at_tp2_is_accepted(capsys, monkeypatch):
    """The config passes every check (the run itself is not started here: no launcher, so return before it)."""
    import myllm_mc.align.cli as cli

    monkeypatch.setattr(cli, "relaunch_under_torchrun", lambda *args, **kwargs: 0)
    code = main(["sft", "configs/sft_tiny.yaml", "--nproc-per-node", "2", "--set", *LORA, "align.lora.rank=3",
                 "parallel.tensor=2"])
    assert code == 0, capsys.readouterr().err
