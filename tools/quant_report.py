#!/usr/bin/env python
"""Quantization report (size, perplexity, top-1 agreement, llama.cpp decode tok/s for every GGUF type).

    python tools/quant_report.py runs/smollm2/config.yaml --checkpoint runs/smollm2/checkpoint --markdown q.md
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from myllm_mc.interop.quant_report import main  # noqa: E402

if __name__ == "__main__":
    if __package__ is None and "--help" not in sys.argv:
        from myllm_mc.cli import _quiet_third_party
        _quiet_third_party()
    sys.exit(main(sys.argv[1:]))
