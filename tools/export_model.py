#!/usr/bin/env python
"""Export a checkpoint (any layout) to HF safetensors or GGUF; same as `myllm export`.

    python tools/export_model.py hf configs/tiny.yaml --checkpoint runs/tiny/checkpoints --out runs/tiny/hf
    python tools/export_model.py gguf configs/tiny.yaml --checkpoint runs/tiny/checkpoints --out runs/tiny/q8.gguf --type q8_0
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from myllm_mc.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["export", *sys.argv[1:]]))
