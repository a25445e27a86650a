"""`data.loader: dali` (myllm_mc/data/dali_loader.py) against the megatron loader.

Fast tier: on a machine without CUDA, `data.loader=dali` is one line naming the fix.
Slow tier (~5 s, NVIDIA DALI 2.4.0 imported and two CPU-only pipelines built): the DALI pipeline, built CPU-only
(`device="cpu"`: the same external-source pipeline, without the GPU copy), yields exactly the megatron DataLoader's
batches — same keys, dtypes, order and tokens — for a run from the start and for one resumed at a consumed-samples
offset on data-parallel rank 1 of 2, with and without document masking (GPTDataset's attention_mask). The GPU copy
itself needs a GPU (test_data_datasets.py::test_dali_loader_needs_a_gpu).
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from data_helpers import write_jsonl

from myllm_mc.config import load
from myllm_mc.data.dali_loader import INSTALL, DaliUnavailable
from myllm_mc.data.datasets import ResumableBatchSampler, build_data_loader, build_datasets
from myllm_mc.data.preprocess import preprocess
from tests.helpers import missing

MICRO = 4


def _cfg(tmp, prefix, *extra):
    cfg = load("configs/tiny.yaml", ["model.seq_length=64", f"data.cache_dir={tmp / 'cache'}", "data.split=90,9,1",
                                     f"training.micro_batch_size={MICRO}", *extra], 1)
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, blend=[prefix]))


def test_dali_without_a_gpu_is_one_line():
    if not missing.cuda():
        pytest.skip("a CUDA GPU is present: the DALI loader runs here")
    cfg = load("configs/tiny.yaml", ["data.loader=dali"], 1)
    data = [{"tokens": torch.arange(8)} for _ in range(8)]
    with pytest.raises(DaliUnavailable, match="dali needs a CUDA GPU — fix: set data.loader=megatron on CPU"):
        build_data_loader(data, cfg)


@pytest.mark.slow
@pytest.mark.parametrize("masking", [False, True], ids=["plain", "document-masking"])
def test_cpu_pipeline_yields_the_megatron_loaders_batches(tmp_path, corpus_docs, small_tokenizer, masking):
    pytest.importorskip("nvidia.dali", reason=f"NVIDIA DALI is not installed — install: {INSTALL}")
    from myllm_mc.data.dali_loader import DaliTokenLoader

    docs = [d for d in corpus_docs if d["source"] == "austen"][:60]
    prefix = preprocess([write_jsonl(tmp_path / "austen.jsonl", docs)], str(tmp_path / "austen"),
                        str(small_tokenizer.path), workers=0, progress=False).outputs[0]
    extra = ["data.reset_attention_mask=true", "data.reset_position_ids=true", "data.eod_mask_loss=true"] if masking else []
    cfg = _cfg(tmp_path, prefix, *extra)
    train, _, _ = build_datasets(cfg, small_tokenizer, (96, 0, 0))
    fields = ["dataset_id", "tokens", "labels", *(["attention_mask"] if masking else []), "loss_mask", "position_ids"]
    for consumed, rank, size in ((0, 0, 1), (24, 1, 2)):
        megatron = list(build_data_loader(train, cfg, consumed, rank, size))
        dali = list(DaliTokenLoader(train, ResumableBatchSampler(len(train), consumed, MICRO, rank, size),
                                    device="cpu"))
        assert len(dali) == len(megatron) == (len(train) - consumed) // (MICRO * size) > 5
        for got, want in zip(dali, megatron):
            assert list(got) == fields and list(want) == fields
            for key in fields:
                assert got[key].device.type == "cpu" and got[key].dtype == want[key].dtype, key
                assert torch.equal(got[key], want[key]), key
        if consumed:               # the resumed rank-1 batches are the tail of rank 1's batches from the start
            whole = list(build_data_loader(train, cfg, 0, rank, size))
            assert [b["tokens"].tolist() for b in dali] == [b["tokens"].tolist() for b in whole[consumed // (MICRO * size):]]
