"""`myllm export hf|gguf ... --check`: the exported model against the checkpoint it came from, once, on held-out
text of the shipped corpus — the file is loaded by the program users will load it with (`transformers` for HF,
llama.cpp for GGUF), never by our own reader.

GGUF without llama.cpp (llama-cpp-python is an sdist-only, optional install): the file is read instead by
transformers' GGUF loader, which parses and dequantizes it with the `gguf` package and un-permutes Q/K itself —
no code of ours — so it is still an independent check of the mapping; the line names the reader, and one more
line on stderr says how to get the llama.cpp check (llama.cpp stays the reference in CI). Not for mixture-of-experts
files: transformers 5.24's GGUF reader builds `llama` files with experts (Mixtral) as a dense Llama whose MLPs it
leaves at random initialisation, and reads `qwen3moe` without its expert size (it ignores
expert_feed_forward_length); such a check is refused in one line naming the llama.cpp install.

One line: perplexity of both, their relative difference, top-1 agreement and the largest logit difference. The
export is refused (exit 1, the files are kept for inspection) when top-1 agreement falls below the type's floor:
f32 must agree everywhere it is not a near-tie; f16/bf16 and the 8-bit type nearly everywhere; 4-bit types are
lossy by design and only have to stay recognisably the same model.

The sample is 8 windows of up to 256 tokens (2,048 tokens with seq_length ≥ 256): agreement is a rate, and on a
real model a third of the positions are near-ties that rounding may flip (SmolLM2-135M, Q8_0: 96–97 % over
2,048 tokens, but 92.6–94.5 % on 2 × 128), so a small sample would refuse faithful exports by chance.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np

from .scoring import heldout_windows, llama_cpp_available, llama_cpp_install_hint, llama_cpp_logits, token_nll

CORPUS = Path(__file__).resolve().parents[2] / "data" / "corpus.jsonl.zst"     # the shipped corpus (its end)
LLAMA_CPP, TRANSFORMERS_GGUF = "llama.cpp", "transformers GGUF reader"        # the GGUF readers, as the line names them
TOP1_FLOOR = {"f32": 0.99, "f16": 0.97, "bf16": 0.95, "q8_0": 0.95, "q4_0": 0.75, "q4_1": 0.75}


class ExportMismatch(RuntimeError):
    """The exported model does not reproduce the checkpoint; the message is one line."""


def _ours(cfg, checkpoint: str, windows: List[List[int]]) -> List[np.ndarray]:
    import torch

    from myllm_mc.checkpoint import resolve_weights

    from .weights import build_single, load_weights, logits, single_process

    model = build_single(single_process(cfg))
    load_weights(model, resolve_weights(checkpoint))
    return [logits(model, torch.tensor([w]))[0, :, :cfg.model.vocab_size].numpy() for w in windows]


def _hf(path: Path, windows: List[List[int]], vocab: int) -> List[np.ndarray]:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32).eval()
    with torch.no_grad():
        return [model(torch.tensor([w])).logits[0, :, :vocab].float().numpy() for w in windows]


def _gguf_llama_cpp(path: Path, windows: List[List[int]], vocab: int) -> List[np.ndarray]:
    from llama_cpp import Llama

    llm = Llama(model_path=str(path), n_ctx=max(len(w) for w in windows) + 8, logits_all=True, verbose=False,
                n_threads=2, seed=0)
    return [llama_cpp_logits(llm, w)[:, :vocab] for w in windows]


def _gguf_transformers(path: Path, windows: List[List[int]], vocab: int) -> List[np.ndarray]:
    """transformers' GGUF loader (gguf-py dequantizes every type to fp32); token ids go in directly, so the GGUF's
    tokenizer is never converted."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32).eval()
    with torch.no_grad():
        return [model(torch.tensor([w])).logits[0, :, :vocab].float().numpy() for w in windows]


def gguf_reader() -> Tuple[str, Optional[str]]:
    """(the reader `check_export` uses for GGUF, and — when it is not llama.cpp — the one line saying why and how
    to get the llama.cpp check)."""
    if llama_cpp_available():
        try:
            import llama_cpp  # noqa: F401  (a broken install — e.g. a missing libllama — must not end in a traceback)
            return LLAMA_CPP, None
        except (ImportError, OSError) as err:
            why = f"llama.cpp is installed but does not load ({type(err).__name__}: {err})"
    else:
        why = "llama.cpp (llama-cpp-python) is not installed"
    return TRANSFORMERS_GGUF, f"{why}; checked with {TRANSFORMERS_GGUF} instead — for the llama.cpp check: " \
                              f"{llama_cpp_install_hint()}"


def check_export(cfg, checkpoint: str, kind: str, path, fmt: str, windows: int = 8, length: int = 256,
                 corpus: Path = CORPUS) -> str:
    """Compare; return the one-line report or raise ExportMismatch."""
    from myllm_mc.data.tokenizer import Tokenizer

    if kind == "hf":
        program, read = "transformers", _hf
    else:
        program, note = gguf_reader()
        read = _gguf_llama_cpp if program == LLAMA_CPP else _gguf_transformers
        if program != LLAMA_CPP and cfg.model.moe.num_experts:
            raise ExportMismatch(f"{note.split(';')[0]}, and {TRANSFORMERS_GGUF} cannot check a mixture-of-experts GGUF"
                                 " (it reads Mixtral's as a dense Llama and Qwen3-MoE's without the expert size); the"
                                 f" export is written at {path} — fix: for the llama.cpp check: "
                                 f"{llama_cpp_install_hint()}")
        if note:
            print(note, file=sys.stderr)
    tokenizer = Tokenizer(cfg.data.tokenizer)
    data = heldout_windows(tokenizer, windows, min(length, cfg.model.seq_length), corpus)
    vocab = cfg.model.vocab_size
    theirs = read(Path(path), data, vocab)
    ours = [o[:, :t.shape[-1]] for o, t in zip(_ours(cfg, checkpoint, data), theirs)]   # padded vocab: ours only
    ours_nll = float(np.concatenate([token_nll(o, w) for o, w in zip(ours, data)]).mean())
    their_nll = float(np.concatenate([token_nll(t, w) for t, w in zip(theirs, data)]).mean())
    agree = sum(int((t.argmax(-1) == o.argmax(-1)).sum()) for t, o in zip(theirs, ours)) / sum(len(w) for w in data)
    worst = max(float(np.abs(t - o).max()) for t, o in zip(theirs, ours))
    line = (f"check ({program}, {fmt}, {sum(len(w) for w in data)} held-out tokens): perplexity "
            f"{math.exp(their_nll):.3f} vs ours {math.exp(ours_nll):.3f} ({math.exp(their_nll - ours_nll) - 1:+.3%}),"
            f" top-1 agreement {agree:.2%}, max |Δ logit| {worst:.2e}")
    floor = TOP1_FLOOR.get(fmt, 0.75)
    if agree < floor:
        raise ExportMismatch(f"{line} — below the {floor:.0%} floor for {fmt}: the export does not reproduce the "
                             f"checkpoint (the files are kept at {path} for inspection)")
    return line
