#!/usr/bin/env bash
# The prepared GPU check: on one H100/H200, in ≤ 8 minutes, writes runs/gpu_check/gpu_check.{md,json}
# (environment, 1B BF16 tokens/s + MFU, planner memory vs allocator peak, TE/FP8 where installed, decode).
#   bash tools/gpu_check.sh [--out DIR]
# Exit 0 all steps ran; 1 a step failed; 3 no GPU here (everything that needs none has run). docs/planner.md.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec python -m myllm_mc.bench.gpu_check "$@"
