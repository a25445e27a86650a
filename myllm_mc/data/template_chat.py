"""Chat rendering with a model's own Jinja chat template (an imported Llama 3.x, Mistral, Qwen ... tokenizer), with
the same guarantee as MyLLM's ChatML path: message text never becomes control tokens.

`Tokenizer.encode_chat` uses this when the tokenizer_config.json (or chat_template.jinja) beside tokenizer.json
holds a template other than MyLLM's ChatML (myllm_mc.data.chat_template); tokenizers trained here keep the ChatML
path. How a conversation becomes ids:

1. The template renders twice in a sandbox set up as transformers sets it up (trim_blocks, lstrip_blocks,
   loopcontrols, `raise_exception`, `strftime_now`, `tojson`, the special tokens as `bos_token`, `eos_token` ...):
   once with the real messages, once with each message's content replaced by a marker. The markers give the
   template's own text; the real rendering must be that text with each marker replaced by the message's content
   (or the content stripped: templates `| trim` it), or the conversation is refused in one line — a template
   whose output cannot be split into "template text" and "message text" is not rendered half-checked.
2. The rendered string is encoded as transformers' `apply_chat_template(tokenize=True)` encodes it (special tokens
   read as control ids, no BOS added). If no special token overlaps a message's text, those are the ids: equal to
   transformers' by construction.
3. Otherwise a message spells a control token ("<|eot_id|>", "[INST]", "<|im_end|>" ...). Then only the special
   tokens in the template's own text are control ids: the text between two of them (template text and message
   text together) is encoded with special-token matching off, so the message's "<|eot_id|>" stays text.

The loss mask is 1 on the tokens overlapping an assistant message's text and on the tokens after it up to and
including the first end-of-turn id (`<|eot_id|>`, `</s>`, `<|im_end|>`), as in the ChatML path.
"""

from __future__ import annotations

import json
import re
from typing import List, Sequence, Tuple

_MARK = "\ue000myllm-message-{}-{}\ue001"
_MARK_SPLIT = re.compile("\ue000myllm-message-(\\d+)-(\\d+)\ue001")


class ChatTemplateError(ValueError):
    """A conversation the model's chat template refuses, or whose rendering cannot be checked."""


def _raise(message):
    raise ChatTemplateError(f"the model's chat template refuses this conversation: {message} — fix: give "
                            f"conversations in the form this model's template accepts")


