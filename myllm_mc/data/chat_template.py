"""The ChatML chat template as a Jinja string, for tokenizer_config.json, GGUF metadata and servers.

Why one constant: training (`Tokenizer.encode_chat`), generation and the exported model must turn a conversation
into the same token ids. This template renders exactly the text `render_chat_text` does, and tokenizing that
text with the exported tokenizer gives exactly `encode_chat`'s ids (tested against transformers'
`apply_chat_template`), as long as no message contains a control-token string such as "<|im_start|>" (a
tokenizer applying a template reads those as control tokens; `encode_chat` keeps them as text).

    <|im_start|>ROLE\\nCONTENT<|im_end|>\\n   for every message, ROLE ∈ system, user, assistant
    <|im_start|>assistant\\n               at the end when add_generation_prompt
"""

from __future__ import annotations

from typing import Sequence

IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
CHAT_ROLES = ("system", "user", "assistant")

CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{%- endif -%}"
)

# what stops generation of an assistant turn (tokenizer_config's eos for chat, GGUF's eot)
END_OF_TURN = IM_END


def render_chat_text(messages: Sequence[dict], add_generation_prompt: bool = False) -> str:
    """The template's output in plain Python (no Jinja needed): what a server or a log shows as the prompt."""
    parts = []
    for n, message in enumerate(messages):
        role, content = message.get("role"), message.get("content")
        if role not in CHAT_ROLES or not isinstance(content, str):
            raise ValueError(f"message {n}: expected role in {CHAT_ROLES} and string content, got role={role!r} — "
                             f"fix: use {{'role': 'user', 'content': '...'}}")
        parts.append(f"{IM_START}{role}\n{content}{IM_END}\n")
    if add_generation_prompt:
        parts.append(f"{IM_START}assistant\n")
    return "".join(parts)
