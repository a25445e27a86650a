#!/usr/bin/env python
"""Train a byte-level BPE tokenizer: `python tools/train_tokenizer.py --input FILES... --vocab-size N --output DIR`."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from myllm_mc.data.tokenizer_cli import run  # noqa: E402

if __name__ == "__main__":
    sys.exit(run(sys.argv[1:], "train_tokenizer.py"))
