"""The planner's bytes per export format (myllm_mc/plan/weight_formats.py), by hand for the 1B reference."""

from __future__ import annotations

from pathlib import Path

from myllm_mc.config import load
from myllm_mc.plan.params import parameter_breakdown
from myllm_mc.plan.weight_formats import matrix_format, weight_bytes

REPO = Path(__file__).resolve().parents[2]


def test_weight_bytes_of_the_1b_reference():
    m = load(REPO / "configs" / "myllm_1b.yaml", world_size=8).model
    total, norms = 1_055_231_744, parameter_breakdown(m).norms
    assert norms == 28 * 2 * 1792 + 1792
    matrices = total - norms                      # every row (1792 or 4864 weights) is whole 32-weight blocks
    assert weight_bytes(m, "f32") == 4 * total
    assert weight_bytes(m, "bf16") == weight_bytes(m, "f16") == 2 * matrices + 4 * norms
    assert weight_bytes(m, "q8_0") == matrices * 34 // 32 + 4 * norms     # 32 int8 + one fp16 scale per block
    assert weight_bytes(m, "q4_0") == matrices * 18 // 32 + 4 * norms     # 16 bytes of nibbles + one fp16 scale


def test_rows_that_are_not_whole_blocks_stay_f16():
    assert matrix_format("q4_0", 576) == "q4_0" and matrix_format("q4_0", 100) == "f16"
    assert matrix_format("f32", 100) == "f32"
