"""The tokenizer files that travel with a converted model: tokenizer.json, its special tokens and chat template.

A tokenizer directory here is tokenizer.json plus (optionally) tokenizer_config.json, the file transformers'
AutoTokenizer reads for special tokens and `chat_template`. Without one, MyLLM's ChatML template
(myllm_mc.data.chat_template, what `Tokenizer.encode_chat` builds) is written. An imported model keeps its own
template (e.g. SmolLM's, which adds a default system prompt).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from myllm_mc.data.chat_template import CHAT_TEMPLATE
from myllm_mc.data.tokenizer import EOD, IM_END, PAD

DEFAULT_CHAT_TEMPLATE = CHAT_TEMPLATE     # MyLLM's ChatML (myllm_mc.data.chat_template), as encode_chat builds it


@dataclass(frozen=True)
class TokenizerInfo:
    """What an exporter writes besides the vocabulary: special tokens by text, chat template."""

    path: Path                 # tokenizer.json
    bos: Optional[str]
    eos: str
    pad: Optional[str]
    eot: Optional[str]         # end of a chat turn (generation stops there)
    chat_template: str
    eod: str = EOD             # end of document (Llama 3.x: <|end_of_text|>, Mistral: </s>)


def _token_text(value) -> Optional[str]:
    if isinstance(value, dict):     # transformers writes AddedToken dicts in some versions
        return value.get("content")
    return value


def read_tokenizer_info(path: str | Path) -> TokenizerInfo:
    """From a tokenizer.json (or its directory) and the tokenizer_config.json beside it, when there is one."""
    from myllm_mc.data.tokenizer import Tokenizer

    tok = Tokenizer(path)
    config = tok.config           # tokenizer_config.json beside it ({} without one)
    eos = _token_text(config.get("eos_token")) or tok.id_to_token(tok.eod)
    pad = _token_text(config.get("pad_token")) or (PAD if tok.token_to_id(PAD) is not None else None)
    eot = tok.id_to_token(tok.eot) if tok.eot != tok.eod else (IM_END if tok.token_to_id(IM_END) is not None else None)
    return TokenizerInfo(path=tok.path, bos=_token_text(config.get("bos_token")) or eos, eos=eos, pad=pad, eot=eot,
                         chat_template=tok.chat_template or DEFAULT_CHAT_TEMPLATE, eod=tok.id_to_token(tok.eod))


def write_hf_tokenizer(info: TokenizerInfo, out_dir: str | Path, max_length: int) -> None:
    """tokenizer.json + tokenizer_config.json + special_tokens_map.json, as AutoTokenizer loads them."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if info.path.resolve() != (out / "tokenizer.json").resolve():
        shutil.copyfile(info.path, out / "tokenizer.json")
    special = {"bos_token": info.bos, "eos_token": info.eos}
    if info.pad:
        special["pad_token"] = info.pad
    config = {"tokenizer_class": "PreTrainedTokenizerFast", **special, "add_bos_token": False,
              "add_eos_token": False, "clean_up_tokenization_spaces": False, "model_max_length": max_length,
              "chat_template": info.chat_template}
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")
    (out / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")
