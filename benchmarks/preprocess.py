#!/usr/bin/env python
"""Preprocessing throughput: tools/preprocess_data.py on the shipped corpus replicated to >= 50 MB, at 1 and 2
workers; with --megatron-lm PATH also Megatron-LM's own tools/preprocess_data.py (HuggingFaceTokenizer, same
tokenizer.json, same workers) side by side, checking that the token streams are identical.

    python benchmarks/preprocess.py [--megatron-lm /path/to/Megatron-LM] [--workers 1 2] [--min-mb 50]

Throughput is end-to-end wall clock of each command (startup included) — what a user waits for.
Megatron-LM needs its own dependencies (transformers; its checkout imports triton) installed.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def replicate_corpus(out: Path, min_bytes: int) -> tuple:
    """Plain JSONL (Megatron-LM reads plain lines only): the shipped corpus repeated until >= min_bytes."""
    import zstandard
    payload = zstandard.ZstdDecompressor().decompress((REPO / "data/corpus.jsonl.zst").read_bytes())
    copies = math.ceil(min_bytes / len(payload))
    out.write_bytes(payload * copies)
    return copies * payload.count(b"\n"), out.stat().st_size


def tokens_in(prefix: str) -> tuple:
    sys.path.insert(0, str(REPO))
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    import myllm_mc.data  # noqa: F401  (silences megatron-core's "Transformer Engine and Apex" warnings)
    dataset = IndexedDataset(prefix)
    return int(dataset.sequence_lengths.sum()), len(dataset)


def timed(cmd, env) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(map(str, cmd))}\n{proc.stderr[-3000:]}")
    return seconds


def fastest(commands: dict, repeat: int) -> dict:
    """Each named (cmd, env) run `repeat` times, interleaved so load changes hit all alike; best time each."""
    best = {name: float("inf") for name in commands}
    for _ in range(repeat):
        for name, (cmd, env) in commands.items():
            best[name] = min(best[name], timed(cmd, env))
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--megatron-lm", default=None, help="a Megatron-LM checkout to compare against")
    parser.add_argument("--tokenizer", default=str(REPO / "runs/tokenizer-8k/tokenizer.json"))
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--min-mb", type=float, default=50.0)
    parser.add_argument("--repeat", type=int, default=2, help="runs of each command, interleaved; the fastest "
                        "counts (shared machines are noisy)")
    parser.add_argument("--workdir", default=None, help="keep inputs/outputs here (default: a temp dir)")
    args = parser.parse_args()

    tmp = Path(args.workdir or tempfile.mkdtemp(prefix="bench-preprocess-"))
    tmp.mkdir(parents=True, exist_ok=True)
    tokenizer = Path(args.tokenizer)
    if not tokenizer.exists():
        subprocess.run([sys.executable, str(REPO / "tools/train_tokenizer.py"), "--input",
                        str(REPO / "data/corpus.jsonl.zst"), "--vocab-size", "8192", "--output", str(tokenizer.parent)],
                       check=True)
    corpus = tmp / "corpus_x.jsonl"
    documents, size = replicate_corpus(corpus, int(args.min_mb * 1e6))
    print(f"input: {corpus} — {documents:,} documents, {size / 1e6:.1f} MB; tokenizer {tokenizer}; "
          f"{os.cpu_count()} CPUs")

    env = dict(os.environ, PYTHONPATH=str(REPO))
    rows = []
    for workers in args.workers:
        ours, mlm = tmp / f"ours_w{workers}", tmp / f"megatron_w{workers}"
        commands = {"ours": ([sys.executable, str(REPO / "tools/preprocess_data.py"), "--input", str(corpus),
                              "--output-prefix", str(ours), "--tokenizer", str(tokenizer), "--workers", str(workers),
                              "--no-progress"], env)}
        if args.megatron_lm:
            commands["mlm"] = ([sys.executable, str(Path(args.megatron_lm) / "tools/preprocess_data.py"),
                                "--input", str(corpus), "--output-prefix", str(mlm), "--tokenizer-type",
                                "HuggingFaceTokenizer", "--tokenizer-model", str(tokenizer.parent),
                                "--workers", str(workers), "--append-eod"],
                               dict(os.environ, PYTHONPATH=str(Path(args.megatron_lm).resolve())))
        best = fastest(commands, args.repeat)
        tokens, docs = tokens_in(f"{ours}_text_document")
        row = {"workers": workers, "tokens": tokens, "ours_s": best["ours"]}
        if args.megatron_lm:
            row["mlm_s"] = best["mlm"]
            row["identical"] = all((Path(f"{ours}_text_document{s}").read_bytes() ==
                                    Path(f"{mlm}_text_document{s}").read_bytes()) for s in (".bin", ".idx"))
        rows.append(row)
        line = f"workers {workers}: ours {tokens / row['ours_s']:,.0f} tokens/s ({row['ours_s']:.1f} s)"
        if "mlm_s" in row:
            line += (f"; Megatron-LM {tokens / row['mlm_s']:,.0f} tokens/s ({row['mlm_s']:.1f} s); speed-up "
                     f"{row['mlm_s'] / row['ours_s']:.2f}x; .bin/.idx byte-identical: {row['identical']}")
        print(line, flush=True)

    print("\n| workers | tokens | myllm_mc tokens/s | " + ("Megatron-LM tokens/s | speed-up | identical |"
                                                          if args.megatron_lm else ""))
    print("|---|---|---|" + ("---|---|---|" if args.megatron_lm else ""))
    for r in rows:
        cells = [str(r["workers"]), f"{r['tokens']:,}", f"{r['tokens'] / r['ours_s']:,.0f}"]
        if "mlm_s" in r:
            cells += [f"{r['tokens'] / r['mlm_s']:,.0f}", f"{r['mlm_s'] / r['ours_s']:.2f}×",
                      "yes" if r["identical"] else "NO"]
        print("| " + " | ".join(cells) + " |")
    return 0 if all(r.get("identical", True) for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
