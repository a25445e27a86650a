"""SFT reads chat data preprocessed into indexed shards (tokens + loss mask) exactly as it reads the JSONL:
the same conversations, and batch for batch the same tokens, labels, loss mask, positions and attention mask.
Single process, no torch.distributed."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from myllm_mc.align.chat_data import read_sft_sources
from myllm_mc.align.packing import block_causal_mask, pack
from myllm_mc.align.sft import build_sft_data, check_align_layout, read_sft_data, steps_for_epochs, with_steps
from myllm_mc.config import ConfigError, load
from myllm_mc.data.preprocess import preprocess

SFT = Path(__file__).resolve().parents[2] / "data" / "tasks" / "sft"
MULTI_TURN = {"messages": [{"role": "system", "content": "Answer with a number."},
                           {"role": "user", "content": "What is 2 + 3?"}, {"role": "assistant", "content": "5"},
                           {"role": "user", "content": "And times 4?"}, {"role": "assistant", "content": "20"}]}


@pytest.fixture(scope="module")
def sources(chat_tokenizer, tmp_path_factory):
    """Two JSONL files (shipped records + a multi-turn one, one bad line) and their `--chat` shards."""
    root = tmp_path_factory.mktemp("sft-shards")
    train, valid = root / "train.jsonl", root / "valid.jsonl"
    lines = (SFT / "arithmetic.train.jsonl").read_text().splitlines()[:20]
    lines += (SFT / "format.train.jsonl").read_text().splitlines()[:20] + [json.dumps(MULTI_TURN), "{not json"]
    train.write_text("\n".join(lines) + "\n")
    valid.write_text("\n".join((SFT / "counting.test.jsonl").read_text().splitlines()[:6]) + "\n")
    for name in ("train", "valid"):
        result = preprocess([root / f"{name}.jsonl"], str(root / name), str(chat_tokenizer.path), ["messages"],
                            workers=0, progress=False, chat=True)
        assert result.skips.total == (1 if name == "train" else 0)
    return root


def test_shards_give_the_conversations_the_jsonl_gives(chat_tokenizer, sources):
    from_jsonl, jstats = read_sft_sources([str(sources / "train.jsonl")], chat_tokenizer)
    from_shards, sstats = read_sft_sources([str(sources / "train")], chat_tokenizer)
    assert (len(from_jsonl), jstats.kept, jstats.read, sum(jstats.skipped.values())) == (41, 41, 42, 1)
    assert (len(from_shards), sstats.kept, sstats.read) == (41, 41, 41)
    for a, b in zip(from_jsonl, from_shards):
        assert a.ids == b.ids and a.mask == b.mask
    assert sum(sum(c.mask) for c in from_shards) > 41                  # every conversation has targets
    # the `_text_document` spelling of the prefix and max_records work too
    firsts, _ = read_sft_sources([str(sources / "train_text_document")], chat_tokenizer, max_records=3)
    assert [c.ids for c in firsts] == [c.ids for c in from_jsonl[:3]]


@pytest.mark.parametrize("packing", [True, False])
def test_batches_from_shards_equal_batches_from_jsonl(chat_tokenizer, sources, packing):
    def build(train, valid):
        cfg = load("configs/sft_tiny.yaml", [f"align.train=[{train}]", f"align.valid=[{valid}]",
                                             f"align.packing={str(packing).lower()}", "model.seq_length=64",
                                             "training.global_batch_size=4", "training.micro_batch_size=2",
                                             "training.eval_steps=1"], world_size=1)
        check_align_layout(cfg)
        conversations, one_epoch = read_sft_data(cfg, chat_tokenizer, echo=lambda line: None)
        cfg = with_steps(cfg, steps_for_epochs(cfg, one_epoch))
        return (cfg, *build_sft_data(cfg, chat_tokenizer, conversations, one_epoch, echo=lambda line: None))

    jcfg, jtrain, jvalid = build(sources / "train.jsonl", sources / "valid.jsonl")
    scfg, strain, svalid = build(sources / "train", sources / "valid")
    assert jcfg.training.steps == scfg.training.steps > 0
    for a, b in ((jtrain, strain), (jvalid, svalid)):
        assert set(a) == set(b) == {"tokens", "labels", "loss_mask", "position_ids", "segment_ids"}
        for key in a:
            assert a[key].dtype == b[key].dtype and np.array_equal(a[key], b[key]), key
        assert torch.equal(block_causal_mask(torch.from_numpy(a["segment_ids"])),
                           block_causal_mask(torch.from_numpy(b["segment_ids"])))
    assert jtrain["loss_mask"].sum() > 0 and jtrain["segment_ids"].max() == (2 if packing else 0)   # 3 packed max
    # and the same holds for pack() itself over a mixed source list (a JSONL file then a prefix)
    mixed, _ = read_sft_sources([str(sources / "valid.jsonl"), str(sources / "train")], chat_tokenizer)
    both, _ = read_sft_sources([str(sources / "valid.jsonl"), str(sources / "train.jsonl")], chat_tokenizer)
    pa, pb = (pack(c, 64, chat_tokenizer.pad, packing, seed=7) for c in (mixed, both))
    assert all(np.array_equal(pa[k], pb[k]) for k in pa)


def test_a_missing_prefix_or_a_prefix_for_dpo_is_refused_at_load(sources):
    cfg = load("configs/sft_tiny.yaml", [f"align.train=[{sources / 'nothing'}]"], world_size=1)
    with pytest.raises(ConfigError, match=r"nothing_text_document.bin missing\) — fix: run `tools/preprocess_data.py"):
        check_align_layout(cfg)
    dpo = load("configs/sft_tiny.yaml", [f"align.train=[{sources / 'train'}]"], world_size=1)
    check_align_layout(dpo)                                             # fine for sft
    with pytest.raises(ConfigError, match="dpo reads preference/prompt JSONL only"):
        check_align_layout(dpo, "dpo")


def test_align_epochs_decide_the_steps_when_set():
    cfg = load("configs/sft_tiny.yaml", ["training.global_batch_size=4", "training.micro_batch_size=2",
                                         "training.steps=7", "align.epochs=null"], world_size=1)
    assert steps_for_epochs(cfg, 10) == 7                               # no align.epochs: training.steps as set
    cfg = load("configs/sft_tiny.yaml", ["training.global_batch_size=4", "training.micro_batch_size=2",
                                         "training.steps=7", "align.epochs=2"], world_size=1)
    assert steps_for_epochs(cfg, 10) == 5                               # ceil(2 × 10 / 4)
