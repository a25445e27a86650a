"""Chat records → ids, assistant-only loss masks and packed sequences (no torch.distributed needed)."""

import json

import numpy as np
import pytest

from myllm_mc.align.chat_data import read_conversations, read_pairs
from myllm_mc.align.dpo import pack_pairs
from myllm_mc.align.packing import pack

GOOD = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2 + 3?"},
                     {"role": "assistant", "content": "5"}]}


def _write(path, lines):
    with open(path, "wb") as f:
        for line in lines:
            f.write((line if isinstance(line, bytes) else json.dumps(line).encode()) + b"\n")
    return str(path)


BAD = [
    {"messages": [{"content": "no role"}, {"role": "assistant", "content": "x"}]},             # missing role
    {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "  "}]},  # empty reply
    {"messages": [{"role": "user", "content": "hi"}]},                                         # no assistant turn
    {"messages": [{"role": "user", "content": 3}, {"role": "assistant", "content": "x"}]},     # wrong type
    {"messages": "hello"},                                                                      # wrong type
    b"\xff\xfe not utf-8",
    b"{not json",
]


def test_bad_records_are_counted_by_reason_and_skipped(chat_tokenizer, tmp_path):
    path = _write(tmp_path / "chat.jsonl", [GOOD] + BAD + [GOOD])
    conversations, stats = read_conversations([path], chat_tokenizer)
    assert (stats.read, stats.kept, len(conversations)) == (9, 2, 2)
    assert dict(stats.skipped) == {"missing or unknown role": 1, "empty assistant turn": 1, "no assistant turn": 1,
                                   "content is not a string": 1, "messages is not a non-empty list": 1,
                                   "not UTF-8": 1, "not JSON": 1}
    assert "2 of 9 records kept, 7 skipped" in stats.summary("sft train")


def test_strict_stops_at_the_first_bad_record_with_file_and_line(chat_tokenizer, tmp_path):
    path = _write(tmp_path / "chat.jsonl", [GOOD, GOOD, BAD[1]])
    with pytest.raises(SystemExit, match=r"chat.jsonl:3: bad chat record \(empty assistant turn\)"):
        read_conversations([path], chat_tokenizer, strict=True)


def test_loss_mask_covers_the_reply_and_its_end_of_turn_only(chat_tokenizer, tmp_path):
    (conv,), _ = read_conversations([_write(tmp_path / "c.jsonl", [GOOD])], chat_tokenizer)
    arrays = pack([conv], 64, chat_tokenizer.pad, packing=True, seed=0)
    labels, mask = arrays["labels"][0], arrays["loss_mask"][0]
    learned = [int(t) for t, m in zip(labels, mask) if m]
    assert learned == chat_tokenizer.encode("5") + [chat_tokenizer.im_end]
    n = len(conv.ids) - 1
    assert list(arrays["tokens"][0, :n]) == conv.ids[:-1] and list(labels[:n]) == conv.ids[1:]
    assert mask[n:].sum() == 0 and (arrays["segment_ids"][0, n:] == -1).all()


def test_packing_restarts_positions_and_numbers_segments(chat_tokenizer, tmp_path):
    convs, _ = read_conversations([_write(tmp_path / "c.jsonl", [GOOD] * 5)], chat_tokenizer)
    n = len(convs[0].ids) - 1
    arrays = pack(convs, 2 * n + 3, chat_tokenizer.pad, packing=True, seed=0)
    assert arrays["tokens"].shape == (3, 2 * n + 3)                 # 2 + 2 + 1 conversations
    assert list(arrays["segment_ids"][0]) == [0] * n + [1] * n + [-1] * 3
    assert list(arrays["position_ids"][0, :2 * n]) == list(range(n)) * 2
    padded = pack(convs, 2 * n + 3, chat_tokenizer.pad, packing=False, seed=0)
    assert padded["tokens"].shape == (5, 2 * n + 3)
    assert arrays["loss_mask"].sum() == padded["loss_mask"].sum() == 5 * 2


def test_dpo_pairs_mask_only_the_reply_and_share_the_prompt(chat_tokenizer, tmp_path):
    record = {"prompt": "What is 2 + 3?", "chosen": "5", "rejected": "6"}
    bad = {"prompt": "What is 2 + 3?", "chosen": "5"}
    pairs, stats = read_pairs([_write(tmp_path / "p.jsonl", [record, bad])], chat_tokenizer)
    assert (stats.kept, dict(stats.skipped)) == (1, {"missing or empty rejected": 1})
    arrays = pack_pairs(pairs, 64, chat_tokenizer.pad, seed=0)
    seg, labels, mask = arrays["segment_ids"][0], arrays["labels"][0], arrays["loss_mask"][0]
    chosen = [int(t) for t, m, s in zip(labels, mask, seg) if m and s == 0]
    rejected = [int(t) for t, m, s in zip(labels, mask, seg) if m and s == 1]
    assert chosen == chat_tokenizer.encode("5") + [chat_tokenizer.im_end]
    assert rejected == chat_tokenizer.encode("6") + [chat_tokenizer.im_end]
    n = len(pairs[0][0].ids) - 1                                     # segment 0's length
    prompt = pairs[0][0].mask.index(1)                                # tokens before the reply
    assert np.array_equal(arrays["tokens"][0, :prompt], arrays["tokens"][0, n:n + prompt])
    assert list(arrays["position_ids"][0, n:n + 3]) == [0, 1, 2]
