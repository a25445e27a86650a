"""`myllm data stats`: counts, skipped reasons, tokens and bytes per token, JSON for the planner, histogram."""

from __future__ import annotations

import json

from data_helpers import run_tool, write_jsonl

from myllm_mc.data.stats import corpus_stats


def test_stats_counts_and_tokens(tmp_path, small_tokenizer):
    docs = [{"text": "abc"}, {"text": "héllo wörld"}, {"text": "x" * 1000}]
    path = write_jsonl(tmp_path / "d.jsonl", docs)
    with open(path, "ab") as f:
        f.write(b'{"text": ""}\n{"text": broken\n{"nope": 1}\n')
    stats = corpus_stats([path], tokenizer=small_tokenizer, progress=False)
    assert stats.documents == 3
    assert stats.characters == 3 + 11 + 1000
    assert stats.bytes == 3 + 13 + 1000                     # é and ö are two UTF-8 bytes each
    assert stats.skipped["empty"] == 1 and stats.skipped["malformed_json"] == 1 and stats.skipped["missing_key"] == 1
    tokens = sum(len(small_tokenizer.encode(d["text"])) for d in docs)
    assert stats.tokens == tokens
    assert abs(stats.bytes_per_token - stats.bytes / tokens) < 1e-12
    assert stats.length_chars["max"] == 1000 and stats.length_chars["min"] == 3 and stats.length_chars["p50"] == 11


def test_stats_cli_json_and_histogram(tmp_path, corpus_docs, small_tokenizer):
    path = write_jsonl(tmp_path / "c.jsonl", corpus_docs[:100])
    png = tmp_path / "lengths.png"
    proc = run_tool("-m", "myllm_mc.cli", "data", "stats", path, "--tokenizer", small_tokenizer.path, "--json",
                    "--histogram", png)
    report = json.loads(proc.stdout)
    assert report["documents"] == 100
    assert report["bytes"] == sum(len(d["text"].encode()) for d in corpus_docs[:100])
    assert 3.0 < report["bytes_per_token"] < 5.0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    text = run_tool("-m", "myllm_mc.cli", "data", "stats", path, "--tokenizer", small_tokenizer.path).stdout
    assert f"--set data.bytes_per_token={report['bytes_per_token']:.3f}" in text
    bad = run_tool("-m", "myllm_mc.cli", "data", "stats", tmp_path / "missing.jsonl", check=False)
    assert bad.returncode == 2 and "no such input file" in bad.stderr and bad.stderr.count("\n") == 1
