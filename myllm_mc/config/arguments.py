"""The command-line arguments every stage that reads a config shares."""

from __future__ import annotations

import argparse


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments every stage that reads a config shares."""
    parser.add_argument("config", help="YAML config, e.g. configs/tiny.yaml")
    parser.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                        help="override a field, e.g. --set parallel.tensor=2 training.steps=50")
    parser.add_argument("--world-size", type=int, default=None,
                        help="number of processes the run will have (resolves parallel.data=auto)")
