#!/usr/bin/env python
"""Throughput/MFU benchmark and layout sweeps; the same as `myllm benchmark` (see myllm_mc/bench/cli.py).

    python tools/benchmark.py configs/tiny.yaml --synthetic-data --nproc-per-node 2 \
        --sweep parallel.tensor=1,2 parallel.pipeline=1,2 --baseline
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from myllm_mc.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["benchmark", *sys.argv[1:]]))
