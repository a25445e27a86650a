"""`python -m myllm_mc.bench.decode`: the GPU check's decode step, run here on the tiny preset (random weights, no
checkpoint, no tokenizer file) — the same code the 1B preset runs on a GPU at batch 1 and 8."""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _decode(*args):
    return subprocess.run([sys.executable, "-m", "myllm_mc.bench.decode", "configs/tiny.yaml", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="2"))


def test_decode_rows_at_two_batch_sizes_against_the_bound(tmp_path):
    out = tmp_path / "decode.json"
    done = _decode("--batch", "1", "4", "--prompt-tokens", "16", "--new-tokens", "24", "--json", str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads(out.read_text())
    assert [r["batch"] for r in rows] == [1, 4]
    for row in rows:
        # the first token of each row comes from prefill; greedy decoding of random weights may stop a row early
        assert row["batch"] * 23 // 2 <= row["decode_tokens"] <= row["batch"] * 23
        # the cache sized to the work: rows × (16 + 24) slots × K,V × 4 layers × 2 KV heads × 64 × fp32
        assert row["kv_bytes"] == row["kv_bytes_planned"] == row["batch"] * 40 * 2 * 4 * 2 * 64 * 4
        assert 0 < row["bound_ratio"] <= 1 and row["bandwidth_source"] == "measured CPU copy"
    lines = [line for line in done.stdout.splitlines() if line.startswith("decode batch")]
    assert len(lines) == 2 and "% of it" in lines[0]


def test_decode_refuses_a_length_beyond_the_context_in_one_line():
    done = _decode("--prompt-tokens", "200", "--new-tokens", "100")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == ["decode: 200 + 100 tokens exceed model.seq_length 256 — fix: fewer"
                                                " --prompt-tokens/--new-tokens"]
