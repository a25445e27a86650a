"""Build the shipped verifiable task sets (data/tasks/) from a seed and the shipped corpus, byte for byte.

Why these tasks: real chat data cannot be downloaded here, and SFT, DPO, GRPO and evaluation all need answers a
program can check. Each problem has a split key (the arithmetic expression, the passage, the verse); the split is
decided by a hash of that key, so a held-out problem never appears in any training file of any task (the format
task reuses arithmetic and counting problems under the same keys).

Layout written by `build_task_sets` (one JSON object per line, UTF-8, "\\n" line ends):
  sft/TASK.{train,test}.jsonl      {"id", "task", "answer", "messages": [user, assistant]}
  dpo/TASK.{train,test}.jsonl      {"id", "task", "answer", "messages": [user], "chosen": str, "rejected": str}
  prompts/TASK.{train,test}.jsonl  {"id", "task", "answer", "prompt": str, "messages": [user]}
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List

from . import corpus_questions as cq
from .verify import ANSWER_CLOSE, ANSWER_OPEN, TASKS

SPLITS = ("train", "test")
TEST_PERCENT = 15                  # share of split keys held out
FORMAT_INSTRUCTION = f" Put the answer inside {ANSWER_OPEN}{ANSWER_CLOSE} tags."

# examples per task and split: (SFT train, SFT/DPO/prompts test, DPO train, GRPO prompts train); None = all
COUNTS = {
    "arithmetic": (None, 100, 400, 300),
    "counting": (900, 100, 300, 200),
    "format": (700, 100, 300, 200),
    "corpus_book": (700, 100, 200, 150),
    "corpus_reference": (400, 100, 150, 150),
    "corpus_next_verse": (300, 100, 150, 100),
    "corpus_word_count": (600, 100, 200, 150),
}


@dataclass
class Problem:
    task: str
    key: str          # identity for the split
    prompt: str       # the user turn
    answer: str       # what the verifier compares with
    response: str     # the reference assistant reply (SFT target, DPO chosen)
    wrong: str        # a plausible wrong reply (DPO rejected)


def split_of(key: str) -> str:
    """'test' for TEST_PERCENT % of keys, stable across runs, Python versions and the order problems are made in."""
    bucket = int(hashlib.sha256(key.encode("utf-8")).hexdigest()[:8], 16) % 100
    return "test" if bucket < TEST_PERCENT else "train"


# --- generators: every candidate problem, in a deterministic order --------------------------------------------
def arithmetic_problems(rng: random.Random) -> List[Problem]:
    """Every a+b and a-b (a, b ≤ 19, no negatives) and a*b (a, b ≤ 9): one- or two-digit answers, one format."""
    problems = []
    triples = ([(a, "+", b, a + b) for a in range(20) for b in range(20)]
               + [(a, "-", b, a - b) for a in range(20) for b in range(a + 1)]
               + [(a, "*", b, a * b) for a in range(10) for b in range(10)])
    for a, op, b, value in triples:
        expression = f"{a} {op} {b}"
        wrong = value + rng.choice((-10, -2, -1, 1, 2, 10))
        wrong = wrong if wrong >= 0 and wrong != value else value + 1
        problems.append(Problem("arithmetic", expression, f"What is {expression}?", str(value), str(value),
                                str(wrong)))
    return problems


def counting_problems(corpus: cq.Corpus, rng: random.Random) -> List[Problem]:
    """Letters in a word and words in a short phrase, both drawn from the corpus; answers are small integers."""
    words = sorted({w.lower() for v in corpus.verses for w in v.text.split() if w.isalpha() and 4 <= len(w) <= 10})
    problems = []
    for word in words:
        present = sorted(set(word))
        letter = rng.choice(present) if rng.random() < 0.85 else rng.choice("abcdefghijklmnopqrstuvwxyz")
        count = word.count(letter)
        prompt = f'How many times does the letter "{letter}" appear in "{word}"?'
        problems.append(Problem("counting", f"letters:{word}:{letter}", prompt, str(count), str(count),
                                str(count + 1 if count == 0 or rng.random() < 0.5 else count - 1)))
    for verse in corpus.verses[::7]:
        tokens = verse.text.split()
        length = rng.randint(2, 8)
        if len(tokens) < length:
            continue
        start = rng.randint(0, len(tokens) - length)
        phrase = " ".join(tokens[start:start + length])
        prompt = f'How many words are in "{phrase}"?'
        problems.append(Problem("counting", f"words:{phrase}", prompt, str(length), str(length),
                                str(length + rng.choice((-1, 1)))))
    return problems


def format_problems(arithmetic: List[Problem], counting: List[Problem], rng: random.Random) -> List[Problem]:
    """The same questions with an instruction to answer inside tags; the wrong reply ignores the tags or the sum."""
    problems = []
    for source in arithmetic + counting:
        tagged = f"{ANSWER_OPEN}{source.answer}{ANSWER_CLOSE}"
        wrong = source.answer if rng.random() < 0.5 else f"{ANSWER_OPEN}{source.wrong}{ANSWER_CLOSE}"
        problems.append(Problem("format", source.key, source.prompt + FORMAT_INSTRUCTION, source.answer, tagged,
                                wrong))
    return problems


def corpus_problems(corpus: cq.Corpus, rng: random.Random) -> Dict[str, List[Problem]]:
    """Book, reference, next verse and word-count questions; the split key is the passage itself."""
    out: Dict[str, List[Problem]] = {t: [] for t in ("corpus_book", "corpus_reference", "corpus_next_verse",
                                                     "corpus_word_count")}

    def add(task, key, triple):
        prompt, answer, wrong = triple
        out[task].append(Problem(task, key, prompt, answer, answer, wrong))

    verses = corpus.verses
    # a passage that occurs twice (refrains, repeated laws) could have two right answers: never asked about
    seen = Counter([v.text for v in verses] + [s.text for s in corpus.sentences])
    for verse in verses[::5]:
        if seen[verse.text] == 1:
            add("corpus_book", verse.text, cq.book_of_verse(verse, corpus.kjv_books, rng))
    for sentence in corpus.sentences[::3]:
        if seen[sentence.text] == 1:
            add("corpus_book", sentence.text, cq.book_of_sentence(sentence, corpus.novels, rng))
    for verse in verses[1::9]:
        if len(verse.text.split()) <= 40 and seen[verse.text] == 1:
            add("corpus_reference", verse.text, cq.reference_of_verse(verse, rng))
    for i in range(2, len(verses) - 1, 11):
        verse, following = verses[i], verses[i + 1]
        if following.number != verse.number + 1 or len(verse.text.split()) + len(following.text.split()) > 60:
            continue
        after = verses[i + 2] if i + 2 < len(verses) and verses[i + 2].number == verse.number + 2 else None
        add("corpus_next_verse", verse.text, cq.next_verse(verse, following, after))
    for verse in verses[3::13]:
        if len(verse.text.split()) <= 30:
            add("corpus_word_count", verse.text, cq.word_count(verse.text, "the King James Bible", rng))
    for sentence in corpus.sentences[1::5]:
        add("corpus_word_count", sentence.text, cq.word_count(sentence.text, sentence.book, rng))
    return out


# --- records ------------------------------------------------------------------------------------------------
def _records(problem: Problem, split: str, n: int) -> dict:
    ident = f"{problem.task}-{split}-{n:05d}"
    user = {"role": "user", "content": problem.prompt}
    return {
        "sft": {"id": ident, "task": problem.task, "answer": problem.answer,
                "messages": [user, {"role": "assistant", "content": problem.response}]},
        "dpo": {"id": ident, "task": problem.task, "answer": problem.answer, "messages": [user],
                "chosen": problem.response, "rejected": problem.wrong},
        "prompts": {"id": ident, "task": problem.task, "answer": problem.answer, "prompt": problem.prompt,
                    "messages": [user]},
    }


def all_problems(corpus_path: str | Path, seed: int) -> Dict[str, List[Problem]]:
    rng = random.Random(seed)
    corpus = cq.load_corpus(corpus_path)
    arithmetic = arithmetic_problems(rng)
    counting = counting_problems(corpus, rng)
    problems = {"arithmetic": arithmetic, "counting": counting,
                "format": format_problems(arithmetic, counting, rng)}
    problems.update(corpus_problems(corpus, rng))
    for task, pool in problems.items():
        if task not in TASKS:
            raise AssertionError(f"task {task} has no verifier in myllm_mc.tasks.verify.TASKS")
        unique = {}
        for problem in pool:               # one problem per prompt: a prompt never has two answers
            unique.setdefault(problem.prompt, problem)
        problems[task] = list(unique.values())
    return problems


def build_task_sets(corpus_path: str | Path, seed: int = 1234) -> Dict[str, bytes]:
    """{relative path: file bytes} for every file of data/tasks/ except README.md; pure and deterministic."""
    rng = random.Random(seed + 1)
    files: Dict[str, bytes] = {}
    for task, pool in all_problems(corpus_path, seed).items():
        sft_train, test, dpo_train, prompts_train = COUNTS[task]
        by_split = {s: [p for p in pool if split_of(p.key) == s] for s in SPLITS}
        for split in SPLITS:
            rng.shuffle(by_split[split])
        train = by_split["train"][:sft_train]
        held_out = by_split["test"][:test]
        chosen = {("sft", "train"): train, ("sft", "test"): held_out,
                  ("dpo", "train"): train[:dpo_train], ("dpo", "test"): held_out,
                  ("prompts", "train"): train[:prompts_train], ("prompts", "test"): held_out}
        for (kind, split), problems in chosen.items():
            lines = [json.dumps(_records(p, split, n)[kind], ensure_ascii=False) + "\n"
                     for n, p in enumerate(problems)]
            files[f"{kind}/{task}.{split}.jsonl"] = "".join(lines).encode("utf-8")
    return dict(sorted(files.items()))


def write_task_sets(files: Dict[str, bytes], output: str | Path, readme: str) -> None:
    out = Path(output)
    for relative, payload in files.items():
        path = out / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(payload)
    (out / "README.md").write_text(readme, encoding="utf-8")
