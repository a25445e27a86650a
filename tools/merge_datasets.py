#!/usr/bin/env python
"""Merge megatron-core indexed datasets: `python tools/merge_datasets.py --input DIR_OR_PREFIX... --output-prefix P`."""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--input", nargs="+", required=True, help="dataset prefixes (in order) or directories "
                        "(every .bin/.idx pair in it, sorted by name)")
    parser.add_argument("--output-prefix", required=True, help="writes OUTPUT_PREFIX.bin and OUTPUT_PREFIX.idx")
    args = parser.parse_args(argv)
    from myllm_mc.data.merge import find_prefixes, merge_datasets
    from myllm_mc.data.readers import InputError

    start = time.perf_counter()
    try:
        prefixes = find_prefixes(args.input)
        writer = merge_datasets(prefixes, args.output_prefix)
    except InputError as err:
        print(f"merge_datasets.py: {err}", file=sys.stderr)
        return 2
    print(f"merge: {len(prefixes)} datasets → {writer.prefix}.{{bin,idx}}: {writer.documents:,} documents, "
          f"{writer.tokens:,} tokens in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
