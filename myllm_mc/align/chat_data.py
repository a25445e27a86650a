"""Chat records (JSONL, the HF/OpenAI `messages` format) → token ids + assistant-only loss masks.

The template is the tokenizer's `encode_chat` (ChatML), the one generation and export use, so training and
serving render identically. Bad records — not JSON, not UTF-8, missing or unknown roles, non-string content,
no assistant turn, an empty assistant turn, DPO pairs without chosen/rejected — are counted by reason and
skipped; with `strict` the first one stops the run with its file and line.

SFT also reads chat data preprocessed into megatron-core indexed shards (`tools/preprocess_data.py --chat
--output-prefix P`): an `align.train`/`align.valid` entry that is not a `.jsonl` file names such a prefix. Both
sources give the same `Conversation`s, so packing cannot tell them apart (tested batch for batch).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, List, Optional, Tuple

from myllm_mc.config import ConfigError
from myllm_mc.data.chat import ChatDataset, encode_prompt
from myllm_mc.data.chat import prompt_messages as record_prompt  # this module's prompt_messages is DPO's

ROLES = ("system", "user", "assistant")


class BadRecord(ValueError):
    pass


@dataclass
class ReadStats:
    read: int = 0
    kept: int = 0
    skipped: Counter = field(default_factory=Counter)
    truncated: int = 0                 # conversations longer than a sequence, cut to fit

    def summary(self, what: str) -> str:
        bad = sum(self.skipped.values())
        reasons = ", ".join(f"{n} {reason}" for reason, n in self.skipped.most_common())
        cut = f", {self.truncated} truncated to the sequence length" if self.truncated else ""
        return f"{what}: {self.kept:,} of {self.read:,} records kept" + (f", {bad} skipped ({reasons})" if bad else "") + cut


def check_messages(messages, need_assistant: bool = True) -> List[dict]:
    if not isinstance(messages, list) or not messages:
        raise BadRecord("messages is not a non-empty list")
    for m in messages:
        if not isinstance(m, dict):
            raise BadRecord("a message is not an object")
        if m.get("role") not in ROLES:
            raise BadRecord("missing or unknown role")
        if not isinstance(m.get("content"), str):
            raise BadRecord("content is not a string")
        if m["role"] == "assistant" and not m["content"].strip():
            raise BadRecord("empty assistant turn")
    if need_assistant and not any(m["role"] == "assistant" for m in messages):
        raise BadRecord("no assistant turn")
    return messages


def read_jsonl(paths: Iterable[str], stats: ReadStats, strict: bool, max_records: Optional[int] = None,
               ) -> Iterator[Tuple[str, int, dict]]:
    """(file, line number, object) for each JSON object; undecodable lines are counted (or raise when strict)."""
    for path in paths:
        taken = 0
        with open(path, "rb") as f:
            for number, raw in enumerate(f, 1):
                if not raw.strip():
                    continue
                if max_records is not None and taken >= max_records:
                    break
                stats.read += 1
                taken += 1
                try:
                    try:
                        text = raw.decode("utf-8")
                    except UnicodeDecodeError:
                        raise BadRecord("not UTF-8") from None
                    try:
                        obj = json.loads(text)
                    except json.JSONDecodeError:
                        raise BadRecord("not JSON") from None
                    if not isinstance(obj, dict):
                        raise BadRecord("not a JSON object")
                    yield path, number, obj
                except BadRecord as err:
                    reject(stats, strict, path, number, err)


def reject(stats: ReadStats, strict: bool, path: str, number: int, err: BadRecord) -> None:
    if strict:
        raise SystemExit(f"{path}:{number}: bad chat record ({err}) — fix: correct or remove it, or set "
                         f"align.strict=false to count and skip bad records")
    stats.skipped[str(err)] += 1


@dataclass
class Conversation:
    ids: List[int]
    mask: List[int]                    # 1 on assistant content and its <|im_end|>, 0 elsewhere


def read_conversations(paths: Iterable[str], tokenizer, strict: bool = False, max_records: Optional[int] = None,
                       ) -> Tuple[List[Conversation], ReadStats]:
    """SFT records {"messages": [...]} rendered with the chat template."""
    stats = ReadStats()
    out: List[Conversation] = []
    for path, number, obj in read_jsonl(paths, stats, strict, max_records):
        try:
            messages = check_messages(obj.get("messages"))
            ids, mask = tokenizer.encode_chat(messages)
        except (BadRecord, ValueError) as err:
            reject(stats, strict, path, number, BadRecord(str(err)) if not isinstance(err, BadRecord) else err)
            continue
        out.append(Conversation(ids, mask))
        stats.kept += 1
    return out, stats


JSONL_SUFFIXES = (".jsonl", ".json")


def is_preprocessed(entry: str) -> bool:
    """An `align.train`/`align.valid` entry names preprocessed shards (a prefix) unless it is a JSONL file."""
    return not str(entry).endswith(JSONL_SUFFIXES)


def _shard_prefix(entry: str) -> str:
    entry = str(entry)
    return entry[: -len("_text_document")] if entry.endswith("_text_document") else entry


def check_sources(entries: Iterable[str], key: str, method: str) -> None:
    """Refuse, before any process starts, a prefix whose shards are missing, or a prefix given to DPO."""
    for entry in entries:
        if not is_preprocessed(entry):
            continue
        if method != "sft":
            raise ConfigError(f"{key}: {entry} is not a .jsonl file — fix: {method} reads preference/prompt JSONL "
                              f"only (preprocessed chat shards hold single conversations, for sft)")
        prefix = _shard_prefix(entry)
        missing = [f"{prefix}_{k}_document.{ext}" for k in ("text", "loss_mask") for ext in ("bin", "idx")
                   if not Path(f"{prefix}_{k}_document.{ext}").is_file()]
        if missing:
            raise ConfigError(f"{key}: {entry} is neither a .jsonl file nor a preprocessed chat prefix ({missing[0]} "
                              f"missing) — fix: run `tools/preprocess_data.py --chat --output-prefix {prefix} ...` "
                              f"or list the JSONL files")


def read_shards(prefix: str, tokenizer, stats: ReadStats, max_records: Optional[int] = None) -> List[Conversation]:
    """Conversations from `P_text_document` + `P_loss_mask_document`. Preprocessing already skipped bad records;
    the <|endoftext|> it appends (mask 0, never a target) is dropped so a conversation is exactly what
    `encode_chat` renders from the JSONL record."""
    data = ChatDataset(_shard_prefix(prefix))
    count = len(data) if max_records is None else min(len(data), max_records)
    if count:                                   # shards made with another tokenizer: refuse, don't train on garbage
        top = max(int(data.tokens[i].max(initial=0)) for i in range(min(count, 64)))
        if top >= tokenizer.vocab_size:
            raise SystemExit(f"{prefix}: token id {top} >= the tokenizer's vocabulary ({tokenizer.vocab_size}) — fix: "
                             f"preprocess with the tokenizer in data.tokenizer")
    out = []
    for i in range(count):
        ids, mask = data[i]
        ids, mask = ids.tolist(), mask.tolist()
        if ids and ids[-1] == tokenizer.eod and mask[-1] == 0:
            ids, mask = ids[:-1], mask[:-1]
        out.append(Conversation(ids, mask))
    stats.read += count
    stats.kept += count
    return out


def read_sft_sources(entries: Iterable[str], tokenizer, strict: bool = False, max_records: Optional[int] = None,
                     ) -> Tuple[List[Conversation], ReadStats]:
    """SFT conversations from a mix of JSONL files and preprocessed prefixes, in the order listed."""
    stats = ReadStats()
    out: List[Conversation] = []
    for entry in entries:
        if is_preprocessed(entry):
            out += read_shards(entry, tokenizer, stats, max_records)
        else:
            conversations, part = read_conversations([entry], tokenizer, strict, max_records)
            out += conversations
            stats.read += part.read
            stats.kept += part.kept
            stats.skipped.update(part.skipped)
    return out, stats


def prompt_messages(obj: dict) -> List[dict]:
    """A DPO record's prompt as messages: `messages` (turns before the reply) or `prompt` (one user turn)."""
    if "messages" in obj:
        return check_messages(obj["messages"], need_assistant=False)
    if isinstance(obj.get("prompt"), str) and obj["prompt"].strip():
        return [{"role": "user", "content": obj["prompt"]}]
    raise BadRecord("no prompt or messages")


