"""Concatenate indexed datasets (e.g. the per-rank shards of an MPI run) with megatron-core's builder.add_index.

Why its own module: `tools/merge_datasets.py` is also a user tool — merging corpora preprocessed separately —
and the MPI mode of preprocessing must produce exactly what one process would have.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import List, Sequence

from .index_file import tokenizer_record_path
from .indexed_output import AtomicIndexedWriter, pair_paths
from .readers import InputError


def find_prefixes(inputs: Sequence[str]) -> List[str]:
    """Dataset prefixes named directly, or every complete .bin/.idx pair in a directory (sorted by name)."""
    prefixes: List[str] = []
    for item in inputs:
        if Path(item).is_dir():
            found = sorted(str(p)[:-4] for p in Path(item).glob("*.idx") if Path(str(p)[:-4] + ".bin").exists())
            if not found:
                raise InputError(f"{item}: no .bin/.idx pairs in this directory — fix: point --input at the shards")
            prefixes += found
        else:
            prefix = item[:-4] if item.endswith((".bin", ".idx")) else item
            missing = [p for p in pair_paths(prefix) if not os.path.isfile(p)]
            if missing:
                raise InputError(f"{prefix}: {' and '.join(missing)} missing — fix: give the prefix of a complete "
                                 f".bin/.idx pair")
            prefixes.append(prefix)
    if not prefixes:
        raise InputError("nothing to merge — fix: pass --input PREFIX_OR_DIR ...")
    return prefixes


def dataset_dtype(prefix: str):
    from megatron.core.datasets.indexed_dataset import IndexedDataset  # on use: preprocess_cli imports this module

    return IndexedDataset(prefix).index.dtype


def merge_datasets(prefixes: Sequence[str], output_prefix: str) -> AtomicIndexedWriter:
    """Write the concatenation of `prefixes` (in order) to `output_prefix`; returns the committed writer."""
    dtypes = {prefix: dataset_dtype(prefix) for prefix in prefixes}
    if len(set(dtypes.values())) > 1:
        listing = ", ".join(f"{p}: {d.__name__}" for p, d in dtypes.items())
        raise InputError(f"token types differ ({listing}) — fix: preprocess all inputs with the same tokenizer")
    if output_prefix in prefixes:
        raise InputError(f"--output-prefix {output_prefix} is also an input — fix: choose another output prefix")
    records = {Path(tokenizer_record_path(p)).read_text() if Path(tokenizer_record_path(p)).is_file() else ""
               for p in prefixes}
    same = json.loads(records.pop()) if len(records) == 1 and "" not in records else None   # one tokenizer: kept
    writer = AtomicIndexedWriter(output_prefix, next(iter(dtypes.values())), same)
    try:
        for prefix in prefixes:
            writer.add_index(prefix)
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    return writer
