"""The Jinja chat template renders what `encode_chat` encodes: same text, and through transformers'
`apply_chat_template` on the exported tokenizer files, the same token ids, with and without the generation prompt."""

from __future__ import annotations

import json

import pytest

from myllm_mc.data.chat_template import CHAT_TEMPLATE, render_chat_text

CONVERSATIONS = [
    [{"role": "user", "content": "What is 7 + 5?"}, {"role": "assistant", "content": "12"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
     {"role": "assistant", "content": "Hello there."}, {"role": "user", "content": "And again?"},
     {"role": "assistant", "content": "Hello again."}],
    [{"role": "system", "content": ""}, {"role": "user", "content": "  two leading spaces"},
     {"role": "assistant", "content": "   three, then a newline\n"}],
    [{"role": "user", "content": "\n\nleading newlines\r\nCRLF\tand a tab "},
     {"role": "assistant", "content": "\n answer after a newline and a space"}],
    [{"role": "user", "content": "ünïcödé, emoji 😀👩‍👩‍👧, RTL שלום, CJK 中文"},
     {"role": "assistant", "content": "<answer>Pride and Prejudice</answer>"}],
    [{"role": "user", "content": 'Which book is this verse from? "Jesus wept."'}],
    [{"role": "user", "content": "trailing spaces   "}, {"role": "assistant", "content": "1"},
     {"role": "user", "content": "1234567 + 89 = ?"}],
]


def _jinja_render(messages, add_generation_prompt):
    from jinja2.sandbox import ImmutableSandboxedEnvironment  # what transformers renders templates with
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    return env.from_string(CHAT_TEMPLATE).render(messages=messages, add_generation_prompt=add_generation_prompt)


@pytest.mark.parametrize("generation", [False, True])
@pytest.mark.parametrize("messages", CONVERSATIONS)
def test_template_text_equals_python_rendering(small_tokenizer, messages, generation):
    text = render_chat_text(messages, add_generation_prompt=generation)
    assert _jinja_render(messages, generation) == text
    ids, _ = small_tokenizer.encode_chat(messages, add_generation_prompt=generation)
    assert small_tokenizer.decode(ids) == text


@pytest.fixture(scope="module")
def hf_tokenizer(small_tokenizer):
    transformers = pytest.importorskip("transformers")
    config = json.loads((small_tokenizer.path.parent / "tokenizer_config.json").read_text())
    assert config["chat_template"] == CHAT_TEMPLATE          # written by the tokenizer trainer
    return transformers.AutoTokenizer.from_pretrained(str(small_tokenizer.path.parent))


def test_transformers_apply_chat_template_gives_encode_chat_ids(small_tokenizer, hf_tokenizer):
    checked = 0
    for messages in CONVERSATIONS:
        for generation in (False, True):
            if not generation and messages[-1]["role"] != "assistant":
                continue
            ours, mask = small_tokenizer.encode_chat(messages, add_generation_prompt=generation)
            text = hf_tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation)
            assert text == render_chat_text(messages, generation)
            theirs = hf_tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=generation)
            theirs = theirs["input_ids"] if isinstance(theirs, dict) or hasattr(theirs, "keys") else theirs
            assert list(theirs) == ours, messages
            assert hf_tokenizer(text, add_special_tokens=False)["input_ids"] == ours
            assert len(mask) == len(ours)
            checked += 1
    assert checked == 12


def test_mask_covers_a_reply_whose_first_token_straddles_the_newline(small_tokenizer):
    """A reply starting with spaces may merge with the template's newline; that token counts as the reply's."""
    tok = small_tokenizer
    messages = [{"role": "user", "content": "x"}, {"role": "assistant", "content": "   spaced"}]
    ids, mask = tok.encode_chat(messages)
    learned = tok.decode([i for i, m in zip(ids, mask) if m])
    assert learned.endswith("   spaced<|im_end|>") and learned in ("   spaced<|im_end|>", "\n   spaced<|im_end|>")
    unlearned = tok.decode([i for i, m in zip(ids, mask) if not m])
    assert "spaced" not in unlearned and unlearned.count("<|im_start|>") == 2