def _tojson(value, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(fmt: str) -> str:
    from datetime import datetime
    return datetime.now().strftime(fmt)


def compile_template(source: str):
    """The Jinja template compiled as transformers compiles chat templates (sandboxed)."""
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = _tojson
    env.globals.update(raise_exception=_raise, strftime_now=_strftime_now)
    try:
        return env.from_string(source)
    except Exception as err:    # jinja2.TemplateSyntaxError, or a transformers-only tag such as {% generation %}
        raise ChatTemplateError(f"the tokenizer's chat_template does not compile ({err}) — fix: correct "
                                f"chat_template in tokenizer_config.json") from None


def render(template, messages: Sequence[dict], add_generation_prompt: bool, special: dict) -> str:
    try:
        return template.render(messages=[dict(m) for m in messages], tools=None, documents=None,
                               add_generation_prompt=add_generation_prompt, **special)
    except ChatTemplateError:
        raise
    except Exception as err:     # jinja2's UndefinedError, a TypeError inside the template ...
        raise ChatTemplateError(f"the model's chat template failed on this conversation ({type(err).__name__}: "
                                f"{err}) — fix: give conversations in the form this model's template accepts") from None


def _pieces(content: str, tags: Sequence[str]) -> List[str]:
    """content split at the tokenizer's non-special added tokens (Qwen3's <think> </think>): [text, tag, text ...]."""
    if not tags:
        return [content]
    return re.split("(" + "|".join(map(re.escape, sorted(tags, key=len, reverse=True))) + ")", content)


def _candidates(piece: str):
    return dict.fromkeys((piece, piece.strip(), piece.lstrip("\n"), piece.rstrip("\n"), piece.strip("\n"),
                          piece.lstrip(), piece.rstrip()))


def message_spans(template, messages: Sequence[dict], add_generation_prompt: bool, special: dict,
                  tags: Sequence[str] = ()) -> Tuple[str, List[Tuple[int, int, int]]]:
    """(rendered text, [(start, end, message index)]): where each message's text lies in the rendering.

    `tags`: non-special added tokens (Qwen3's <think>, </think>), kept as they are in the marked messages so that a
    template that splits a message at them (Qwen3 moves the reasoning before the reply, or drops it from earlier
    turns) takes the same branch; the text around them is marked piece by piece. They encode as the same ids
    whether special-token matching is on or off, so keeping them is no injection.
    """
    text = render(template, messages, add_generation_prompt, special)
    split = [_pieces(m["content"], tags) for m in messages]
    marked = render(template, [{**m, "content": "".join(piece if k % 2 else _MARK.format(n, k)
                                                        for k, piece in enumerate(split[n]))}
                               for n, m in enumerate(messages)], add_generation_prompt, special)
    parts = _MARK_SPLIT.split(marked)
    spans, pos = [], len(parts[0])
    ok = text.startswith(parts[0])
    for k in range(1, len(parts), 3):
        if not ok:
            break
        n, literal = int(parts[k]), parts[k + 2]
        last = k + 3 >= len(parts)
        for candidate in _candidates(split[n][int(parts[k + 1])]):
            end = pos + len(candidate)
            if text.startswith(candidate, pos) and text.startswith(literal, end) and (
                    not last or end + len(literal) == len(text)):
                if end > pos:
                    spans.append((pos, end, n))
                pos = end + len(literal)
                break
        else:
            ok = False
    if not ok or (len(parts) == 1 and text != marked):
        raise ChatTemplateError("the model's chat template changes message text in a way that cannot be checked "
                                "(its output is not template text around each message's text) — fix: render "
                                "this conversation yourself, or use a template that inserts content as given")
    return text, spans


def encode_with_template(tokenizer, messages: Sequence[dict], add_generation_prompt: bool
                         ) -> Tuple[List[int], List[int]]:
    """(ids, loss mask) for one validated conversation; `tokenizer` is a myllm Tokenizer in template mode."""
    text, spans = message_spans(tokenizer.chat_template_compiled, messages, add_generation_prompt,
                                tokenizer.template_tokens, tokenizer.template_tags)
    special = tokenizer.special_ids
    encoding = tokenizer._with_special.encode(text, add_special_tokens=False)
    ids, offsets = list(encoding.ids), list(encoding.offsets)
    injected = any(i in special and s < e_span and e > s_span
                   for i, (s, e) in zip(ids, offsets) for s_span, e_span, _ in spans)
    if injected:
        ids, offsets = _encode_runs(tokenizer, text, spans)
    mask = [0] * len(ids)
    starts = sorted(s for s, _, _ in spans)
    for s_span, e_span, n in spans:
        if messages[n]["role"] != "assistant":
            continue
        following = next((s for s in starts if s >= e_span and s > s_span), len(text))
        closing = False
        for k, (s, e) in enumerate(offsets):
            if s < e_span and e > s_span:
                mask[k] = 1
            elif s >= e_span and s < following and not closing and mask[k - 1 if k else 0]:
                mask[k] = 1                   # template text after the reply, up to its end-of-turn id
                closing = ids[k] == tokenizer.im_end
    return ids, mask


def _encode_runs(tokenizer, text: str, spans) -> Tuple[List[int], List[Tuple[int, int]]]:
    """Control ids only where the template's own text has them; everything between two of them as plain text."""
    special = tokenizer.special_ids
    controls, pos = [], 0
    for s_span, e_span, _ in sorted(spans) + [(len(text), len(text), -1)]:
        if s_span > pos:
            piece = tokenizer._with_special.encode(text[pos:s_span], add_special_tokens=False)
            controls += [(pos + s, pos + e, i) for i, (s, e) in zip(piece.ids, piece.offsets) if i in special]
        pos = max(pos, e_span)
    ids, offsets, pos = [], [], 0
    for s, e, control in controls + [(len(text), len(text), None)]:
        if s > pos:
            run = tokenizer._tok.encode(text[pos:s], add_special_tokens=False)
            ids += run.ids
            offsets += [(pos + a, pos + b) for a, b in run.offsets]
        if control is not None:
            ids.append(control)
            offsets.append((s, e))
        pos = e
    return ids, offsets