def reply_text(obj: dict, key: str) -> str:
    value = obj.get(key)
    if isinstance(value, list):                  # [{"role": "assistant", "content": ...}] is accepted too
        value = value[-1].get("content") if value and isinstance(value[-1], dict) else None
    if not isinstance(value, str) or not value.strip():
        raise BadRecord(f"missing or empty {key}")
    return value


def read_pairs(paths: Iterable[str], tokenizer, strict: bool = False, max_records: Optional[int] = None,
               ) -> Tuple[List[Tuple[Conversation, Conversation]], ReadStats]:
    """DPO records → (chosen, rejected) conversations sharing the prompt; masks cover the reply only."""
    stats = ReadStats()
    out = []
    for path, number, obj in read_jsonl(paths, stats, strict, max_records):
        try:
            prompt = prompt_messages(obj)
            pair = []
            for key in ("chosen", "rejected"):
                ids, mask = tokenizer.encode_chat(prompt + [{"role": "assistant", "content": reply_text(obj, key)}])
                pair.append(Conversation(ids, mask))
            if pair[0].ids == pair[1].ids:
                raise BadRecord("chosen equals rejected")
        except (BadRecord, ValueError) as err:
            reject(stats, strict, path, number, err if isinstance(err, BadRecord) else BadRecord(str(err)))
            continue
        # a prompt's own assistant turns (multi-turn DPO) are context, not the reply being judged
        for conv in pair:
            last = _last_reply_start(conv.mask)
            conv.mask = [0] * last + conv.mask[last:]
        out.append((pair[0], pair[1]))
        stats.kept += 1
    return out, stats


