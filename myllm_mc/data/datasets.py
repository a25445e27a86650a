"""Training sequences from indexed datasets: megatron-core GPTDataset + BlendedMegatronDatasetBuilder, set up from
the Config, and a resumable, data-parallel batch sampler the training loop draws from.

Why megatron-core here: it already does the hard parts — blending by weight, train/valid/test split by document,
packing documents into seq_length + 1 token samples, seeded shuffling and on-disk index caches. This module only
maps `Config.data` / `Config.model` / `Config.training` onto it, and handles the one thing it assumes: an
initialised process group when it builds its caches.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np

from .dali_loader import DaliTokenLoader
from .indexed_output import pair_paths
from .readers import InputError


def parse_blend(blend: Sequence) -> Tuple[List[str], Optional[List[float]]]:
    """data.blend ([weight, prefix] pairs, or plain prefixes = equal weights) → megatron-core's (prefixes, weights)."""
    if not blend:
        raise InputError("data.blend is empty — fix: set data.blend to [runs/data/corpus_text_document] (the "
                         "prefix tools/preprocess_data.py wrote)")
    prefixes, weights = [], []
    for entry in blend:
        if isinstance(entry, str):
            prefixes.append(entry)
            weights.append(1.0)
        elif isinstance(entry, (list, tuple)) and len(entry) == 2 and isinstance(entry[1], str):
            weight = float(entry[0])
            if weight <= 0:
                raise InputError(f"data.blend: weight {entry[0]} for {entry[1]} must be positive — fix: drop the "
                                 f"entry or give it a weight > 0")
            prefixes.append(entry[1])
            weights.append(weight)
        else:
            raise InputError(f"data.blend: {entry!r} is neither a prefix nor a [weight, prefix] pair — fix: e.g. "
                             f"[[0.3, runs/data/a_text_document], [0.7, runs/data/b_text_document]]")
    for prefix in prefixes:
        missing = [p for p in pair_paths(prefix) if not os.path.isfile(p)]
        if missing:
            raise InputError(f"data.blend: {' and '.join(missing)} not found — fix: run tools/preprocess_data.py "
                             f"--output-prefix {prefix.removesuffix('_text_document')} first")
    total = sum(weights)
    return prefixes, [w / total for w in weights]


def gpt_dataset_config(cfg, tokenizer):
    """megatron-core's GPTDatasetConfig for this run: blend, split, sequence length, seed, cache, masking."""
    # megatron-core and torch are imported where used in this module: preflight (`myllm config check`, train's
    # launching parent) imports parse_blend from it without either
    from megatron.core.datasets.gpt_dataset import GPTDatasetConfig

    data = cfg.data
    return GPTDatasetConfig(
        random_seed=cfg.training.seed,
        sequence_length=cfg.model.seq_length,
        blend=parse_blend(data.blend),
        split=data.split,
        path_to_cache=data.cache_dir,
        tokenizer=tokenizer,
        reset_position_ids=data.reset_position_ids,
        reset_attention_mask=data.reset_attention_mask,
        eod_mask_loss=data.eod_mask_loss,
        # a seq × seq mask per sample is only needed for document masking; otherwise attention is plainly causal
        create_attention_mask=data.reset_attention_mask,
        num_dataset_builder_threads=1,
    )


