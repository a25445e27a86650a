"""A mixture-of-experts model trained at every expert-parallel layout: parity with EP1, bit-exact resume at EP2,
resharding EP2 → EP1 → EP2, EP2 logits = EP1 logits, router statistics in the metrics.

Two torchrun launches in all: 2 processes (EP1 reference, EP2 with both dispatchers, resume, reshard, logits),
then 4 processes (EP2×TP2+SP with expert TP 1 and 2, EP2×PP2). Every run starts from the same initial weights and
reads the same global batches (data-parallel size 2 everywhere), so with no token dropping the routing is the same.
"""

import json

import pytest

from tests.helpers.torchrun import run_torchrun

PARITY = ("ep2", "ep2_allgather")
QUADS = ("ep2_tp2_etp1", "ep2_tp2_etp2", "ep2_pp2")


@pytest.fixture(scope="module")
def runs(tiny_data, tmp_path_factory):
    work = tmp_path_factory.mktemp("moe")
    args = ["--work", str(work), "--overrides", json.dumps(tiny_data)]
    pairs = run_torchrun("tests/train/workers/moe_layouts.py", 2, ["--mode", "pairs", *args], timeout=900)
    quads = run_torchrun("tests/train/workers/moe_layouts.py", 4, ["--mode", "quads", *args], timeout=900)
    return pairs, quads, work


def _max_diff(a, b):
    assert len(a) == len(b)
    return max(abs(x - y) for x, y in zip(a, b))


@pytest.mark.slow
def test_every_expert_layout_matches_ep1(runs):
    pairs, quads, _ = runs
    reference = pairs[0]["ep1"]["losses"]
    assert len(reference) == 8 and reference[-1] < reference[0] - 0.3          # it is training
    for name, source in [(n, pairs) for n in PARITY] + [(n, quads) for n in QUADS]:
        got = next(rank[name]["losses"] for rank in source if rank[name]["losses"])
        diff = _max_diff(reference, got)
        print(f"{name:14s} max |loss − EP1| over 8 steps {diff:.1e}   {source[0][name]['seconds']:.1f} s")
        assert diff < 1e-5, (name, reference, got)
        stats, ref_stats = source[0][name]["metrics"], pairs[0]["ep1"]["metrics"]
        for key in ("moe_tokens_min", "moe_tokens_max", "moe_dropped"):   # same routing: same counts
            assert stats[key] == ref_stats[key], (name, key)
        for key in ("moe_aux_loss", "moe_z_loss"):                        # megatron's losses, reduced by layout
            assert abs(stats[key] - ref_stats[key]) < 1e-4, (name, key, stats[key], ref_stats[key])


@pytest.mark.slow
def test_resume_at_ep2_is_bit_exact(runs):
    pairs, _, _ = runs
    straight, resumed = pairs[0]["ep2"], pairs[0]["ep2_resumed"]
    assert resumed["losses"] == straight["losses"][4:]
    for rank in pairs:
        assert rank["ep2_resumed"]["digest"] == rank["ep2"]["digest"]


@pytest.mark.slow
def test_reshard_ep2_to_ep1_to_ep2(runs):
    pairs, _, _ = runs
    straight = pairs[0]["ep2"]["losses"]
    ep1, ep2 = pairs[0]["ep1_from_ep2"]["losses"], pairs[0]["ep2_from_ep1"]["losses"]
    print(f"EP2→EP1 steps 5-6 {ep1} vs {straight[4:6]}; EP1→EP2 steps 7-8 {ep2} vs {straight[6:]}")
    assert _max_diff(ep1, straight[4:6]) < 1e-5 and _max_diff(ep2, straight[6:]) < 1e-5
    logits = _max_diff(pairs[0]["logits_ep2"], pairs[0]["logits_ep1"])
    print(f"logits of the EP2 step-4 checkpoint at EP2 vs EP1: max |Δ| {logits:.1e}")
    assert logits < 1e-6


@pytest.mark.slow
def test_router_statistics_per_layer_in_metrics(runs):
    _, _, work = runs
    rows = [json.loads(line) for line in (work / "ep2" / "metrics.jsonl").read_text().splitlines()]
    train = [row for row in rows if row["kind"] == "train"]
    assert len(train) == 8
    for layer in range(4):
        for key in ("tokens_min", "tokens_max", "dropped", "aux_loss", "z_loss"):
            assert f"moe/layer{layer}/{key}" in train[-1]
    # 8 sequences × 128 tokens × top-2 over 4 experts: no expert holds more than every token once
    assert 0 <= train[-1]["moe_tokens_min"] <= 512 <= train[-1]["moe_tokens_max"] <= 1024
    assert train[-1]["moe_dropped"] == 0 and train[-1]["moe_aux_loss"] > 0
