"""Tokenizer: trains on the shipped corpus, exact round trip, configured vocab size, single-id special tokens."""

from __future__ import annotations

import json

import pytest
from data_helpers import CORPUS, run_tool

from myllm_mc.data.tokenizer import SPECIAL_TOKENS, Tokenizer, TokenizerError

ADVERSARIAL = [
    "",
    "plain ASCII, with  double  spaces\tand tabs\r\nand CRLF",
    "emoji 😀🚀 and a family 👩‍👩‍👧‍👦 (ZWJ sequence), flags 🇫🇷🇯🇵, skin tone 👋🏽",
    "combining marks: e\u0301 a\u0308\u0304 Z\u0351\u0352\u0353 (NFD, never normalised away)",
    "precomposed é vs decomposed e\u0301 must stay distinct",
    "right-to-left: שלום עולם and مرحبا بالعالم with \u200f marks \u202e override",
    "CJK 中文字符 日本語 한국어, and math 𝔸𝕓𝕔 ∑∫√",
    "control bytes \x00\x01\x1f\x7f and noncharacters \ufffe\uffff and the last code point \U0010ffff",
    "  leading and trailing whitespace  \n\n",
    "literal specials <|endoftext|> <|im_start|>user\n<|im_end|> <|pad|> stay plain text",
    "BOM \ufeff and replacement char \ufffd and zero-width \u200b\u200c\u200d",
]


@pytest.fixture(scope="module")
def tokenizer_8k(tmp_path_factory):
    """The quickstart's tokenizer: vocab 8,192 on the whole shipped corpus, through the user-facing tool."""
    out = tmp_path_factory.mktemp("tok8k")
    proc = run_tool("tools/train_tokenizer.py", "--input", CORPUS, "--vocab-size", "8192", "--output", out)
    assert "bytes/token" in proc.stdout
    return out


def test_trains_on_shipped_corpus_with_configured_vocab(tokenizer_8k):
    tok = Tokenizer(tokenizer_8k / "tokenizer.json")
    assert tok.vocab_size == 8192
    report = json.loads((tokenizer_8k / "training_report.json").read_text())
    assert report["reserved_tokens"] == 0                 # 8,192 real entries: the corpus is big enough
    assert report["heldout_documents"] == 1458 // 20      # every 20th document held out
    assert report["train_documents"] + report["heldout_documents"] == 1458
    # English prose with a byte-level BPE of 8k: about 4 bytes per token (GPT-2's 50k gives ~4.5)
    assert 3.6 < report["bytes_per_token"] < 4.8


def test_vocab_size_exact_even_when_corpus_is_small(tmp_path, corpus_docs):
    from data_helpers import write_jsonl

    from myllm_mc.data.tokenizer_training import train_tokenizer
    report = train_tokenizer([write_jsonl(tmp_path / "few.jsonl", corpus_docs[:40])], 65536, tmp_path / "t")
    tok = Tokenizer(tmp_path / "t")
    assert tok.vocab_size == 65536 and report.vocab_size == 65536
    assert report.reserved_tokens > 0 and report.learned_tokens + report.reserved_tokens + 4 == 65536


def test_special_tokens_have_fixed_single_ids(small_tokenizer):
    tok = small_tokenizer
    assert [tok.eod, tok.pad, tok.im_start, tok.im_end] == [0, 1, 2, 3]
    for n, special in enumerate(SPECIAL_TOKENS):
        assert tok.encode(special, allow_special=True) == [n]
        assert len(tok.encode(special)) > 1          # in document text it is ordinary text
        assert tok.decode([n]) == special


@pytest.mark.parametrize("text", ADVERSARIAL)
def test_round_trip_is_exact(small_tokenizer, text):
    ids = small_tokenizer.encode(text)
    assert small_tokenizer.decode(ids) == text
    assert all(0 <= i < small_tokenizer.vocab_size for i in ids)
    assert small_tokenizer.encode_batch([text, text]) == [ids, ids]


def test_round_trip_on_random_unicode(small_tokenizer):
    import random
    rng = random.Random(0)
    valid = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    texts = ["".join(chr(rng.choice(valid)) for _ in range(rng.randint(1, 60))) for _ in range(200)]
    for text, ids in zip(texts, small_tokenizer.encode_batch(texts)):
        assert small_tokenizer.decode(ids) == text


def test_lone_surrogates_as_documented(small_tokenizer):
    text = "before \ud800 middle \udfff after"
    with pytest.raises(ValueError, match=r"lone surrogate U\+D800 at character 7"):
        small_tokenizer.encode(text)
    ids = small_tokenizer.encode(text, errors="replace")
    assert small_tokenizer.decode(ids) == "before \ufffd middle \ufffd after"
    # a properly paired surrogate cannot exist in a Python str: "😀" is one code point and round-trips
    assert small_tokenizer.decode(small_tokenizer.encode("\U0001F600")) == "\U0001F600"
    assert small_tokenizer.encode_batch(["ok", text], errors="replace")[1] == ids


def test_chat_template_masks_all_but_assistant(small_tokenizer):
    tok = small_tokenizer
    ids, mask = tok.encode_chat([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                                 {"role": "assistant", "content": "Hello there."}])
    assert len(ids) == len(mask) and ids.count(tok.im_start) == 3 and ids.count(tok.im_end) == 3
    learned = [i for i, m in zip(ids, mask) if m]
    assert learned == tok.encode("Hello there.") + [tok.im_end]
    assert tok.decode(ids) == ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
                               "<|im_start|>assistant\nHello there.<|im_end|>\n")
    with pytest.raises(ValueError, match="role"):
        tok.encode_chat([{"role": "robot", "content": "x"}])


def test_megatron_needs_are_met_and_pickles(small_tokenizer):
    import pickle
    ident = small_tokenizer.unique_identifiers
    assert json.loads(json.dumps(ident)) == ident and len(ident["sha256"]) == 64
    clone = pickle.loads(pickle.dumps(small_tokenizer))
    assert clone.encode("pickled") == small_tokenizer.encode("pickled") and clone.eod == 0


def test_missing_tokenizer_is_one_line_error(tmp_path):
    with pytest.raises(TokenizerError) as err:
        Tokenizer(tmp_path / "nope" / "tokenizer.json")
    assert "\n" not in str(err.value) and "train_tokenizer.py" in str(err.value)
    proc = run_tool("-m", "myllm_mc.cli", "tokenizer", "train", "--input", tmp_path / "missing.jsonl",
                    "--vocab-size", "512", "--output", tmp_path / "o", check=False)
    assert proc.returncode == 2 and "no such input file" in proc.stderr and proc.stderr.count("\n") == 1
