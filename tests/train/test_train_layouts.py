"""Training on megatron-core at every layout: parity of the first steps, bit-exact resume, resharding.

Two torchrun launches in all (CI has 2 cores): a 1-process reference that also writes the shared initial
weights, then one 2-process launch that trains every 2-rank layout in turn.
"""

import json

import pytest

from tests.helpers.torchrun import run_torchrun


@pytest.fixture(scope="module")
def runs(tiny_data, tmp_path_factory):
    work = tmp_path_factory.mktemp("layouts")
    args = ["--work", str(work), "--overrides", json.dumps(tiny_data)]
    reference = run_torchrun("tests/train/workers/layouts.py", 1, ["--mode", "reference", *args], timeout=600)
    layouts = run_torchrun("tests/train/workers/layouts.py", 2, ["--mode", "layouts", *args], timeout=900)
    return reference[0], layouts


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["dp2", "tp2", "tp2_sp", "pp2", "pp2_vpp2", "cp2"])
def test_first_ten_losses_match_dp1_with_accumulation(runs, layout):
    reference, layouts = runs
    expected = reference["dp1_accum2"]["losses"]
    got = layouts[0][layout]["losses"][:10]
    assert len(expected) == 10 and len(got) == 10
    assert expected[-1] < expected[0] - 0.5                       # it is training, not standing still
    diffs = [abs(a - b) for a, b in zip(expected, got)]
    print(f"{layout}: max |loss diff| over 10 steps = {max(diffs):.2e}")
    assert max(diffs) < 1e-4, (layout, diffs)


@pytest.mark.slow
def test_resume_is_bit_exact(runs):
    _, layouts = runs
    straight, resumed = layouts[0]["dp2"], layouts[0]["dp2_resumed"]
    assert len(resumed["losses"]) == 10
    assert resumed["losses"] == straight["losses"][10:]             # bit-identical, not approximately
    for rank in layouts:                                            # every rank's shard of the final weights
        assert rank["dp2_resumed"]["digest"] == rank["dp2"]["digest"]


@pytest.mark.slow
def test_reshard_tp2_checkpoint_resumes_at_pp2(runs):
    _, layouts = runs
    tp2_step11 = layouts[0]["tp2"]["losses"][10]
    (pp2_step11,) = layouts[0]["pp2_from_tp2"]["losses"]
    print(f"reshard TP=2 → PP=2: step-11 loss {pp2_step11:.7f} vs {tp2_step11:.7f}")
    assert abs(pp2_step11 - tp2_step11) < 1e-5
