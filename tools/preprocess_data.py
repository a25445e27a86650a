#!/usr/bin/env python
"""Tokenize corpora into megatron-core .bin/.idx datasets (Megatron-LM-style flags; --mpi under mpirun).

    python tools/preprocess_data.py --input data/corpus.jsonl.zst --output-prefix runs/data/corpus \\
        --tokenizer runs/tokenizer-8k/tokenizer.json --workers 2
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from myllm_mc.data.preprocess_cli import run  # noqa: E402

if __name__ == "__main__":
    sys.exit(run(sys.argv[1:], "preprocess_data.py"))
