#!/usr/bin/env python
"""Import a Llama-architecture HF directory or GGUF file as config + megatron checkpoint; same as `myllm import`.

    python tools/import_model.py gguf model.gguf --out runs/imported
    python tools/import_model.py hf path/to/hf_dir --out runs/imported --config configs/tiny.yaml
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from myllm_mc.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["import", *sys.argv[1:]]))
