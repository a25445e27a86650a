"""Chat data: validating conversations, rendering them to (tokens, loss mask), and reading the preprocessed pair.

Layout on disk (`tools/preprocess_data.py --chat --output-prefix P`): two megatron-core indexed datasets with one
document per conversation and equal lengths, `P_text_document.{bin,idx}` (token ids) and
`P_loss_mask_document.{bin,idx}` (uint8, 1 on the tokens an assistant wrote: its reply and its <|im_end|>).
`loss_mask[i]` says whether token i is a target; a trainer predicting token i+1 from position i uses
`labels = tokens[1:]`, `loss_mask[1:]`. With --append-eod (default) each conversation ends with <|endoftext|>
(mask 0), so megatron's document-boundary logic (reset_position_ids / reset_attention_mask) sees it.

Why a parallel dataset rather than a flag bit in the ids: both files stay megatron-core's own format (merge,
inspect and the MPI shard/merge path all work unchanged), and the mask costs one byte per token.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Sequence, Tuple

import numpy as np

from .readers import MALFORMED_JSON, MISSING_KEY, NON_UTF8, BadRecord
from .tokenizer import CHAT_ROLES, Tokenizer

CHAT_OUTPUT_KEYS = ("text", "loss_mask")       # → PREFIX_text_document, PREFIX_loss_mask_document
DEFAULT_MESSAGES_KEY = "messages"

# why a conversation was skipped (besides the readers' malformed_json / non_utf8 / missing_key)
WRONG_TYPE = "wrong_type"              # messages not a list, a message not an object, role or content not a string
MISSING_ROLE = "missing_role"          # a message without "role" or without "content"
UNKNOWN_ROLE = "unknown_role"          # a role other than system / user / assistant
EMPTY_ASSISTANT = "empty_assistant"    # an assistant turn with no (or only whitespace) content
NO_ASSISTANT = "no_assistant"          # nothing to learn from
CHAT_REASONS = (WRONG_TYPE, MISSING_ROLE, UNKNOWN_ROLE, EMPTY_ASSISTANT, NO_ASSISTANT)


def validate_messages(messages) -> List[dict]:
    """The conversation as [{"role", "content"}] (other keys dropped), or BadRecord(reason)."""
    if messages is None:
        raise BadRecord(MISSING_KEY)
    if not isinstance(messages, list):
        raise BadRecord(WRONG_TYPE)
    clean = []
    for message in messages:
        if not isinstance(message, dict):
            raise BadRecord(WRONG_TYPE)
        if "role" not in message or "content" not in message or message["role"] is None:
            raise BadRecord(MISSING_ROLE)
        role, content = message["role"], message["content"]
        if not isinstance(role, str) or not isinstance(content, str):
            raise BadRecord(WRONG_TYPE)
        if role not in CHAT_ROLES:
            raise BadRecord(UNKNOWN_ROLE)
        if role == "assistant" and not content.strip():
            raise BadRecord(EMPTY_ASSISTANT)
        clean.append({"role": role, "content": content})
    if not any(m["role"] == "assistant" for m in clean):
        raise BadRecord(NO_ASSISTANT)
    return clean


def parse_conversation(kind: str, payload, key: str = DEFAULT_MESSAGES_KEY) -> List[dict]:
    """The validated messages of one raw record (JSONL line bytes, Parquet row, webdataset sample)."""
    if kind == "jsonl":
        try:
            obj = json.loads(payload.decode("utf-8"))
        except UnicodeDecodeError:
            raise BadRecord(NON_UTF8) from None
        except ValueError:
            raise BadRecord(MALFORMED_JSON) from None
    elif kind == "parquet":
        obj = payload
    else:
        if "json" not in payload:
            raise BadRecord(MISSING_KEY)
        try:
            obj = json.loads(payload["json"].decode("utf-8"))
        except UnicodeDecodeError:
            raise BadRecord(NON_UTF8) from None
        except ValueError:
            raise BadRecord(MALFORMED_JSON) from None
    if not isinstance(obj, dict):
        raise BadRecord(MALFORMED_JSON)
    return validate_messages(obj.get(key))


def encode_conversation(tokenizer: Tokenizer, messages: Sequence[dict], append_eod: bool = True
                        ) -> Tuple[List[int], List[int]]:
    """(ids, loss mask) exactly as preprocessing stores them: `encode_chat` plus <|endoftext|> (mask 0)."""
    ids, mask = tokenizer.encode_chat(messages)
    if append_eod:
        ids, mask = ids + [tokenizer.eod], mask + [0]
    return ids, mask


class ChatDataset:
    """The preprocessed conversations: `dataset[i]` is (tokens int64, loss_mask uint8), equal lengths.

    `prefix` is the --output-prefix given to preprocessing (P, or P_text_document).
    """

    def __init__(self, prefix: str | Path):
        # megatron-core (→ torch) on use: preprocessing imports this module and forks its workers before torch
        from megatron.core.datasets.indexed_dataset import IndexedDataset

        prefix = str(prefix)
        if prefix.endswith("_text_document"):
            prefix = prefix[: -len("_text_document")]
        self.prefix = prefix
        paths = [f"{prefix}_{key}_document" for key in CHAT_OUTPUT_KEYS]
        missing = [p + ".idx" for p in paths if not Path(p + ".idx").is_file() or not Path(p + ".bin").is_file()]
        if missing:
            raise FileNotFoundError(f"chat dataset incomplete: {', '.join(missing)} missing — fix: run "
                                    f"`tools/preprocess_data.py --chat --output-prefix {prefix} ...`")
        self.tokens, self.loss_mask = (IndexedDataset(p) for p in paths)
        if not np.array_equal(self.tokens.sequence_lengths, self.loss_mask.sequence_lengths):
            raise ValueError(f"{prefix}: token and loss-mask datasets differ in document lengths — fix: "
                             f"preprocess the chat data again (they must come from the same run)")
        if self.loss_mask.index.dtype != np.uint8:
            raise ValueError(f"{paths[1]}: expected uint8, got {self.loss_mask.index.dtype} — fix: preprocess with "
                             f"--chat")

    def __len__(self) -> int:
        return len(self.tokens.sequence_lengths)

    @property
    def lengths(self) -> np.ndarray:
        return self.tokens.sequence_lengths

    def __getitem__(self, index: int) -> Tuple[np.ndarray, np.ndarray]:
        return self.tokens[index].astype(np.int64), self.loss_mask[index]


def read_chat_dataset(prefix: str | Path) -> ChatDataset:
    return ChatDataset(prefix)


# --- in-memory records (DPO pairs, GRPO / eval prompts) ----------------------------------------------------
def prompt_messages(record: dict) -> List[dict]:
    """The conversation before the reply: record["messages"], or record["prompt"] (a string is one user turn)."""
    prompt = record.get("messages", record.get("prompt"))
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    if not isinstance(prompt, list) or not prompt:
        raise ValueError(f"record {record.get('id', '?')}: no prompt — fix: give \"messages\" (a list of turns) or "
                         f"\"prompt\" (a string)")
    return prompt


def encode_prompt(tokenizer: Tokenizer, record: dict) -> List[int]:
    """Prompt ids ending with `<|im_start|>assistant\\n`, ready for generation (GRPO rollouts, evaluation)."""
    return tokenizer.encode_chat(prompt_messages(record), add_generation_prompt=True)[0]


def _reply(value) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and len(value) == 1 and value[0].get("role") == "assistant":
        return value[0]["content"]       # TRL's conversational form: [{"role": "assistant", "content": ...}]
    raise ValueError(f"a reply must be a string or [{{'role': 'assistant', 'content': ...}}], got {value!r:.60}")


def encode_preference(tokenizer: Tokenizer, record: dict) -> dict:
    """A DPO pair as {"chosen": (ids, mask), "rejected": (ids, mask), "prompt_length": n}: the prompt plus each
    reply as an assistant turn; the masks are 1 only on the reply and its <|im_end|> (what DPO sums log-probs
    over). Both share the first `prompt_length` ids."""
    prompt = prompt_messages(record)
    out = {}
    for side in ("chosen", "rejected"):
        out[side] = tokenizer.encode_chat(prompt + [{"role": "assistant", "content": _reply(record[side])}])
    out["prompt_length"] = len(tokenizer.encode_chat(prompt, add_generation_prompt=True)[0])
    return out