def _last_reply_start(mask: List[int]) -> int:
    """Index where the final run of 1s in the mask begins (the last assistant reply)."""
    end = max(i for i, m in enumerate(mask) if m) + 1
    start = end
    while start > 0 and mask[start - 1]:
        start -= 1
    return start


@dataclass
class Prompt:
    record: dict                       # the JSONL object (task, answer, ... for the rewards)
    ids: List[int]                     # rendered prompt, ending with <|im_start|>assistant\n


def read_prompts(paths: Iterable[str], tokenizer, strict: bool = False, max_records: Optional[int] = None,
                 max_tokens: Optional[int] = None, check=None) -> Tuple[List[Prompt], ReadStats]:
    """GRPO/eval prompt records {"messages"|"prompt", ...}: rendered for generation. `check(record)` raises
    ValueError for a record the rewards cannot score (counted and skipped like any bad record)."""
    stats = ReadStats()
    out: List[Prompt] = []
    for path, number, obj in read_jsonl(paths, stats, strict, max_records):
        try:
            messages = check_messages(record_prompt(obj), need_assistant=False)
            if messages[-1]["role"] == "assistant":
                raise BadRecord("ends with an assistant turn (a prompt asks for one)")
            if check is not None:
                check(obj)
            ids = encode_prompt(tokenizer, obj)
            if max_tokens is not None and len(ids) > max_tokens:
                raise BadRecord(f"prompt longer than {max_tokens} tokens")
        except (BadRecord, ValueError, KeyError) as err:
            reject(stats, strict, path, number, err if isinstance(err, BadRecord) else BadRecord(str(err)[:80]))
            continue
        out.append(Prompt(obj, ids))
        stats.kept += 1
    return out, stats
