"""Byte-level BPE tokenizers ↔ GGUF tokenizer metadata (the `gpt2` tokenizer model of llama.cpp).

llama.cpp does not run a tokenizer.json: it rebuilds the tokenizer from the vocabulary, the merges and a
*pre-tokenizer name* (`tokenizer.ggml.pre`) that selects one of its compiled-in split regexes, and it refuses a
name it does not know. So an exporter must name a pre-tokenizer whose split is exactly ours:

    ours (tools/train_tokenizer.py)       ByteLevel(use_regex=True)                 → "gpt-2"
    SmolLM's (and imported SmolLM files)  Sequence[Digits(individual), ByteLevel]   → "smollm"

Any other pre-tokenizer is refused with the reason, rather than written under a name that splits differently
(the silent kind of breakage: same vocabulary, different ids). Import goes the other way for the same names.
"""

from __future__ import annotations

import json
from typing import Optional

from .tokenizer_files import TokenizerInfo
from .weights import ConversionError

# llama.cpp's token types (llama_token_type)
NORMAL, UNUSED, CONTROL, USER_DEFINED = 1, 5, 3, 4


def _byte_level(pre: dict) -> bool:
    return pre.get("type") == "ByteLevel" and pre.get("use_regex", True) and not pre.get("add_prefix_space", False)


def pre_tokenizer_name(tokenizer_json: dict) -> str:
    """The llama.cpp pre-tokenizer name whose split equals this tokenizer.json's pre_tokenizer."""
    pre = tokenizer_json.get("pre_tokenizer") or {}
    if _byte_level(pre):
        return "gpt-2"
    parts = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else []
    if (len(parts) == 2 and parts[0].get("type") == "Digits" and parts[0].get("individual_digits")
            and _byte_level(parts[1])):
        return "smollm"
    raise ConversionError(f"pre-tokenizer {json.dumps(pre)[:120]} has no llama.cpp equivalent here (known: byte-level"
                          " GPT-2 split, and digits-then-byte-level as SmolLM) — fix: train the tokenizer with"
                          " tools/train_tokenizer.py")


def gguf_tokenizer_fields(info: TokenizerInfo, vocab: int) -> dict:
    """tokens, token types, merges, pre name and special ids for a model with `vocab` embedding rows."""
    from myllm_mc.data.tokenizer import Tokenizer

    raw = json.loads(info.path.read_text(encoding="utf-8"))
    if (raw.get("model") or {}).get("type") != "BPE":
        raise ConversionError(f"{info.path}: tokenizer model {raw.get('model', {}).get('type')!r} — fix: GGUF export"
                              " writes byte-level BPE tokenizers (llama.cpp's gpt2 model) only")
    tok = Tokenizer(info.path)
    if tok.vocab_size > vocab:
        raise ConversionError(f"{info.path}: {tok.vocab_size} tokens but the model has {vocab} embedding rows"
                              " — fix: pass the tokenizer the model was trained with")
    added = {t["id"]: t for t in raw.get("added_tokens", [])}
    tokens, types = [], []
    for i in range(vocab):
        text = tok.id_to_token(i)
        if text is None:                       # embedding rows beyond the tokenizer: never produced
            tokens.append(f"[PAD{i}]")
            types.append(UNUSED)
            continue
        tokens.append(text)
        types.append((CONTROL if added[i].get("special", False) else USER_DEFINED) if i in added else NORMAL)
    merges = [m if isinstance(m, str) else " ".join(m) for m in raw["model"].get("merges", [])]

    def id_of(text: Optional[str]):
        return tok.token_to_id(text) if text else None

    return {"tokens": tokens, "types": types, "merges": merges, "pre": pre_tokenizer_name(raw),
            "bos": id_of(info.bos), "eos": id_of(info.eos), "pad": id_of(info.pad), "eot": id_of(info.eot),
            "chat_template": info.chat_template}


def tokenizer_from_gguf(fields: dict, where: str):
    """(tokenizer.json text, tokenizer_config dict) from GGUF metadata (`fields`: key → python value)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    model = fields.get("tokenizer.ggml.model")
    if model != "gpt2":
        raise ConversionError(f"{where}: tokenizer.ggml.model={model!r} — fix: import a GGUF with a byte-level BPE"
                              " (gpt2) tokenizer; SentencePiece vocabularies are not supported")
    pre_name = fields.get("tokenizer.ggml.pre", "default")
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    known = {"gpt-2": byte_level, "default": byte_level,
             "smollm": pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])}
    if pre_name not in known:
        raise ConversionError(f"{where}: tokenizer.ggml.pre={pre_name!r} is not one this importer reproduces"
                              f" ({', '.join(sorted(known))}) — fix: extend myllm_mc/interop/gguf_tokenizer.py")
    tokens = fields["tokenizer.ggml.tokens"]
    types = fields.get("tokenizer.ggml.token_type") or [NORMAL] * len(tokens)
    merges = [tuple(m.split(" ", 1)) for m in fields.get("tokenizer.ggml.merges", [])]
    tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges))
    tok.pre_tokenizer = known[pre_name]
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t, kind in zip(tokens, types) if kind == CONTROL])
    tok.add_tokens([AddedToken(t, special=False, normalized=False)
                    for t, kind in zip(tokens, types) if kind == USER_DEFINED])

    def text_of(key: str):
        i = fields.get(f"tokenizer.ggml.{key}_token_id")
        return tokens[i] if i is not None and 0 <= i < len(tokens) else None

    config = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": text_of("bos"), "eos_token": text_of("eos"),
              "pad_token": text_of("padding"), "unk_token": text_of("unknown"),
              "add_bos_token": bool(fields.get("tokenizer.ggml.add_bos_token", False)), "add_eos_token": False,
              "clean_up_tokenization_spaces": False}
    if fields.get("tokenizer.chat_template"):
        config["chat_template"] = fields["tokenizer.chat_template"]
    return tok.to_str(), {k: v for k, v in config.items() if v is not None}