@contextlib.contextmanager
def process_group_for_caching():
    """megatron-core builds index caches on rank 0 behind barriers: give it a one-rank gloo group if none exists."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        yield
        return
    with tempfile.TemporaryDirectory() as tmp:
        dist.init_process_group("gloo", init_method=f"file://{tmp}/rendezvous", rank=0, world_size=1)
        try:
            yield
        finally:
            dist.destroy_process_group()


def build_datasets(cfg, tokenizer, num_samples: Tuple[int, int, int]):
    """(train, valid, test) datasets of `num_samples` samples each (a split with 0 samples or 0 weight is None).

    Each sample is a dict of torch tensors from seq_length + 1 tokens: tokens and labels (shifted by one),
    loss_mask, position_ids (and attention_mask with data.reset_attention_mask). Called on every rank.
    """
    from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
    from megatron.core.datasets.gpt_dataset import GPTDataset

    config = gpt_dataset_config(cfg, tokenizer)
    check_splits_not_empty(config.blend[0], cfg.data.split)
    with process_group_for_caching():
        builder = BlendedMegatronDatasetBuilder(GPTDataset, list(num_samples), lambda: True, config)
        train, valid, test = builder.build()
    return train, valid, test


def check_splits_not_empty(prefixes: Sequence[str], split: str) -> None:
    """Refuse a split that gets no documents of some corpus: megatron-core 0.16 would loop forever on it.

    (GPTDataset asks for num_samples × seq_length + 1 tokens and adds epochs of 0 tokens until it has them.)
    """
    from megatron.core.datasets.blended_megatron_dataset_config import parse_and_normalize_split
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    weights = parse_and_normalize_split(split)
    bookends = np.cumsum([0.0] + list(weights))
    for prefix in prefixes:
        documents = IndexedDataset(prefix).sequence_lengths.shape[0]
        for name, weight, beg, end in zip(("train", "valid", "test"), weights, bookends[:-1], bookends[1:]):
            if weight > 0 and int(round(end * documents)) - int(round(beg * documents)) == 0:
                raise InputError(f"data.split {split} gives the {name} split 0 of the {documents:,} documents of "
                                 f"{prefix} — fix: preprocess more documents or set data.split so every used split "
                                 f"gets at least one (e.g. data.split=90,9,1, or 100,0,0 for train only)")


def samples_needed(cfg, eval_runs: Optional[int] = None) -> Tuple[int, int, int]:
    """Samples each split must provide for cfg.training: train steps, periodic evaluation, one final test."""
    t = cfg.training
    evaluations = eval_runs if eval_runs is not None else t.steps // max(t.eval_interval, 1) + 1
    return (t.steps * t.global_batch_size, evaluations * t.eval_steps * t.global_batch_size,
            t.eval_steps * t.global_batch_size)


class ResumableBatchSampler:
    """Micro-batches of dataset indices for one data-parallel rank, starting after `consumed_samples`.

    Why sequential: GPTDataset has already shuffled by seed, so index i is "the i-th sample of the run". Global
    batch position p covers indices [p, p + micro_batch_size × data_parallel_size); rank r takes its slice. A
    resumed run with the checkpointed consumed-sample count continues with exactly the next samples.
    """

    def __init__(self, total_samples: int, consumed_samples: int, micro_batch_size: int,
                 data_parallel_rank: int = 0, data_parallel_size: int = 1, drop_last: bool = True):
        if not 0 <= data_parallel_rank < data_parallel_size:
            raise ValueError(f"data_parallel_rank {data_parallel_rank} not in [0, {data_parallel_size})")
        if consumed_samples > total_samples:
            raise ValueError(f"consumed_samples {consumed_samples} > dataset size {total_samples} — fix: build the "
                             f"dataset with more samples")
        self.total_samples = total_samples
        self.consumed_samples = consumed_samples
        self.micro_batch_size = micro_batch_size
        self.rank = data_parallel_rank
        self.size = data_parallel_size
        self.drop_last = drop_last

    def __len__(self) -> int:
        step = self.micro_batch_size * self.size
        remaining = self.total_samples - self.consumed_samples
        return remaining // step if self.drop_last else -(-remaining // step)

    def __iter__(self) -> Iterator[List[int]]:
        step = self.micro_batch_size * self.size
        for start in range(self.consumed_samples, self.total_samples, step):
            if start + step > self.total_samples and self.drop_last:
                return
            mine = range(start + self.rank * self.micro_batch_size,
                         min(start + (self.rank + 1) * self.micro_batch_size, self.total_samples))
            if len(mine):
                yield list(mine)


def build_data_loader(dataset, cfg, consumed_samples: int = 0, data_parallel_rank: int = 0,
                      data_parallel_size: int = 1):
    """Batches of this rank's micro-batches from `consumed_samples` on, by cfg.data.loader (megatron or dali)."""
    if dataset is None:
        return None
    sampler = ResumableBatchSampler(len(dataset), consumed_samples, cfg.training.micro_batch_size,
                                    data_parallel_rank, data_parallel_size)
    if cfg.data.loader == "dali":
        return DaliTokenLoader(dataset, sampler)
    import torch

    return torch.utils.data.DataLoader(dataset, batch_sampler=sampler, num_workers=cfg.data.num_workers,
                                       pin_memory=False, persistent_workers=cfg.data.num_workers > 0)
