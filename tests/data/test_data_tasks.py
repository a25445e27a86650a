"""Shipped verifiable tasks: rebuilt byte for byte, no train/test overlap, answers true, verifiers and rewards."""

from __future__ import annotations

import re
from collections import Counter

import pytest
from data_helpers import REPO, load_corpus, run_tool

from myllm_mc import tasks as T
from myllm_mc.tasks.generate import COUNTS, FORMAT_INSTRUCTION

TASK_DIR = REPO / "data" / "tasks"
QUOTED = re.compile(r'"(.+)"')


def _load(kind, split, task=None):
    return T.load_records(T.task_files(kind, split, None if task is None else [task]))


def _user(record):
    return record["messages"][0]["content"]


def test_rebuild_is_byte_identical_and_small(tmp_path):
    proc = run_tool("tools/build_tasks.py", "--output", tmp_path / "tasks")
    assert "42 files" in proc.stdout
    shipped = sorted(p.relative_to(TASK_DIR) for p in TASK_DIR.rglob("*") if p.is_file())
    rebuilt = sorted(p.relative_to(tmp_path / "tasks") for p in (tmp_path / "tasks").rglob("*") if p.is_file())
    assert shipped == rebuilt and len(shipped) == 3 * 2 * len(COUNTS) + 1      # + README.md
    for relative in shipped:
        assert (TASK_DIR / relative).read_bytes() == (tmp_path / "tasks" / relative).read_bytes(), relative
    assert sum((TASK_DIR / r).stat().st_size for r in shipped) < 3.1e6


def test_readme_counts_match_files():
    readme = (TASK_DIR / "README.md").read_text()
    for task in COUNTS:
        row = next(line for line in readme.splitlines() if line.startswith(f"| `{task}` |"))
        numbers = [int(x.replace(",", "")) for x in row.split("|")[2:-1]]
        lines = [len(_load(k, s, task)) for k in ("sft", "dpo", "prompts") for s in ("train", "test")]
        assert numbers == lines
    assert "public domain" in readme


def test_no_overlap_between_train_and_test():
    """No test prompt, counted phrase or corpus passage appears in any training file of any task."""
    train_prompts, train_passages = set(), set()
    for kind in ("sft", "dpo", "prompts"):
        for record in _load(kind, "train"):
            prompt = _user(record).replace(FORMAT_INSTRUCTION, "")
            train_prompts.add(prompt)
            train_passages.update(QUOTED.findall(prompt))
    tested = 0
    for kind in ("sft", "dpo", "prompts"):
        for record in _load(kind, "test"):
            prompt = _user(record).replace(FORMAT_INSTRUCTION, "")
            assert prompt not in train_prompts, prompt
            for passage in QUOTED.findall(prompt):
                if record["task"] != "counting" or " " in passage:   # single letters/words recur by design
                    assert passage not in train_passages, passage
            tested += 1
    assert tested == 3 * len(_load("sft", "test")) > 3 * 600
    ids = [r["id"] for kind in ("sft",) for s in ("train", "test") for r in _load(kind, s)]
    assert len(ids) == len(set(ids))


def test_sft_records_are_chat_format_and_prompts_unique():
    for split in ("train", "test"):
        records = _load("sft", split)
        assert all([m["role"] for m in r["messages"]] == ["user", "assistant"] for r in records)
        prompts = Counter((r["task"], _user(r)) for r in records)
        assert max(prompts.values()) == 1


def test_arithmetic_answers_are_true_and_short():
    records = _load("sft", "train", "arithmetic") + _load("sft", "test", "arithmetic")
    assert len(records) == 400 + 210 + 100                  # every problem, each once
    for record in records:
        a, op, b = re.fullmatch(r"What is (\d+) ([-+*]) (\d+)\?", _user(record)).groups()
        value = {"+": int(a) + int(b), "-": int(a) - int(b), "*": int(a) * int(b)}[op]
        assert record["messages"][1]["content"] == record["answer"] == str(value) and 0 <= value <= 81 + 38


def test_corpus_answers_are_true():
    verses, following = {}, {}
    for doc in load_corpus():
        if doc["source"] == "kjv":
            lines = [line.split(" ", 1) for line in doc["text"].split("\n")[2:] if line]
            for (n, text), nxt in zip(lines, lines[1:] + [None]):
                verses[f"{doc['title']}:{n}"] = text
                following[f"{doc['title']}:{n}"] = nxt[1] if nxt else None
    for record in _load("sft", "train", "corpus_reference") + _load("sft", "test", "corpus_reference"):
        assert verses[record["answer"]] == QUOTED.search(_user(record)).group(1)
    for record in _load("sft", "test", "corpus_next_verse"):
        reference, passage = re.fullmatch(r'In the King James Bible, (.+) reads: "(.+)" What is the text of the '
                                          r'next verse\?', _user(record)).groups()
        assert verses[reference] == passage and following[reference] == record["answer"]
    for record in _load("sft", "test", "corpus_word_count"):
        assert int(record["answer"]) == len(QUOTED.search(_user(record)).group(1).split())


