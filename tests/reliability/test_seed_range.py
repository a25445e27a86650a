"""A seed outside the 64 bits torch.Generator takes was a 25-line `Overflow when unpacking long long` traceback from
`myllm generate --seed 2**70` (the server already answered 422): SamplingParams.check refuses it for every surface,
in one line, before a model loads."""

from __future__ import annotations

import pytest
import torch

from myllm_mc.infer.sampling import SEED_MAX, SEED_MIN, GenerationError, SamplingParams
from tests.reliability.faults import assert_short, finish, myllm


@pytest.mark.parametrize("seed", [SEED_MIN, -1, 0, SEED_MAX])
def test_every_seed_torch_takes_is_accepted(seed):
    SamplingParams(seed=seed).check()
    torch.Generator().manual_seed(seed)         # the range is torch's own


@pytest.mark.parametrize("seed", [SEED_MIN - 1, SEED_MAX + 1, 2**70])
def test_a_seed_torch_refuses_is_one_error_naming_the_range(seed):
    with pytest.raises((ValueError, RuntimeError), match="Overflow"):     # torch's own words, before the check
        torch.Generator().manual_seed(seed)
    with pytest.raises(GenerationError, match=r"seed=-?\d+: must be a 64-bit integer") as refused:
        SamplingParams(seed=seed).check()
    assert refused.value.param == "seed"


def test_generate_with_a_huge_seed_is_one_line_before_the_model_loads(tiny_checkpoint):
    proc = myllm(["generate", "configs/tiny.yaml", "--set", *tiny_checkpoint["overrides"], "--checkpoint",
                  str(tiny_checkpoint["checkpoint"]), "--prompt", "Once upon a time", "--seed", str(2**70)])
    out = finish(proc, timeout=300)
    assert proc.returncode == 2, out[-3000:]
    assert_short(out, f"seed={2**70}: must be a 64-bit integer", "fix: e.g. --seed 1", most=1)
