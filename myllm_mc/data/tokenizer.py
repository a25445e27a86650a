"""The tokenizer every stage uses: a byte-level BPE `tokenizer.json` (HF `tokenizers`) behind a small class.

Why a wrapper: megatron-core's GPTDataset needs `vocab_size`, `eod` and a JSON-serialisable `unique_identifiers`
(its index caches are keyed on it); preprocessing needs batched encoding; fine-tuning needs chat formatting with
a loss mask. The special tokens have fixed ids 0..3 so every tokenizer trained here agrees on them.

An imported model's tokenizer (Llama 3.x, Mistral, Qwen) has other special tokens; they are read from the
tokenizer_config.json beside tokenizer.json: `eod` (end of document), `im_end`/`eot` (end of a chat turn: generation
stops there), `pad`, `bos` — see `_resolve_special_tokens`. Its Jinja chat template, if it is not ours, is what
`encode_chat` renders with (myllm_mc.data.template_chat).

Lone surrogates (a Python `str` may hold U+D800..U+DFFF unpaired, e.g. from a JSON escape "\\ud800") cannot be
encoded as UTF-8, so no byte-level tokenizer can round-trip them. `encode(..., errors="strict")` (the default)
raises ValueError naming the position; `errors="replace"` encodes each one as U+FFFD (preprocessing does this
and counts the documents). Every other string, i.e. all valid UTF-8, round-trips exactly: decode(encode(s)) == s.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Iterable, List, Sequence, Tuple

from myllm_mc.errors import MyllmError

from .chat_template import CHAT_ROLES, CHAT_TEMPLATE, IM_END, IM_START

EOD = "<|endoftext|>"
PAD = "<|pad|>"
SPECIAL_TOKENS = [EOD, PAD, IM_START, IM_END]          # ids 0, 1, 2, 3 in this order

_SURROGATE = re.compile("[\ud800-\udfff]")


class TokenizerError(MyllmError, ValueError):
    """A tokenizer file that cannot be used; the message is one line with the fix."""


def replace_lone_surrogates(text: str) -> Tuple[str, int]:
    """(text with every unpaired surrogate replaced by U+FFFD, how many were replaced)."""
    return _SURROGATE.subn("\ufffd", text)


def _token_text(value):
    if isinstance(value, dict):     # transformers writes AddedToken dicts in some versions
        return value.get("content")
    return value if isinstance(value, str) else None


def _tokenizer_config(folder: Path) -> dict:
    """tokenizer_config.json beside tokenizer.json ({} without one): special tokens and chat template."""
    import json

    path = folder / "tokenizer_config.json"
    if not path.is_file():
        return {}
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise TokenizerError(f"{path}: not JSON ({err}) — fix: restore the file or remove it") from None
    return config if isinstance(config, dict) else {}


class Tokenizer:
    """Byte-level BPE from a tokenizer.json; what megatron-core's GPTDataset and every stage here accept."""

    def __init__(self, path: str | Path):
        from tokenizers import Tokenizer as HFTokenizer  # the [data] extra; `myllm config show` imports this module

        self.path = Path(path)
        if self.path.is_dir():
            self.path = self.path / "tokenizer.json"
        if not self.path.is_file():
            raise TokenizerError(f"tokenizer not found: {self.path} — fix: train one with "
                                 f"`python tools/train_tokenizer.py --input data/corpus.jsonl.zst --vocab-size 8192 "
                                 f"--output {self.path.parent}`")
        raw = self.path.read_bytes()
        try:
            self._tok = HFTokenizer.from_str(raw.decode("utf-8"))
        except Exception as err:  # tokenizers raises its own Exception type
            raise TokenizerError(f"{self.path}: not a HF tokenizers tokenizer.json ({err}) — fix: retrain it "
                                 f"with tools/train_tokenizer.py") from None
        self._sha256 = hashlib.sha256(raw).hexdigest()
        self.vocab_size = self._tok.get_vocab_size(with_added_tokens=True)
        self.config = _tokenizer_config(self.path.parent)
        self._resolve_special_tokens()
        # document text never produces control tokens: a literal "<|endoftext|>" in a book is just text;
        # a second instance reads them as control tokens, for prompts a program builds (allow_special=True)
        self._with_special = HFTokenizer.from_str(raw.decode("utf-8"))
        self._tok.encode_special_tokens = True
        self._chat_template_source(self.path.parent)

    def _resolve_special_tokens(self) -> None:
        """eod / eot (im_end) / pad / bos ids: ours (<|endoftext|> ...), else the model's (tokenizer_config.json).

        End of document: <|endoftext|> (ours, Qwen), <|end_of_text|> (Llama 3.x), else tokenizer_config's
        eos_token (Mistral's </s>). End of a chat turn (generation stops there too): <|im_end|> (ours, Qwen),
        <|eot_id|> (Llama 3.x), else eos_token, else the end of document.
        """
        find = self._tok.token_to_id
        eos = _token_text(self.config.get("eos_token"))
        eod = next((i for i in map(find, filter(None, (EOD, "<|end_of_text|>", eos, "</s>"))) if i is not None), None)
        if eod is None:
            raise TokenizerError(f"{self.path}: no end-of-document token ({EOD}, <|end_of_text|>, </s>, or an "
                                 f"eos_token in tokenizer_config.json) — fix: retrain with tools/train_tokenizer.py, "
                                 f"which adds {', '.join(SPECIAL_TOKENS)}, or give the model's tokenizer_config.json")
        eot = next((i for i in map(find, filter(None, (IM_END, "<|eot_id|>", eos))) if i is not None), eod)
        pad = next((i for i in map(find, filter(None, (PAD, _token_text(self.config.get("pad_token"))))) if i is not None), eod)
        im_start = find(IM_START)
        self.eod, self.pad, self.im_start, self.im_end = eod, pad, im_start if im_start is not None else eod, eot
        self.eot = eot
        bos = _token_text(self.config.get("bos_token"))
        self.bos = find(bos) if bos else None

    def _chat_template_source(self, folder: Path) -> None:
        """Template mode (myllm_mc.data.template_chat) when the tokenizer carries a template other than ours."""
        template = self.config.get("chat_template")
        if isinstance(template, list):      # named templates: [{"name": "default", "template": ...}, ...]
            template = next((t.get("template") for t in template if t.get("name") == "default"), None)
        if not template and (folder / "chat_template.jinja").is_file():
            template = (folder / "chat_template.jinja").read_text(encoding="utf-8")
        self.chat_template = template if template and template != CHAT_TEMPLATE else None
        self._compiled = None
        added = self._tok.get_added_tokens_decoder()
        unk = self._tok.token_to_id(_token_text(self.config.get("unk_token")) or "<unk>")
        # control ids a message's text must not produce (an unknown character's <unk> is not one)
        self.special_ids = frozenset(i for i, token in added.items() if token.special and i != unk)
        self.template_tags = tuple(t.content for t in added.values() if not t.special)   # Qwen3's <think> ...
        self.template_tokens = {k: t for k in ("bos_token", "eos_token", "unk_token", "pad_token")
                                if (t := _token_text(self.config.get(k))) is not None}

    @property
    def chat_template_compiled(self):
        if self._compiled is None:
            from .template_chat import compile_template
            self._compiled = compile_template(self.chat_template)
        return self._compiled

    # --- what megatron-core reads -------------------------------------------------------------------------
    @property
    def unique_identifiers(self) -> dict:
        """Keys megatron-core's index caches: a retrained tokenizer must not reuse old sample indices."""
        ids = {"class": "myllm_mc.data.tokenizer.Tokenizer", "sha256": self._sha256, "vocab_size": self.vocab_size}
        if self.chat_template:      # an imported model's template: chat data rendered with it differ
            ids["chat_template"] = hashlib.sha256(self.chat_template.encode("utf-8")).hexdigest()
        return ids

    @property
    def eos(self) -> int:
        return self.eod

    def __getstate__(self):   # picklable for DataLoader workers and process pools
        return {"path": str(self.path)}

    def __setstate__(self, state):
        self.__init__(state["path"])

    # --- text <-> ids -------------------------------------------------------------------------------------
    def encode(self, text: str, errors: str = "strict", allow_special: bool = False) -> List[int]:
        """Token ids of `text` (no end-of-document appended). errors: "strict" or "replace" (lone surrogates).

        allow_special: read "<|endoftext|>", "<|im_start|>" ... in `text` as their single control ids; by default
        they are ordinary text (so untrusted documents cannot inject control tokens).
        """
        tok = self._with_special if allow_special else self._tok
        return tok.encode(self._checked(text, errors), add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str], errors: str = "strict") -> List[List[int]]:
        """Many texts in one call into the Rust side: the fast path preprocessing uses."""
        # encode_batch_fast skips character offsets, which nothing here needs (~20% faster)
        encode = getattr(self._tok, "encode_batch_fast", self._tok.encode_batch)
        try:
            encodings = encode(list(texts), add_special_tokens=False)
        except TypeError:   # a lone surrogate somewhere in the batch
            encodings = encode([self._checked(t, errors) for t in texts], add_special_tokens=False)
        return [e.ids for e in encodings]

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = False) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def token_to_id(self, token: str):
        return self._tok.token_to_id(token)

    def id_to_token(self, token_id: int):
        return self._tok.id_to_token(token_id)

    def _checked(self, text: str, errors: str) -> str:
        match = _SURROGATE.search(text)
        if match is None:
            return text
        if errors == "replace":
            return replace_lone_surrogates(text)[0]
        raise ValueError(f"lone surrogate U+{ord(match.group()):04X} at character {match.start()} cannot be encoded "
                         f"as UTF-8 — fix: pass errors='replace' to encode it as U+FFFD")

    # --- chat (fine-tuning) -------------------------------------------------------------------------------
    def encode_chat(self, messages: Sequence[dict], add_generation_prompt: bool = False) -> Tuple[List[int], List[int]]:
        """ChatML ids and a loss mask that is 1 only on assistant replies (and their <|im_end|>).

        Each message renders as `<|im_start|>ROLE\\nCONTENT<|im_end|>\\n`; the role names are ordinary text.
        With add_generation_prompt the ids end with `<|im_start|>assistant\\n`, ready for generation.
        `ROLE\\nCONTENT` is tokenized as one string, exactly as a tokenizer applying the chat template
        (myllm_mc.data.chat_template, transformers, llama.cpp) does; a token that straddles the newline and
        the reply (a reply starting with spaces) counts as the reply's. Control-token strings inside CONTENT
        stay ordinary text.

        A tokenizer carrying another model's Jinja chat template (an imported Llama 3.x, Mistral, Qwen: its
        tokenizer_config.json) renders with that template instead (myllm_mc.data.template_chat): the ids
        transformers' apply_chat_template gives, with the same guarantee that message text stays text.
        """
        return self.encode_chat_batch([messages], add_generation_prompt)[0]

    def encode_chat_batch(self, conversations: Sequence[Sequence[dict]], add_generation_prompt: bool = False
                          ) -> List[Tuple[List[int], List[int]]]:
        """`encode_chat` for many conversations with one call into the Rust side (chat preprocessing)."""
        if self.chat_template:
            from .template_chat import encode_with_template
            return [encode_with_template(self, self._validated(conversation), add_generation_prompt)
                    for conversation in conversations]
        texts, starts = [], []
        for conversation in conversations:
            for n, message in enumerate(conversation):
                role, content = message.get("role"), message.get("content")
                if role not in CHAT_ROLES or not isinstance(content, str):
                    raise ValueError(f"message {n}: expected role in {CHAT_ROLES} and string content, got "
                                     f"role={role!r} — fix: use {{'role': 'user', 'content': '...'}}")
                texts.append(self._checked(f"{role}\n{content}", "strict"))
                starts.append(len(role) + 1)
        encodings = iter(self._tok.encode_batch(texts, add_special_tokens=False) if texts else [])
        starts = iter(starts)
        newline = self.encode("\n")
        generation = [self.im_start] + self.encode("assistant\n") if add_generation_prompt else []
        out = []
        for conversation in conversations:
            ids, mask = [], []
            for message in conversation:
                encoding, reply_start = next(encodings), next(starts)
                learn = 1 if message["role"] == "assistant" else 0
                ids += [self.im_start] + encoding.ids + [self.im_end] + newline
                mask += ([0] + [learn if end > reply_start else 0 for _, end in encoding.offsets] + [learn]
                         + [0] * len(newline))
            out.append((ids + generation, mask + [0] * len(generation)))
        return out

    def _validated(self, conversation: Sequence[dict]) -> List[dict]:
        for n, message in enumerate(conversation):
            role, content = message.get("role"), message.get("content")
            if role not in CHAT_ROLES or not isinstance(content, str):
                raise ValueError(f"message {n}: expected role in {CHAT_ROLES} and string content, got "
                                 f"role={role!r} — fix: use {{'role': 'user', 'content': '...'}}")
            self._checked(content, "strict")
        return [{"role": m["role"], "content": m["content"]} for m in conversation]

    def __repr__(self) -> str:
        return f"Tokenizer({str(self.path)!r}, vocab_size={self.vocab_size})"