def test_every_shipped_reply_verifies_and_every_rejected_scores_lower():
    for split in ("train", "test"):
        for record in _load("sft", split):
            reply = record["messages"][1]["content"] + T.END_OF_TURN
            assert T.is_correct(record, reply) and T.follows_format(record, reply) and T.ends_turn(reply), record
        for pair in _load("dpo", split):
            weights = {"accuracy": 1.0, "format": 0.5}
            chosen, _ = T.compute_rewards(pair, pair["chosen"] + T.END_OF_TURN, weights)
            rejected, parts = T.compute_rewards(pair, pair["rejected"] + T.END_OF_TURN, weights)
            assert chosen == 1.5 and rejected < chosen, pair
            assert pair["chosen"] != pair["rejected"]


ARITH = {"task": "arithmetic", "answer": "12"}
TAGGED = {"task": "format", "answer": "12"}
BOOK = {"task": "corpus_book", "answer": "Pride and Prejudice"}
VERSE = {"task": "corpus_next_verse", "answer": "Jesus wept."}


@pytest.mark.parametrize("record,response,correct,formatted,ended", [
    (ARITH, "12<|im_end|>", True, True, True),
    (ARITH, " 12 <|im_end|>\n", True, True, True),
    (ARITH, "12.", True, True, False),                       # no end of turn: stopped at the length limit
    (ARITH, "12<|im_end|>13", True, True, False),            # text after the end of turn is not the answer
    (ARITH, "+12<|im_end|><|endoftext|>", True, True, True),
    (ARITH, "13<|im_end|>", False, True, True),
    (ARITH, "The answer is 12<|im_end|>", False, True, True),
    (ARITH, "twelve<|im_end|>", False, True, True),
    (ARITH, "<answer>12</answer><|im_end|>", False, False, True),
    (ARITH, "<|im_end|>", False, False, True),
    (TAGGED, "<answer>12</answer><|im_end|>", True, True, True),
    (TAGGED, "<answer> 12 </answer>", True, True, False),
    (TAGGED, "12<|im_end|>", False, False, True),
    (TAGGED, "so <answer>12</answer><|im_end|>", True, False, True),
    (TAGGED, "<answer>3</answer><answer>12</answer><|im_end|>", True, False, True),
    (TAGGED, "<answer></answer><|im_end|>", False, False, True),
    (TAGGED, "<answer>12<|im_end|></answer>", False, False, False),
    (BOOK, "pride and  prejudice.<|im_end|>", True, True, True),
    (BOOK, "Emma<|im_end|>", False, True, True),
    (VERSE, "Jesus  wept.<|im_end|>", True, True, True),
    (VERSE, "Jesus wept<|im_end|>", False, True, True),
    (VERSE, "jesus wept.<|im_end|>", False, True, True),
])
def test_verifiers_on_hand_made_replies(record, response, correct, formatted, ended):
    assert T.is_correct(record, response) is correct
    assert T.follows_format(record, response) is formatted
    assert T.ends_turn(response) is ended
    assert T.get_reward("accuracy")(record, response) == float(correct)
    assert T.get_reward("format")(record, response) == float(formatted)
    assert T.get_reward("end_of_turn")(record, response) == float(ended)


def test_extraction_and_accuracy_table():
    assert T.extract_answer(TAGGED, "x <answer>1</answer> y <answer> 7 </answer>") == "7"
    assert T.extract_answer(TAGGED, "7") is None and T.extract_answer(ARITH, "  <|im_end|>") is None
    table = T.accuracy_by_task([ARITH, ARITH, BOOK], ["12", "11", "Pride and Prejudice"])
    assert table["arithmetic"] == {"correct": 1, "total": 2, "accuracy": 0.5}
    assert table["all"]["correct"] == 2 and table["all"]["total"] == 3


def test_reward_registry_for_user_functions(tmp_path, monkeypatch):
    @T.register_reward("short_reply")
    def short(record, response):
        return 1.0 if len(T.split_reply(response)[0]) <= 3 else 0.0

    assert "short_reply" in T.reward_names()
    total, parts = T.compute_rewards(ARITH, "12<|im_end|>", {"accuracy": 1.0, "short_reply": 0.25})
    assert total == 1.25 and parts == {"accuracy": 1.0, "short_reply": 1.0}
    with pytest.raises(ValueError, match="already registered"):
        T.register_reward("short_reply", lambda r, s: 0.0)
    with pytest.raises(ValueError, match="unknown reward 'nope'") as err:
        T.get_reward("nope")
    assert "accuracy" in str(err.value) and "\n" not in str(err.value)
    (tmp_path / "my_rewards.py").write_text("def length(record, response):\n    return float(len(response))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert T.get_reward("my_rewards:length")(ARITH, "abc") == 3.0
    with pytest.raises(ValueError, match="cannot be imported"):
        T.get_reward("my_rewards:missing")


def test_user_tasks_register_or_describe_themselves():
    with pytest.raises(ValueError, match="not registered"):
        T.is_correct({"task": "capitals", "answer": "Paris"}, "Paris")
    assert T.is_correct({"task": "capitals", "answer": "Paris", "answer_type": "label"}, "paris")
    T.register_task("capitals_tagged", "label", tagged=True)
    assert T.is_correct({"task": "capitals_tagged", "answer": "Paris"}, "<answer>PARIS</answer>")
    with pytest.raises(ValueError, match="answer_type"):
        T.register_task("bad", "float")
