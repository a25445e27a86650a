"""`myllm data stats INPUT… [--tokenizer PATH] [--json] [--histogram PNG]`: what a corpus holds, in numbers."""

from __future__ import annotations

import argparse
import json
import sys

from myllm_mc.config import load

from .readers import FORMATS_HELP, InputError, expand_inputs
from .stats import corpus_stats
from .tokenizer import Tokenizer, TokenizerError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="myllm data stats", description="Documents, bytes, characters, skipped "
                                     "records, length distribution and, with a tokenizer, tokens and bytes per token.")
    parser.add_argument("inputs", nargs="+", help=f"files, globs or directories: {FORMATS_HELP}")
    parser.add_argument("--tokenizer", default=None, help="tokenizer.json: also count tokens and bytes per token")
    parser.add_argument("--config", default=None, help="take the tokenizer from data.tokenizer of this config")
    parser.add_argument("--json-keys", nargs="+", default=["text"], help="keys holding the text (default: text)")
    parser.add_argument("--json", action="store_true", help="print one JSON object (for the planner and scripts)")
    parser.add_argument("--histogram", default=None, metavar="PNG", help="save a document-length histogram")
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    return parser


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] != "stats":
        if argv[:1] in (["-h"], ["--help"]):
            build_parser().print_help()
            return 0
        print("usage: myllm data stats INPUT... [--tokenizer tokenizer.json] [--json] [--histogram PNG]",
              file=sys.stderr)
        return 2
    args = build_parser().parse_args(argv[1:])
    try:
        files = expand_inputs(args.inputs)
        path = args.tokenizer
        if path is None and args.config:
            path = load(args.config, [], None).data.tokenizer
        tokenizer = Tokenizer(path) if path else None
        stats = corpus_stats(files, args.json_keys, tokenizer, args.histogram, args.progress and not args.json)
    except (InputError, TokenizerError) as err:
        print(f"myllm data stats: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(stats.to_dict(), indent=2))
    else:
        print("\n".join(stats.lines()))
    return 0
