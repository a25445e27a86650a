"""`myllm export hf|gguf CONFIG --checkpoint DIR --out PATH [--type f32|f16|bf16|q8_0|q4_0] [--merge]`,
`myllm export peft CONFIG --checkpoint LORA_DIR --out DIR`.

CONFIG is the config the checkpoint was trained with (its model group and tokenizer); DIR any checkpoint of
it at any parallel layout (a checkpoint root, a step directory or a model save). The export runs in one
process: dist_checkpointing reshards into a TP=1/PP=1 model, which is then mapped tensor by tensor.

A LoRA checkpoint (adapters + a pointer to its base): `--merge` folds the adapters into the base's weights first
(a plain model: HF, GGUF, `--check` as for any checkpoint); `peft` writes the adapters alone in Hugging Face PEFT's
format (adapter_config.json + adapter_model.safetensors) for `peft.PeftModel.from_pretrained` on the exported base.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from myllm_mc.checkpoint import is_complete, read_meta, resolve_weights
from myllm_mc.checkpoint.compat import check_checkpoint
from myllm_mc.checkpoint.errors import CheckpointError
from myllm_mc.config import ConfigError, load


def main(argv) -> int:
    parser = argparse.ArgumentParser(prog="myllm export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("format", choices=["hf", "gguf", "peft"])
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
    parser.add_argument("--merge", action="store_true",
                        help="a LoRA checkpoint: merge its adapters into the base's weights (a plain model)")
    parser.add_argument("--base-name", default="", help="peft: base_model_name_or_path to record (default: the base"
                                                         " checkpoint's path)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    cfg = load(args.config, args.overrides, world_size=1)
    with tempfile.TemporaryDirectory(prefix="myllm-merge-") as merged:
        return _export(cfg, args, merged)


def _export(cfg, args, merged_dir: str) -> int:
    from .weights import ConversionError
    try:
        if Path(args.checkpoint).exists():       # the config and tokenizer must be the checkpoint's (compat)
            check_checkpoint(cfg, resolve_weights(args.checkpoint), args.tokenizer)
        if args.format == "peft":
            from .lora_export import export_peft
            print(export_peft(cfg, args.checkpoint, args.out, args.base_name))
            return 0
        args.checkpoint = _plain_checkpoint(cfg, args.checkpoint, args.merge, merged_dir)
        if args.format == "hf":
            from .hf_export import export_hf
            result = export_hf(cfg, args.checkpoint, args.out, dtype=args.type or "f32", tokenizer=args.tokenizer,
                               max_shard_bytes=int(args.max_shard_size * 1024 ** 3))
        else:
            from .gguf_export import export_gguf
            result = export_gguf(cfg, args.checkpoint, args.out, fmt=args.type or "f16", tokenizer=args.tokenizer)
    except (ConversionError, ConfigError, FileNotFoundError, CheckpointError) as err:
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


def _plain_checkpoint(cfg, checkpoint: str, merge: bool, merged_dir: str) -> str:
    """The checkpoint to convert: itself, or for a LoRA checkpoint with --merge its merged weights (written to
    `merged_dir`); a LoRA checkpoint without --merge is refused (its model part holds only adapters)."""
    from .weights import ConversionError
    if not Path(checkpoint).exists():
        return checkpoint                        # the exporter's own line names the missing path
    target = resolve_weights(checkpoint)
    lora = is_complete(target) and read_meta(target).get("lora")
    if not lora:
        return checkpoint
    if not merge:
        raise ConversionError(f"{target} holds LoRA adapters (rank {lora['rank']}) on the base {lora['base']} —"
                              " fix: --merge for a plain merged model, or `myllm export peft` for the adapters")
    from .lora_export import merge_to_checkpoint
    merge_to_checkpoint(cfg, checkpoint, Path(merged_dir) / "merged")
    print(f"merged the LoRA adapters of {target} into its base {lora['base']}")
    return str(Path(merged_dir) / "merged")
