"""Datasets for training: megatron-core GPTDataset/BlendedDataset from the Config, resumable sampling, streaming."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from data_helpers import write_jsonl, write_webdataset

from myllm_mc.config import load
from myllm_mc.data.datasets import ResumableBatchSampler, build_data_loader, build_datasets, parse_blend
from myllm_mc.data.preprocess import preprocess
from myllm_mc.data.readers import InputError
from tests.helpers import missing

SEQ = 64


@pytest.fixture(scope="module")
def two_prefixes(tmp_path_factory, corpus_docs, small_tokenizer):
    """Austen and KJV preprocessed separately: two corpora to blend."""
    tmp = tmp_path_factory.mktemp("blend")
    prefixes = {}
    for source in ("austen", "kjv"):
        docs = [d for d in corpus_docs if d["source"] == source][:120]
        path = write_jsonl(tmp / f"{source}.jsonl", docs)
        prefixes[source] = preprocess([path], str(tmp / source), str(small_tokenizer.path), workers=0,
                                      progress=False).outputs[0]
    return tmp, prefixes


def _with_blend(cfg, blend):
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, blend=blend))


def test_blend_honours_weights_over_10k_samples(two_prefixes, small_tokenizer):
    tmp, p = two_prefixes
    cfg = _with_blend(_base(tmp), [[0.3, p["austen"]], [0.7, p["kjv"]]])
    train, _, _ = build_datasets(cfg, small_tokenizer, (10_000, 0, 0))
    assert len(train) >= 10_000
    ids = np.array([int(train[i]["dataset_id"]) for i in range(10_000)])
    share = np.bincount(ids, minlength=2) / 10_000
    assert abs(share[0] - 0.3) < 0.02 and abs(share[1] - 0.7) < 0.02
    # and the samples really come from the corpus each id names (KJV chapters have numbered verses)
    kjv_like = [small_tokenizer.decode(train[i]["tokens"].tolist()) for i in range(50) if ids[i] == 1]
    assert sum(any(ch.isdigit() for ch in text) for text in kjv_like) >= 0.8 * len(kjv_like)


def _base(tmp, seed=1234, **overrides):
    sets = [f"model.seq_length={SEQ}", f"training.seed={seed}", f"data.cache_dir={tmp / 'cache'}", "data.split=90,9,1"]
    sets += [f"data.{k}={str(v).lower()}" for k, v in overrides.items()]
    return load("configs/tiny.yaml", sets, 1)


def test_samples_are_seq_length_plus_one_and_seeded(two_prefixes, small_tokenizer):
    tmp, p = two_prefixes
    cfg = _with_blend(_base(tmp), [p["austen"]])
    group_before = torch.distributed.is_initialized()      # another test may have left one up: it stays
    train, valid, test = build_datasets(cfg, small_tokenizer, (200, 20, 2))
    sample = train[0]
    assert sample["tokens"].shape == (SEQ,) and sample["labels"].shape == (SEQ,)
    assert torch.equal(sample["tokens"][1:], sample["labels"][:-1])   # one window of SEQ + 1 tokens, shifted
    assert "attention_mask" not in sample                               # plain causal: no seq × seq mask built
    again, _, _ = build_datasets(cfg, small_tokenizer, (200, 20, 2))
    other, _, _ = build_datasets(_with_blend(_base(tmp, seed=99), [p["austen"]]), small_tokenizer, (200, 20, 2))
    first = torch.stack([train[i]["tokens"] for i in range(50)])
    assert torch.equal(first, torch.stack([again[i]["tokens"] for i in range(50)]))
    assert not torch.equal(first, torch.stack([other[i]["tokens"] for i in range(50)]))
    assert valid is not None and len(valid) >= 20 and test is not None
    assert list((tmp / "cache").glob("*GPTDataset*shuffle_index.npy"))   # indexes cached, process group handled
    assert torch.distributed.is_initialized() == group_before             # ...its own torn down, others kept


def test_document_masking(two_prefixes, small_tokenizer):
    tmp, p = two_prefixes
    cfg = _with_blend(_base(tmp, reset_position_ids=True, reset_attention_mask=True, eod_mask_loss=True),
                      [p["kjv"]])
    train, _, _ = build_datasets(cfg, small_tokenizer, (400, 0, 0))
    eod = small_tokenizer.eod
    checked = 0
    for i in range(400):
        s = train[i]
        where = (s["tokens"] == eod).nonzero().flatten().tolist()
        if not where or where[0] == SEQ - 1:
            continue
        k = where[0]
        assert s["position_ids"][k + 1] == 0 and s["position_ids"][k] == k   # positions restart after the EOD
        assert s["loss_mask"][k] == 0 and s["loss_mask"][k - 1] == 1
        assert bool(s["attention_mask"][0, k + 1, k]) is True                 # masked: no attention across docs
        checked += 1
    assert checked >= 5


def test_resumable_sampler_continues_and_shards(two_prefixes, small_tokenizer):
    whole = list(ResumableBatchSampler(100, 0, micro_batch_size=4, data_parallel_size=2, data_parallel_rank=0))
    resumed = list(ResumableBatchSampler(100, 24, micro_batch_size=4, data_parallel_size=2, data_parallel_rank=0))
    assert resumed == whole[3:]                                   # 24 consumed = 3 global batches of 8
    r0 = list(ResumableBatchSampler(96, 0, 4, 0, 2))
    r1 = list(ResumableBatchSampler(96, 0, 4, 1, 2))
    assert r0[0] == [0, 1, 2, 3] and r1[0] == [4, 5, 6, 7]
    assert sorted(i for b in r0 + r1 for i in b) == list(range(96))
    tmp, p = two_prefixes
    cfg = _with_blend(_base(tmp), [p["austen"]])
    train, _, _ = build_datasets(cfg, small_tokenizer, (64, 0, 0))
    batches = list(build_data_loader(train, cfg, consumed_samples=0))
    later = list(build_data_loader(train, cfg, consumed_samples=8))
    assert batches[0]["tokens"].shape == (cfg.training.micro_batch_size, SEQ)
    assert torch.equal(batches[2]["tokens"], later[0]["tokens"])


def test_blend_errors_are_one_line(tmp_path):
    with pytest.raises(InputError, match="preprocess_data.py"):
        parse_blend([str(tmp_path / "nothing_text_document")])
    with pytest.raises(InputError, match="empty"):
        parse_blend([])
    with pytest.raises(InputError, match="weight"):
        parse_blend([[0, "x"]])


def test_empty_split_is_refused_not_a_hang(two_prefixes, small_tokenizer):
    tmp, p = two_prefixes
    cfg = _with_blend(load("configs/tiny.yaml", ["data.split=998,1,1"], 1), [p["austen"]])
    with pytest.raises(InputError, match="gives the valid split 0 of the 120 documents"):
        build_datasets(cfg, small_tokenizer, (10, 0, 0))


def test_webdataset_stream_packs_and_resumes(tmp_path, corpus_docs, small_tokenizer):
    from myllm_mc.data.webdataset_stream import WebDatasetTokenStream
    shards = [str(write_webdataset(tmp_path / f"s{i}.tar", corpus_docs[i * 20:(i + 1) * 20])) for i in range(2)]
    stream = list(WebDatasetTokenStream(shards, small_tokenizer, SEQ))
    expected = []
    for d in corpus_docs[:40]:
        expected += small_tokenizer.encode(d["text"]) + [small_tokenizer.eod]
    assert len(stream) == (len(expected) - 1) // SEQ
    for n in (0, 7, len(stream) - 1):
        window = expected[n * SEQ:n * SEQ + SEQ + 1]
        assert stream[n]["tokens"].tolist() == window[:-1] and stream[n]["labels"].tolist() == window[1:]
    rank1 = list(WebDatasetTokenStream(shards, small_tokenizer, SEQ, data_parallel_rank=1, data_parallel_size=2,
                                       consumed_samples=10))
    assert [s["tokens"].tolist() for s in rank1] == [s["tokens"].tolist() for s in stream[11::2]]


def test_dali_loader_needs_a_gpu():
    if missing.cuda():
        pytest.skip(f"the DALI loader is GPU-only: {missing.cuda()}")
    pytest.importorskip("nvidia.dali", reason="nvidia-dali not installed — install: pip install nvidia-dali-cuda120==2.4.0")
    from myllm_mc.data.dali_loader import DaliTokenLoader
    data = [{"tokens": torch.arange(8), "labels": torch.arange(1, 9), "loss_mask": torch.ones(8),
             "position_ids": torch.arange(8)} for _ in range(8)]
    batches = list(DaliTokenLoader(data, ResumableBatchSampler(8, 0, 4)))
    assert len(batches) == 2 and batches[0]["tokens"].is_cuda and batches[0]["tokens"].shape == (4, 8)
