#!/usr/bin/env bash
# The chain, tiny, on CPU, on the shipped corpus — as far as it is built. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== 1. plan: derive and explain the reference 1B configuration"
myllm plan configs/myllm_1b.yaml
echo "== 2. config: the tiny preset the rest of the quickstart uses, validated"
myllm config check configs/tiny.yaml --world-size 2
