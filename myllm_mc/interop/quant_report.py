"""Quantization report: every GGUF type of one checkpoint, measured in llama.cpp against our fp32 model.

For each type: file size (and the planner's weight bytes), perplexity on held-out windows of the shipped
corpus, top-1 agreement of llama.cpp's next-token argmax with our fp32 model at every position, and llama.cpp
batch-1 decode tokens/s. Perplexity is computed the same way on both sides (mean next-token NLL per window).

    python tools/quant_report.py runs/smollm2/config.yaml --checkpoint runs/smollm2/checkpoint --markdown out.md
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .scoring import heldout_windows, llama_cpp_available, llama_cpp_install_hint, llama_cpp_logits, token_nll


@dataclass(frozen=True)
class QuantRow:
    fmt: str
    file_mb: float
    planned_weight_mb: float
    perplexity: float
    perplexity_change: float      # relative to our fp32
    top1_agreement: float
    decode_tokens_per_s: float


def _decode_speed(llm, prompt: Sequence[int], tokens: int) -> float:
    llm.reset()
    llm.eval(list(prompt))
    start = time.perf_counter()
    for _ in range(tokens):
        llm.eval([int(np.argmax(llm.scores[llm.n_tokens - 1]))])
    return tokens / (time.perf_counter() - start)


def quant_report(cfg, checkpoint: str, fmts: Sequence[str], windows: int = 4, length: int = 256,
                 decode_tokens: int = 32, corpus: Path = Path("data/corpus.jsonl.zst"), threads: int = 2):
    """(our fp32 perplexity, [QuantRow]) — exports each type into a temporary folder and measures it."""
    import torch
    from llama_cpp import Llama

    from myllm_mc.checkpoint import load_model
    from myllm_mc.data.tokenizer import Tokenizer

    from .gguf_export import export_gguf
    from .weights import build_single, logits, single_process

    tok = Tokenizer(cfg.data.tokenizer)
    data = heldout_windows(tok, windows, length, corpus)
    model = build_single(single_process(cfg))
    load_model([model], checkpoint)
    ours = [logits(model, torch.tensor([w]))[0, :, :cfg.model.vocab_size].numpy() for w in data]
    ours_nll = float(np.concatenate([token_nll(o, w) for o, w in zip(ours, data)]).mean())
    rows = []
    with tempfile.TemporaryDirectory(prefix="myllm-quant-") as tmp:
        for fmt in fmts:
            exported = export_gguf(cfg, checkpoint, Path(tmp) / f"model.{fmt}.gguf", fmt)
            llm = Llama(model_path=str(exported.out), n_ctx=max(length, 64 + decode_tokens) + 8, logits_all=True,
                        verbose=False, n_threads=threads, seed=0)
            nll, agree, count = [], 0, 0
            for window, reference in zip(data, ours):
                theirs = llama_cpp_logits(llm, window)
                nll.append(token_nll(theirs, window))
                agree += int((theirs.argmax(-1) == reference.argmax(-1)).sum())
                count += len(window)
            mean_nll = float(np.concatenate(nll).mean())
            speed = _decode_speed(llm, data[0][:64], decode_tokens)
            rows.append(QuantRow(fmt, exported.file_bytes / 1e6, exported.planned_weight_bytes / 1e6,
                                 math.exp(mean_nll), math.exp(mean_nll - ours_nll) - 1, agree / count, speed))
            print(f"  {fmt}: ppl {math.exp(mean_nll):.3f}, top-1 {agree / count:.1%}, {speed:.1f} tok/s", file=sys.stderr)
            del llm
            exported.out.unlink()
    return math.exp(ours_nll), rows


def markdown(ours_ppl: float, rows: Sequence[QuantRow], tokens: int) -> str:
    lines = [f"Our fp32 model (megatron-core): perplexity {ours_ppl:.3f} on {tokens:,} held-out tokens.", "",
             "| type | file MB | planner weight MB | perplexity (llama.cpp) | vs our fp32 | top-1 agreement |"
             " decode tok/s |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r.fmt.upper()} | {r.file_mb:.1f} | {r.planned_weight_mb:.1f} | {r.perplexity:.3f} |"
                     f" {r.perplexity_change:+.2%} | {r.top1_agreement:.1%} | {r.decode_tokens_per_s:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    from myllm_mc.config import load

    from .gguf_export import GGUF_TYPES

    parser = argparse.ArgumentParser(prog="quant_report.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config")
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--types", default=",".join(GGUF_TYPES))
    parser.add_argument("--windows", type=int, default=4)
    parser.add_argument("--length", type=int, default=256)
    parser.add_argument("--corpus", default="data/corpus.jsonl.zst")
    parser.add_argument("--markdown", default=None, help="also write the table here")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    if not llama_cpp_available():       # it measures llama.cpp itself (decode speed too): no other reader will do
        print(f"quant_report: llama.cpp (llama-cpp-python) is not installed — fix: {llama_cpp_install_hint()}",
              file=sys.stderr)
        return 2
    cfg = load(args.config, world_size=1)
    ours, rows = quant_report(cfg, args.checkpoint, args.types.split(","), args.windows, args.length,
                              corpus=Path(args.corpus))
    table = markdown(ours, rows, args.windows * args.length)
    print(table)
    if args.markdown:
        Path(args.markdown).write_text(table)
    if args.json:
        Path(args.json).write_text(json.dumps({"ours_perplexity": ours, "rows": [asdict(r) for r in rows]}, indent=2))
    return 0
