"""Checking a model's reply against a task record: answer extraction, exact comparison, format compliance.

Why strict: a verifier that forgives ("the last number anywhere in the reply") rewards rambling under RL; here the
reply must BE the answer (or the answer inside <answer>…</answer> for tagged tasks), compared exactly after
whitespace normalisation. A reply is the decoded completion, special tokens kept (`decode(ids,
skip_special_tokens=False)`): everything from the first <|im_end|> on is not part of the answer, and whether that
token is there at all is the end-of-turn check. An imported model's end of turn (Llama 3.x's <|eot_id|>, Mistral's
</s>) counts the same (END_OF_TURN_TOKENS).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, Iterable, Optional, Tuple

from myllm_mc.data.tokenizer import IM_END

ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"
END_OF_TURN = IM_END
# what ends a turn in the decoded reply: ours and Qwen's <|im_end|>, an imported Llama 3.x's <|eot_id|>, Mistral's </s>
END_OF_TURN_TOKENS = (IM_END, "<|eot_id|>", "</s>")
_END_OF_DOCUMENT = ("<|endoftext|>", "<|end_of_text|>")
ANSWER_TYPES = ("int", "text", "label")
_TAGGED = re.compile(re.escape(ANSWER_OPEN) + r"(.*?)" + re.escape(ANSWER_CLOSE), re.DOTALL)
_INT = re.compile(r"[+-]?\d+")


@dataclass(frozen=True)
class TaskSpec:
    """How a task's answers compare: "int" exact integer, "text" exact after collapsing whitespace, "label" the
    same but case-insensitive and without a final period (titles, references); `tagged`: inside <answer> tags."""
    answer_type: str
    tagged: bool = False


TASKS: Dict[str, TaskSpec] = {
    "arithmetic": TaskSpec("int"),
    "counting": TaskSpec("int"),
    "format": TaskSpec("int", tagged=True),
    "corpus_book": TaskSpec("label"),
    "corpus_reference": TaskSpec("label"),
    "corpus_next_verse": TaskSpec("text"),
    "corpus_word_count": TaskSpec("int"),
}


def register_task(name: str, answer_type: str, tagged: bool = False) -> TaskSpec:
    """Make records with "task": name checkable (your own task sets)."""
    if answer_type not in ANSWER_TYPES:
        raise ValueError(f"answer_type {answer_type!r} — fix: use one of {', '.join(ANSWER_TYPES)}")
    TASKS[name] = TaskSpec(answer_type, tagged)
    return TASKS[name]


def task_spec(record: dict) -> TaskSpec:
    """The record's own "answer_type"/"tagged" fields if present, else its task's registered spec."""
    task = record.get("task")
    base = TASKS.get(task)
    if base is None and "answer_type" not in record:
        raise ValueError(f"task {task!r} is not registered — fix: register_task({task!r}, 'int'|'text'|'label') "
                         f"or give the record an \"answer_type\" field")
    answer_type = record.get("answer_type", base.answer_type if base else None)
    if answer_type not in ANSWER_TYPES:
        raise ValueError(f"answer_type {answer_type!r} — fix: use one of {', '.join(ANSWER_TYPES)}")
    return TaskSpec(answer_type, bool(record.get("tagged", base.tagged if base else False)))


def split_reply(response: str) -> Tuple[str, bool]:
    """(the reply up to the first end-of-turn token (<|im_end|>; END_OF_TURN_TOKENS), whether one was there)."""
    cut = min((i for i in (response.find(t) for t in END_OF_TURN_TOKENS) if i >= 0), default=-1)
    return (response, False) if cut < 0 else (response[:cut], True)


def extract_answer(record: dict, response: str) -> Optional[str]:
    """The answer part of a reply: the whole reply, or the content of its last <answer> tag; None if there is none."""
    reply, _ = split_reply(response)
    if task_spec(record).tagged:
        found = _TAGGED.findall(reply)
        return found[-1].strip() if found else None
    reply = reply.strip()
    return reply or None


def normalize(answer_type: str, text: Optional[str]):
    """The comparable form of an answer, or None when it has none (e.g. "twelve" for an int)."""
    if text is None:
        return None
    text = " ".join(text.split())
    if answer_type == "int":
        text = text.rstrip(".")
        return int(text) if _INT.fullmatch(text) else None
    if answer_type == "label":
        return text.rstrip(".").casefold() or None
    return text or None


def is_correct(record: dict, response: str) -> bool:
    """Exact answer check (format not required beyond finding the answer: tagged tasks need the tags)."""
    spec = task_spec(record)
    got = normalize(spec.answer_type, extract_answer(record, response))
    return got is not None and got == normalize(spec.answer_type, str(record["answer"]))


def follows_format(record: dict, response: str) -> bool:
    """Tagged task: the reply is exactly one <answer>…</answer> and nothing else. Otherwise: a non-empty reply
    with no answer tags, on one line (the shipped tasks' answers are all one line)."""
    reply = split_reply(response)[0].strip()
    if task_spec(record).tagged:
        return (reply.startswith(ANSWER_OPEN) and reply.endswith(ANSWER_CLOSE) and reply.count(ANSWER_OPEN) == 1
                and reply.count(ANSWER_CLOSE) == 1 and bool(reply[len(ANSWER_OPEN):-len(ANSWER_CLOSE)].strip()))
    return bool(reply) and ANSWER_OPEN not in reply and ANSWER_CLOSE not in reply and "\n" not in reply


def ends_turn(response: str) -> bool:
    """The reply ends with <|im_end|> (or another END_OF_TURN_TOKENS; trailing whitespace and <|endoftext|> aside)
    and has no other, i.e. the model stopped."""
    text = response.rstrip()
    while text.endswith(_END_OF_DOCUMENT):
        text = text[: -len(next(t for t in _END_OF_DOCUMENT if text.endswith(t)))].rstrip()
    return text.endswith(END_OF_TURN_TOKENS) and sum(text.count(t) for t in END_OF_TURN_TOKENS) == 1


def accuracy_by_task(records: Iterable[dict], responses: Iterable[str]) -> Dict[str, Dict[str, float]]:
    """{task: {"correct", "total", "accuracy"}} plus "all" — what evaluation reports."""
    table: Dict[str, Dict[str, float]] = {}
    for record, response in zip(records, responses, strict=True):
        for name in (record.get("task", "?"), "all"):
            row = table.setdefault(name, {"correct": 0, "total": 0})
            row["correct"] += is_correct(record, response)
            row["total"] += 1
    for row in table.values():
        row["accuracy"] = row["correct"] / row["total"]
    return table
