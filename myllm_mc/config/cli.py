"""`myllm config show CONFIG [--set k=v ...] [--world-size N]`: the full resolved config, or a one-line error."""

from __future__ import annotations

import argparse

from . import dump, load


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments every stage that reads a config shares."""
    parser.add_argument("config", help="YAML config, e.g. configs/tiny.yaml")
    parser.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                        help="override a field, e.g. --set parallel.tensor=2 training.steps=50")
    parser.add_argument("--world-size", type=int, default=None,
                        help="number of processes the run will have (resolves parallel.data=auto)")


def main(argv) -> int:
    parser = argparse.ArgumentParser(prog="myllm config", description=__doc__)
    parser.add_argument("action", choices=["show", "check"], help="show: print in full; check: validate only")
    add_config_arguments(parser)
    parser.add_argument("--no-data", dest="data", action="store_false",
                        help="check: skip the tokenizer and data.blend files (e.g. before they are built)")
    args = parser.parse_args(argv)
    cfg = load(args.config, args.overrides, args.world_size)
    if args.action == "check" and args.data:
        from .preflight import check_inputs
        check_inputs(cfg)
    if args.action == "show":
        print(dump(cfg), end="")
    else:
        p = cfg.parallel
        print(f"ok: {args.config} — world {p.world_size} = tensor {p.tensor} × pipeline {p.pipeline}"
              f" × context {p.context} × data {p.data}")
    return 0
