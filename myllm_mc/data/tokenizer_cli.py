"""`myllm tokenizer train --input FILES… --vocab-size N --output DIR` (same as tools/train_tokenizer.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from myllm_mc.config import load
from myllm_mc.errors import describe_os_error, fail

from .readers import InputError, expand_inputs
from .tokenizer_training import train_tokenizer


def build_parser(prog: str = "myllm tokenizer train") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Train a byte-level BPE tokenizer (HF tokenizers) with "
                                     "end-of-document, padding and chat special tokens; saves DIR/tokenizer.json.")
    parser.add_argument("--input", nargs="+", required=True, help="files, globs or directories (JSONL/.gz/.zst, "
                        "Parquet, webdataset .tar)")
    parser.add_argument("--vocab-size", type=int, default=None, help="entries including special tokens "
                        "(default: model.vocab_size of --config)")
    parser.add_argument("--output", default=None, help="directory for tokenizer.json (default: the directory of "
                        "data.tokenizer in --config)")
    parser.add_argument("--config", default=None, help="take vocab size and output from this YAML config")
    parser.add_argument("--json-keys", nargs="+", default=["text"], help="keys holding the text (default: text)")
    parser.add_argument("--heldout-every", type=int, default=20, help="every Nth document is held out to measure "
                        "bytes per token (0: none)")
    parser.add_argument("--min-frequency", type=int, default=2, help="least count for a merge")
    parser.add_argument("--progress", action="store_true", help="show the trainer's own progress bars")
    return parser


def run(argv, prog: str) -> int:
    args = build_parser(prog).parse_args(argv)
    vocab_size, output = args.vocab_size, args.output
    if args.config:
        cfg = load(args.config, [], None)
        vocab_size = vocab_size or cfg.model.vocab_size
        output = output or (str(Path(cfg.data.tokenizer).parent) if cfg.data.tokenizer else None)
    if not vocab_size or not output:
        print(f"{prog}: need --vocab-size and --output (or --config CONFIG) — fix: e.g. --vocab-size 8192 "
              f"--output runs/tokenizer-8k", file=sys.stderr)
        return 2
    try:
        files = expand_inputs(args.input)
        report = train_tokenizer(files, vocab_size, output, args.json_keys, args.heldout_every, args.min_frequency,
                                 show_progress=args.progress)
    except (InputError, ValueError) as err:
        return fail(prog, str(err), 2, err)
    except OSError as err:                      # a full or read-only output directory
        return fail(prog, describe_os_error(err, where=output), 1, err)
    except KeyboardInterrupt as err:
        return fail(prog, "interrupted — no tokenizer written", 130, err)
    print(report.summary())
    return 0


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["train"]:
        return run(argv[1:], "myllm tokenizer train")
    print("usage: myllm tokenizer train --input FILES... --vocab-size N --output DIR", file=sys.stderr)
    return 2 if argv[:1] not in (["-h"], ["--help"]) else 0
