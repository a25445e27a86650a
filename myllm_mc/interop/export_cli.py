"""`myllm export hf|gguf CONFIG --checkpoint DIR --out PATH [--type f32|f16|bf16|q8_0|q4_0]`.

CONFIG is the config the checkpoint was trained with (its model group and tokenizer); DIR any checkpoint of
it at any parallel layout (a checkpoint root, a step directory or a model save). The export runs in one
process: dist_checkpointing reshards into a TP=1/PP=1 model, which is then mapped tensor by tensor.
"""

from __future__ import annotations

import argparse
import sys

from myllm_mc.config import ConfigError, load


def main(argv) -> int:
    parser = argparse.ArgumentParser(prog="myllm export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("format", choices=["hf", "gguf"])
    parser.add_argument("config")
    parser.add_argument("--checkpoint", required=True, help="checkpoint root, step directory or model save")
    parser.add_argument("--out", required=True, help="HF: a new directory; GGUF: a new .gguf file")
    parser.add_argument("--type", default=None,
                        help="hf: f32 (default), f16, bf16; gguf: f32, f16 (default), bf16, q8_0, q4_0")
    parser.add_argument("--tokenizer", default=None, help="tokenizer.json (default: the config's data.tokenizer)")
    parser.add_argument("--max-shard-size", type=float, default=2.0, help="HF: GiB per safetensors file")
    parser.add_argument("--check", action="store_true",
                        help="load the export with transformers (hf) or llama.cpp (gguf) and compare it with the "
                             "checkpoint on held-out text: perplexity, top-1 agreement (exit 1 below the type's floor)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    cfg = load(args.config, args.overrides, world_size=1)
    from .weights import ConversionError
    try:
        if args.format == "hf":
            from .hf_export import export_hf
            result = export_hf(cfg, args.checkpoint, args.out, dtype=args.type or "f32", tokenizer=args.tokenizer,
                               max_shard_bytes=int(args.max_shard_size * 1024 ** 3))
        else:
            from .gguf_export import export_gguf
            result = export_gguf(cfg, args.checkpoint, args.out, fmt=args.type or "f16", tokenizer=args.tokenizer)
    except (ConversionError, ConfigError, FileNotFoundError) as err:
        print(f"myllm export: {err}", file=sys.stderr)
        return 2
    print(result.summary())
    if args.check:
        from .export_check import ExportMismatch, check_export
        fmt = args.type or ("f32" if args.format == "hf" else "f16")
        try:
            print(check_export(cfg, args.checkpoint, args.format, args.out, fmt))
        except ExportMismatch as err:
            print(f"myllm export: {err}", file=sys.stderr)
            return 1
    return 0
